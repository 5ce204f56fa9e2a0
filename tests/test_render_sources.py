"""Blocks and templates as designers write them (app/render/sources.py) and the checks run
on their Jinja before anything compiles (app/render/jinja.py): the real blocks, templates
and sample profiles load; each mistake is reported as `file:line: message`, naming the
file at fault; a broken block only breaks the templates that use it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from app.profiles.schema import inline_profile
from app.render.environments import FILTERS
from app.render.jinja import check_part, environment
from app.render.registry import fingerprint
from app.render.sources import (
    Block,
    Part,
    SourceError,
    load_block,
    load_blocks,
    load_samples,
    load_template,
)
from app.settings import PROJECT_ROOT

BLOCKS_DIR = PROJECT_ROOT / "blocks"
TEMPLATES_DIR = PROJECT_ROOT / "templates"
REQUIRED_BLOCKS = {
    "header",
    "hero",
    "greeting",
    "product_grid",
    "cart",
    "countdown",
    "loyalty",
    "footer",
}
REQUIRED_TEMPLATES = {"welcome", "abandoned_cart", "weekly_picks"}
MJML = "<mj-section><mj-column><mj-text>{{ params.words }}</mj-text></mj-column></mj-section>\n"

HTML_ENV = environment(html=True, filters=FILTERS)
TEXT_ENV = environment(html=False, filters=FILTERS)


def template_folders() -> list[Path]:
    return sorted(p.parent for p in TEMPLATES_DIR.glob("*/template.json"))


def make_block(root: Path, name: str, meta: Any = None, **files: str) -> Path:
    """blocks/<name>/ with block.json (`meta`, or raw text) and files by short name:
    mjml=, txt=, amp=, fallback_mjml= ..."""
    folder = root / name
    folder.mkdir(parents=True)
    meta = {"params": {"words": "hello"}} if meta is None else meta
    (folder / "block.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    files.setdefault("mjml", MJML)
    names = {
        "mjml": "block.mjml",
        "txt": "block.txt",
        "amp": "block.amp.html",
        "css": "block.amp.css",
        "fallback_mjml": "fallback.mjml",
        "fallback_amp": "fallback.amp.html",
        "fallback_txt": "fallback.txt",
    }
    for key, text in files.items():
        if text is not None:
            (folder / names[key]).write_text(text)
    return folder


def make_template(root: Path, name: str, doc: Any) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "template.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return folder


@pytest.fixture
def blocks(tmp_path: Path) -> dict[str, Block]:
    root = tmp_path / "blocks"
    make_block(root, "intro")
    make_block(root, "outro", {"params": {"words": "bye", "size": 2}})
    loaded, broken = load_blocks(root)
    assert broken == {}
    return loaded


# --- the real blocks, templates and samples -------------------------------------------


def test_every_real_block_loads():
    loaded, broken = load_blocks(BLOCKS_DIR)
    assert broken == {}, {name: str(e) for name, e in broken.items()}
    assert REQUIRED_BLOCKS <= set(loaded)
    for block in loaded.values():
        assert block.mjml.text.strip(), f"{block.name}: empty block.mjml"
        assert block.mjml.path == block.folder / "block.mjml"


def test_every_real_block_passes_the_jinja_checks():
    loaded, _ = load_blocks(BLOCKS_DIR)
    for block in loaded.values():
        for part in (block.mjml, block.fallback_mjml, block.amp, block.fallback_amp):
            if part is not None:
                check_part(HTML_ENV, part)
        for part in (block.text, block.fallback_text):
            if part is not None:
                check_part(TEXT_ENV, part)


def test_every_real_template_loads_with_valid_sample_profiles():
    loaded, broken = load_blocks(BLOCKS_DIR)
    folders = template_folders()
    assert REQUIRED_TEMPLATES <= {f.name for f in folders}
    for folder in folders:
        source = load_template(folder, loaded, broken)
        assert source.name == folder.name
        assert source.subject.strip()
        assert source.blocks
        assert sum(source.variants.values()) > 0
        for sample, doc in load_samples(folder).items():
            try:
                inline_profile(doc)
            except Exception as exc:  # the message names the sample
                pytest.fail(f"{folder.name}/samples/{sample}.json is not a valid profile: {exc}")


# --- blocks -----------------------------------------------------------------------------


def test_block_metadata_and_parts(tmp_path: Path):
    folder = make_block(
        tmp_path,
        "promo",
        {
            "description": "A promo",
            "needs": ["cart"],
            "personal": True,
            "feed": "cart",
            "amp_extensions": ["amp-list"],
            "params": {"words": "hi"},
        },
        txt="{{ params.words }}\n",
        amp="<p>{{ params.words }}</p>",
        css=".p { color: red; }",
        fallback_mjml=MJML,
        fallback_txt="fallback\n",
    )
    block = load_block(folder)
    assert (block.name, block.description, block.feed) == ("promo", "A promo", "cart")
    assert block.needs == ("cart",) and block.personal is True
    assert block.amp_extensions == ("amp-list",)
    assert block.params == {"words": "hi"}
    assert block.text is not None and block.text.path == folder / "block.txt"
    assert block.amp is not None and block.amp.text == "<p>{{ params.words }}</p>"
    assert block.amp_css == ".p { color: red; }"
    assert block.fallback_mjml is not None and block.fallback_text is not None
    assert block.fallback_amp is None


@pytest.mark.parametrize(
    ("name", "meta", "files", "at_fault", "line", "message"),
    [
        ("bad", '{\n  "params": {},\n  "needs": [,]\n}', {}, "block.json", 3, "invalid JSON"),
        ("bad", ["not", "an", "object"], {}, "block.json", None, "must be a JSON object"),
        ("bad", {"colour": "red"}, {}, "block.json", None, "unknown keys ['colour']"),
        ("bad", {"needs": "cart"}, {}, "block.json", None, '"needs" must be a list of strings'),
        ("bad", {"params": [1]}, {}, "block.json", None, '"params" must be an object'),
        ("bad", {}, {"mjml": None}, "block.mjml", None, "file is missing"),
        ("Bad-Name", {}, {}, "", None, "block names are lower-case"),
    ],
)
def test_block_mistakes_name_the_file(tmp_path, name, meta, files, at_fault, line, message):
    folder = tmp_path / name
    if files.get("mjml", "") is None:
        folder.mkdir()
        (folder / "block.json").write_text(json.dumps(meta))
    else:
        make_block(tmp_path, name, meta, **files)
    with pytest.raises(SourceError) as info:
        load_block(folder)
    error = info.value
    assert error.path == str(folder / at_fault if at_fault else folder)
    assert error.line == line
    assert message in error.message
    where = f"{error.path}:{line}" if line else error.path
    assert str(error) == f"{where}: {error.message}"


def test_a_block_that_is_not_utf8_is_named(tmp_path: Path):
    folder = make_block(tmp_path, "latin")
    (folder / "block.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(SourceError) as info:
        load_block(folder)
    assert info.value.path == str(folder / "block.txt")
    assert "UTF-8" in info.value.message


def test_a_broken_block_only_breaks_the_templates_using_it(tmp_path: Path):
    root = tmp_path / "blocks"
    make_block(root, "good")
    make_block(root, "broken", '{"params": ')
    loaded, broken = load_blocks(root)
    assert set(loaded) == {"good"}
    assert set(broken) == {"broken"}
    assert broken["broken"].path == str(root / "broken" / "block.json")

    uses_good = make_template(tmp_path / "t", "fine", {"subject": "s", "blocks": ["good"]})
    assert load_template(uses_good, loaded, broken).blocks[0].block == "good"
    uses_broken = make_template(
        tmp_path / "t", "sad", {"subject": "s", "blocks": ["good", "broken"]}
    )
    with pytest.raises(SourceError) as info:
        load_template(uses_broken, loaded, broken)
    assert info.value is broken["broken"]  # the block's own error, naming its file


def test_missing_blocks_folder(tmp_path: Path):
    with pytest.raises(SourceError, match="blocks folder is missing"):
        load_blocks(tmp_path / "nowhere")


# --- templates --------------------------------------------------------------------------


def test_template_uses_merge_params_over_block_defaults(tmp_path, blocks):
    folder = make_template(
        tmp_path,
        "news",
        {
            "subject": "Hello {{ first_name }}",
            "preheader": "pre",
            "variants": {"A": 1, "B": 3},
            "links": {"home": "https://shop.example.com/"},
            "theme": {"accent": "#b4472a"},
            "blocks": [
                "intro",
                {"block": "outro", "when": {"variant": "B"}, "params": {"words": "ciao"}},
            ],
        },
    )
    source = load_template(folder, blocks)
    assert source.variants == {"A": 1, "B": 3}
    assert [use.block for use in source.blocks] == ["intro", "outro"]
    assert source.blocks[0].params == {"words": "hello"}
    assert source.blocks[1].params == {"words": "ciao", "size": 2}
    assert source.blocks[1].when.variant == "B"
    assert source.links == {"home": "https://shop.example.com/"}
    assert source.theme == {"accent": "#b4472a"}
    # a template without variants has one
    plain = make_template(tmp_path, "plain", {"subject": "s", "blocks": ["intro"]})
    assert load_template(plain, blocks).variants == {"A": 1}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{\n\n  oops\n}", "invalid JSON"),
        ({"blocks": ["intro"]}, '"subject" is required'),
        ({"subject": "s"}, '"blocks" is required'),
        ({"subject": 5, "blocks": ["intro"]}, '"subject" and "preheader" must be strings'),
        ({"subject": "s", "blocks": []}, '"blocks" must be a non-empty list'),
        ({"subject": "s", "blocks": ["intro"], "colour": 1}, "unknown keys ['colour']"),
        ({"subject": "s", "blocks": ["nope"]}, "no block named 'nope'"),
        ({"subject": "s", "blocks": [{"block": "intro", "extra": 1}]}, '"blocks"[0] must be'),
        ({"subject": "s", "blocks": [{"params": {}}]}, '"blocks"[0] must be'),
        ({"subject": "s", "blocks": [{"block": "intro", "when": {"day": 1}}]}, '"when" may only'),
        (
            {"subject": "s", "blocks": [{"block": "intro", "when": {"variant": "C"}}]},
            "variant 'C' is not declared",
        ),
        (
            {"subject": "s", "blocks": [{"block": "intro", "when": {"consent": "email"}}]},
            "consent must be one of",
        ),
        ({"subject": "s", "blocks": [{"block": "intro", "params": [1]}]}, '"params" must be'),
        ({"subject": "s", "blocks": ["intro"], "variants": {}}, '"variants" must map'),
        ({"subject": "s", "blocks": ["intro"], "variants": {"A": 0}}, '"variants" must map'),
        ({"subject": "s", "blocks": ["intro"], "variants": {"A": -1, "B": 2}}, '"variants"'),
        ({"subject": "s", "blocks": ["intro"], "variants": {"A": "1"}}, '"variants" must map'),
        (
            {"subject": "s", "blocks": ["intro"], "links": {"home": "javascript:alert(1)"}},
            '"links.home" must be an absolute http(s) URL',
        ),
        (
            {"subject": "s", "blocks": ["intro"], "links": {"home": "//evil.example"}},
            '"links.home" must be an absolute http(s) URL',
        ),
    ],
)
def test_template_mistakes_name_template_json(tmp_path, blocks, doc, message):
    folder = make_template(tmp_path, "oops", doc)
    with pytest.raises(SourceError) as info:
        load_template(folder, blocks)
    assert info.value.path == str(folder / "template.json")
    assert message in info.value.message
    if isinstance(doc, str):
        assert info.value.line == 3
        assert str(info.value).startswith(f"{folder / 'template.json'}:3: ")


def test_samples_load_by_name_and_a_bad_one_is_named(tmp_path: Path):
    folder = make_template(tmp_path, "t", {"subject": "s", "blocks": ["intro"]})
    assert load_samples(folder) == {}
    (folder / "samples").mkdir()
    (folder / "samples" / "ada.json").write_text('{"first_name": "Ada"}')
    (folder / "samples" / "notes.txt").write_text("not a sample")
    assert load_samples(folder) == {"ada": {"first_name": "Ada"}}
    (folder / "samples" / "list.json").write_text("[1, 2]")
    with pytest.raises(SourceError) as info:
        load_samples(folder)
    assert info.value.path == str(folder / "samples" / "list.json")


# --- fingerprint ------------------------------------------------------------------------


def test_fingerprint_changes_with_any_file(tmp_path: Path):
    blocks_root, templates_root = tmp_path / "b", tmp_path / "t"
    block = make_block(blocks_root, "intro")
    make_template(templates_root, "t", {"subject": "s", "blocks": ["intro"]})

    def now() -> str:
        return fingerprint(blocks_root, templates_root)

    first = now()
    assert now() == first  # stable while nothing changes
    mjml = block / "block.mjml"
    mjml.write_text(MJML.replace("hello", "HELLO") + "<!-- longer -->")
    edited = now()
    assert edited != first
    stat = mjml.stat()
    os.utime(mjml, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))  # touched only
    touched = now()
    assert touched != edited
    (block / "block.txt").write_text("new file")
    added = now()
    assert added != touched
    (block / "block.txt").unlink()
    assert now() != added
    (templates_root / "t" / "template.json").write_text('{"subject": "other", "blocks": []}')
    assert now() != touched


# --- the Jinja checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("<p>\n{% if first_name %}\nHi\n", 3, "template syntax error"),
        ("<p>{{ first_name }</p>\n", 1, "template syntax error"),
        ("<p>\n{% for x in cart %}{{ x }}{% endif %}\n</p>", 2, "template syntax error"),
        ("line 1\nline 2\n{{ ''.__class__.__mro__ }}\n", 3, "sandbox: access to '__"),
        ("{{ cycler.__init__.__globals__ }}", 1, "sandbox: access to '__"),
        ("\n{{ x['__globals__'] }}", 2, "sandbox: access to '__globals__'"),
        ("{% for x in y %}{{ x._secret }}{% endfor %}", 1, "sandbox: access to '_secret'"),
        ("\n\n{{ x | _shared_body(1) }}", 3, "filter '_shared_body' is Kairos's own"),
    ],
)
def test_check_part_reports_file_and_line(tmp_path: Path, text, line, message):
    part = Part(tmp_path / "blocks" / "evil" / "block.mjml", text)
    with pytest.raises(SourceError) as info:
        check_part(HTML_ENV, part)
    assert info.value.path == str(part.path)
    assert info.value.line == line
    assert message in info.value.message
    if "sandbox" in message:
        assert "is not allowed in templates" in info.value.message
    assert str(info.value).startswith(f"{part.path}:{line}: ")


def test_check_part_accepts_ordinary_designer_jinja(tmp_path: Path):
    text = (
        "{% set ns = namespace(total=0) %}{% for line in cart %}{{ line.title | title }}"
        "{% set ns.total = ns.total + line.price %}{% endfor %}{{ ns.total | money('EUR') }}"
        "{{ params['items'][0].url | click }}{{ '{:,}'.format(loyalty_points) }}"
    )
    check_part(HTML_ENV, Part(tmp_path / "ok.mjml", text))
    check_part(TEXT_ENV, Part(tmp_path / "ok.txt", text))
