"""docs/designers.md kept true: the filters, tests, globals and `links` helpers it lists
are exactly the sandbox's; the blocks, templates, settings, routes and commands it names
exist; its `jinja` and `mjml` examples render, through `POST /v1/preview`, in a block
of their own, for readers with and without data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from support import AUTH

from app.cli import main
from app.render.environments import LINK_METHODS, Environments
from app.settings import ENV_VARS, PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "designers.md"
TEXT = DOC.read_text(encoding="utf-8")
ENVS = Environments.build()
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def _section(title: str) -> str:
    return TEXT.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _listed(label: str) -> set[str]:
    """The backticked names of the paragraph that starts with `**label**`."""
    paragraph = TEXT.split(f"\n**{label}**", 1)[1].split("\n\n", 1)[0]
    head = paragraph.split(". ", 1)[0]  # the list ends the first sentence
    return set(re.findall(r"`([^`]+)`", head))


def _examples(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", TEXT, re.MULTILINE | re.DOTALL)


def _table_names(section: str, header: str) -> set[str]:
    part = _section(section).split(header, 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", part, re.MULTILINE))


# --- the sandbox, exactly ----------------------------------------------------------------


def test_every_filter_of_the_sandbox_is_listed_and_only_those():
    offered = {name for name in ENVS.html.filters if not name.startswith("_")}
    kairos = _table_names("Filters and helpers", "| filter | what it does |")
    jinja = _listed("Jinja's filters")
    assert kairos == {"click", "money", "number", "datetime", "isolate", "title"}
    assert not kairos & jinja, "a filter listed twice"
    assert kairos | jinja == offered
    # The AMP and text sandboxes offer the same names (AMP's isolate differs in output).
    assert set(ENVS.amp.filters) == set(ENVS.text.filters) == set(ENVS.html.filters)


def test_every_test_and_global_of_the_sandbox_is_listed_and_only_those():
    tests = {name for name in ENVS.html.tests if IDENTIFIER.fullmatch(name)}
    assert _listed("Jinja's tests") == tests
    assert _listed("Globals") == set(ENVS.html.globals)


def test_the_links_helpers_are_exactly_the_sandboxes():
    named = set(re.findall(r"\blinks\.([a-z_]+)\(", TEXT))
    assert named == set(LINK_METHODS)


# --- names that must exist ---------------------------------------------------------------


def test_every_block_and_template_path_exists():
    paths = set(re.findall(r"`((?:blocks|templates)/[^`<>*\s]+)`", TEXT))
    assert any(p.startswith("blocks/") for p in paths)
    missing = sorted(p for p in paths if not (PROJECT_ROOT / p).exists())
    assert not missing, f"docs/designers.md names what does not exist: {missing}"


def test_every_setting_named_exists():
    named = set(re.findall(r"\bKAIROS_[A-Z0-9_]+", TEXT))
    assert "KAIROS_SMTP_URL" in named
    unknown = sorted(named - set(ENV_VARS))
    assert not unknown, f"docs/designers.md names settings the server does not read: {unknown}"


def _named_routes() -> set[tuple[str, str]]:
    spans = re.findall(r"`(GET|POST|PUT|PATCH|DELETE)\s+(/[^`\s]*)`", TEXT)
    spans += re.findall(r"^#+ (GET|POST|PUT|PATCH|DELETE) (/\S*)$", TEXT, re.MULTILINE)
    return set(spans)


def test_every_route_named_exists(app):
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
    }
    named = _named_routes()
    assert ("POST", "/v1/preview/send") in named and ("POST", "/v1/preview") in named
    unknown = sorted(named - served)
    assert not unknown, f"docs/designers.md names routes the server does not have: {unknown}"
    # The URLs of its curl examples too.
    paths = {route.path for route in app.routes if isinstance(route, Route)}
    for path in re.findall(r"http://127\.0\.0\.1:8000(/[^\s\"'`]*)", TEXT):
        assert path in paths, path


@pytest.mark.parametrize("command", sorted(set(re.findall(r"`kairos ([a-z]+)", TEXT))))
def test_every_command_named_exists(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0, capsys.readouterr().err


def test_its_links_to_other_docs_resolve():
    for target, anchor in re.findall(r"\]\(([a-z_]+\.md)(?:#([a-z0-9-]+))?\)", TEXT):
        page = (DOC.parent / target).read_text(encoding="utf-8")
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page, re.MULTILINE)
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{target}#{anchor}"


# --- the examples render -----------------------------------------------------------------

SAMPLES = ("full", "email_only", "no_consent")  # of templates/welcome/samples/
EXAMPLE_BLOCK = {
    "description": "An example of docs/designers.md",
    "params": {"title": "Your points", "cta_url": "https://shop.example.com/account/rewards"},
}
TEMPLATE = {
    "subject": "Example",
    "preheader": "An example",
    "links": {"home": "https://shop.example.com/"},
    "blocks": ["doc_example"],
}


def _files(mjml: str, text: str) -> dict[str, str]:
    return {
        "template.json": json.dumps(TEMPLATE),
        "blocks/doc_example/block.json": json.dumps(EXAMPLE_BLOCK),
        "blocks/doc_example/block.mjml": mjml,
        "blocks/doc_example/block.txt": text,
    }


def _wrapped(jinja: str) -> str:
    return f"<mj-section><mj-column><mj-text>{jinja}</mj-text></mj-column></mj-section>"


async def _preview(
    client: httpx.AsyncClient, sample: str | dict[str, Any], files: dict[str, str]
) -> Any:
    """The preview of `files` for a sample (by name) or an inline profile."""
    reader = {"sample": sample} if isinstance(sample, str) else {"profile": sample}
    body = {"template": "welcome", **reader, "files": files}
    r = await client.post("/v1/preview", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    for part in (doc["html"], doc["text"]):
        assert not re.search(r"\{\{|\{%|kj[xs]\d+x", part), part
    return doc


def test_there_are_examples_to_render():
    assert len(_examples("jinja")) >= 4 and len(_examples("mjml")) >= 1


@pytest.mark.parametrize("sample", SAMPLES)
async def test_every_jinja_example_renders_in_html_and_text(client, sample):
    for example in _examples("jinja"):
        doc = await _preview(client, sample, _files(_wrapped(example), example))
        assert doc["text"].strip(), example


@pytest.mark.parametrize("sample", SAMPLES)
async def test_every_mjml_example_renders(client, sample):
    for example in _examples("mjml"):
        doc = await _preview(client, sample, _files(example, "text"))
        assert "Your points" in doc["html"], example


async def test_the_examples_show_what_the_page_says(client):
    """The outputs the page states for its examples (in English, for Ada)."""
    [filters] = [e for e in _examples("jinja") if 'money("EUR")' in e]
    text = (await _preview(client, "full", _files(_wrapped(filters), filters)))["text"]
    assert "€39.00" in text and "1,234.50" in text and "Hi Ada, Gold member" in text
    anonymous = await _preview(client, "email_only", _files(_wrapped(filters), filters))
    assert "Hi there, New member" in anonymous["text"]
    [conditions] = [e for e in _examples("jinja") if "segment == 'vip'" in e]
    full = (await _preview(client, "full", _files(_wrapped(conditions), conditions)))["text"]
    declined = await _preview(client, "no_consent", _files(_wrapped(conditions), conditions))
    assert "picked for you." in full and "our favourites." in declined["text"]
    vip = {"first_name": "Ada", "segments": ["vip", "cart_abandoner"]}
    member = (await _preview(client, vip, _files(_wrapped(conditions), conditions)))["text"]
    assert "one of our best customers. Your cart is waiting." in member
    assert "best customers" not in full and "cart is waiting" not in full


def test_the_smtp_example_is_a_valid_setting(settings):
    [url] = re.findall(r"KAIROS_SMTP_URL='([^']+)'", TEXT)
    parsed = settings(KAIROS_SMTP_URL=url).smtp_url
    assert parsed is not None and parsed.security == "starttls" and parsed.port == 587


def test_the_page_is_linked_from_the_readme_and_the_architecture():
    for page in (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "architecture.md"):
        assert re.search(r"\]\((?:docs/)?designers\.md", page.read_text(encoding="utf-8"))


def test_the_page_names_no_path_of_this_machine():
    # It is read on GitHub and in a checkout alike.
    assert str(PROJECT_ROOT) not in TEXT and str(Path.home()) not in TEXT
