"""`kairos check`'s craft rules (app/render/lint.py): text below 4.5:1 against its
background in a block's own styles, and reader fields read without a fallback, each
named by file, line and block; through the real CLI on fixture blocks beside copies of
the real ones, and rule by rule on small sources."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.sandbox import SandboxedEnvironment

from app.cli import main
from app.render import lint
from app.render.sources import load_block, load_blocks
from app.settings import PROJECT_ROOT

THEME = (PROJECT_ROOT / "templates" / "theme.css").read_text(encoding="utf-8")
AMP_THEME = (PROJECT_ROOT / "templates" / "theme.amp.css").read_text(encoding="utf-8")
ENV = SandboxedEnvironment()
BELOW = "below 4.5:1 (WCAG AA)"


def make_block(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    files = {"block.json": '{"description": "a fixture"}', **files}
    for filename, text in files.items():
        (folder / filename).write_text(text, encoding="utf-8")
    return folder


def check(capsys, monkeypatch, blocks: Path, templates: Path) -> tuple[int, list[str]]:
    monkeypatch.setenv("KAIROS_PUBLIC_URL", "https://kairos.example.com")
    monkeypatch.setenv("KAIROS_BLOCKS_DIR", str(blocks))
    monkeypatch.setenv("KAIROS_TEMPLATES_DIR", str(templates))
    code = main(["check", "--no-amp"])
    return code, capsys.readouterr().err.splitlines()


# --- through the CLI -----------------------------------------------------------------------


def test_check_names_the_block_and_line_of_low_contrast_and_of_a_field_without_fallback(
    clean_environ, capsys, monkeypatch, sources_copy
):
    blocks, templates = sources_copy()
    make_block(
        blocks,
        "small_print",
        {
            "block.mjml": (
                '<mj-section background-color="#ffffff">\n'
                "  <mj-column>\n"
                '    <mj-text color="#7b8794">Terms apply.</mj-text>\n'
                "  </mj-column>\n"
                "</mj-section>\n"
            )
        },
    )
    make_block(
        blocks,
        "hello",
        {
            "block.mjml": "<mj-section><mj-column>\n<mj-text>Hello {{ first_name }}!</mj-text>\n"
            "</mj-column></mj-section>\n"
        },
    )
    code, err = check(capsys, monkeypatch, blocks, templates)
    assert code == 1
    assert err == [
        f"{blocks}/hello/block.mjml:2: block hello: first_name is read without a fallback (a "
        "reader may not have it): use `| default(...)` or put it inside `{% if first_name %}`",
        f"{blocks}/small_print/block.mjml:3: block small_print: text colour #7b8794 on #ffffff "
        "is 3.66:1, below 4.5:1 (WCAG AA)",
    ]


def test_check_passes_on_the_shipped_blocks_and_templates(
    clean_environ, capsys, monkeypatch, sources_copy
):
    blocks, templates = sources_copy()
    code, err = check(capsys, monkeypatch, blocks, templates)
    assert (code, err) == (0, [])


def test_check_names_a_template_subject_without_fallback(
    clean_environ, capsys, monkeypatch, sources_copy
):
    blocks, templates = sources_copy()
    path = templates / "welcome" / "template.json"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace("{% if first_name %}, {{ first_name }}{% endif %}", ", {{ first_name }}")
    )
    code, err = check(capsys, monkeypatch, blocks, templates)
    assert code == 1
    assert err == [
        f"{path}:3: template welcome (subject): first_name is read without a fallback (a "
        "reader may not have it): use `| default(...)` or put it inside `{% if first_name %}`"
    ]


# --- contrast, rule by rule ----------------------------------------------------------------


def contrast_of(tmp_path: Path, files: dict[str, str]) -> list[str]:
    block = load_block(make_block(tmp_path, "probe", files))
    where = f"{tmp_path / 'probe'}/"
    return [p.removeprefix(where) for p in lint.contrast_problems(block, THEME, AMP_THEME)]


def test_the_shipped_blocks_have_no_low_contrast_text():
    blocks, broken = load_blocks(PROJECT_ROOT / "blocks")
    assert not broken and len(blocks) >= 10
    assert [p for b in blocks.values() for p in lint.contrast_problems(b, THEME, AMP_THEME)] == []


def test_the_issues_footer_and_cart_note_are_caught(tmp_path):
    """The footer and cart note as they were: #7b8794 on the page (3.36:1) and on white."""
    footer = (
        '<mj-section padding="28px 24px 8px">\n  <mj-column>\n'
        '    <mj-text font-size="12px" color="#7b8794">{{ params.reason }}</mj-text>\n'
        "  </mj-column>\n</mj-section>\n"
        '<mj-section background-color="#ffffff"><mj-column>\n'
        '<mj-text color="#7b8794">{{ params.note }}</mj-text></mj-column></mj-section>\n'
    )
    assert contrast_of(tmp_path, {"block.mjml": footer}) == [
        f"block.mjml:3: block probe: text colour #7b8794 on #f4f5f7 is 3.36:1, {BELOW}",
        f"block.mjml:7: block probe: text colour #7b8794 on #ffffff is 3.66:1, {BELOW}",
    ]


@pytest.mark.parametrize(
    ("mjml", "found"),
    [
        # A theme class on hand-written markup, on the section's background.
        (
            '<mj-section background-color="#b4472a"><mj-column><mj-text>'
            '<a class="kx-link" href="#">Go</a></mj-text></mj-column></mj-section>',
            "#b4472a on #b4472a",
        ),
        # Inline style wins over the theme class.
        (
            '<mj-section><mj-column><mj-text><span class="kx-muted" style="color:#cccccc">x</span>'
            "</mj-text></mj-column></mj-section>",
            "#cccccc on #f4f5f7",
        ),
        # A button's own colours.
        (
            '<mj-section><mj-column><mj-button background-color="#ffffff" color="#aaaaaa">Buy'
            "</mj-button></mj-column></mj-section>",
            "#aaaaaa on #ffffff",
        ),
        # A background chosen with Jinja: each choice counts.
        (
            '<mj-section background-color="{% if params.light %}#fff{% else %}#333{% endif %}">'
            '<mj-column><mj-text color="#52606d">x</mj-text></mj-column></mj-section>',
            "#52606d on #333333",
        ),
        # A column's or a text cell's own background counts.
        (
            '<mj-section><mj-column inner-background-color="#000000"><mj-text>'
            "{{ 1 if params.n < 2 else 0 }}</mj-text></mj-column></mj-section>",
            "#1f2933 on #000000",
        ),
        (
            '<mj-section><mj-column><mj-text container-background-color="#52606d">x</mj-text>'
            "</mj-column></mj-section>",
            "#1f2933 on #52606d",
        ),
        # Text inherits the mj-text default colour from mj-attributes.
        (
            '<mj-section background-color="#1d3b36"><mj-column><mj-text>{{ params.x }}</mj-text>'
            "</mj-column></mj-section>",
            "#1f2933 on #1d3b36",
        ),
    ],
)
def test_contrast_reads_attributes_styles_classes_and_jinja_choices(tmp_path, mjml, found):
    (problem,) = contrast_of(tmp_path, {"block.mjml": mjml})
    assert f"text colour {found} is " in problem


@pytest.mark.parametrize(
    "mjml",
    [
        '<mj-section><mj-column><mj-text color="#52606d">Fine</mj-text></mj-column></mj-section>',
        # No text: an image, a divider, a statement.
        '<mj-section background-color="#000000"><mj-column><mj-image src="x" />'
        "<mj-divider /><mj-text>{% set x = 1 %}</mj-text></mj-column></mj-section>",
        '<mj-section background-color="#1d3b36"><mj-column><mj-text color="#ffffff">'
        '<span style="color:#f2c8a0">Sale</span></mj-text></mj-column></mj-section>',
    ],
)
def test_contrast_passes_what_reads(tmp_path, mjml):
    assert contrast_of(tmp_path, {"block.mjml": mjml}) == []


def test_amp_parts_are_read_with_the_amp_theme_and_the_blocks_own_css(tmp_path):
    problems = contrast_of(
        tmp_path,
        {
            "block.mjml": "<mj-section></mj-section>",
            "block.amp.html": '<div class="kx-note">\n<p class="kx-small">Fine print</p>\n'
            '<p class="kx-note-faint">Finer print</p>\n</div>',
            "block.amp.css": ".kx-note { background-color: #ffffff; }\n"
            ".kx-note .kx-note-faint { color: #9aa5b1; }",
        },
    )
    assert problems == [
        f"block.amp.html:3: block probe: text colour #9aa5b1 on #ffffff is 2.50:1, {BELOW}"
    ]


# --- fallbacks, rule by rule ---------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ first_name | default('there') }}",
        "{{ first_name | d('there', true) | upper }}",
        "{{ first_name or params.no_name }}",
        "{% if first_name %}Hi {{ first_name }}{% endif %}",
        "{% if tier and consent.personalization %}{{ tier | title }}{% endif %}",
        "{% if x %}{% elif first_name %}{{ first_name }}{% endif %}",
        "{{ ('Hi ' ~ first_name) if first_name else 'Hello' }}",
        "{% for line in cart %}{{ line.title }}{% endfor %}",
        "{{ params.title }} {{ consent.tracking }} {{ variant }}",
        "{% if attributes.colour is defined %}{{ attributes.colour }}{% endif %}",
    ],
)
def test_reads_with_a_fallback_pass(source):
    assert lint._unguarded(source, ENV, frozenset()) == []


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("Hi {{ first_name }}", [("first_name", 1)]),
        ("{% if first_name %}x{% else %}\n{{ first_name }}{% endif %}", [("first_name", 2)]),
        ("{% if last_name %}{{ first_name }}{% endif %}", [("first_name", 1)]),
        ("{{ params.hi if first_name else first_name }}", [("first_name", 1)]),
        ("{{ params.x or tier }}", [("tier", 1)]),
        ("{{ loyalty_points | number }}", [("loyalty_points", 1)]),
        ("{{ cart[0].title }}\n\n{{ attributes.colour }}", [("cart", 1), ("attributes", 3)]),
        ("{% for x in cart %}{% endfor %}{{ recommendations[0].title }}", [("recommendations", 1)]),
    ],
)
def test_reads_without_a_fallback_are_found_with_their_line(source, found):
    assert lint._unguarded(source, ENV, frozenset()) == found


def test_a_blocks_needs_cover_its_main_part_but_not_its_fallback(tmp_path):
    block = load_block(
        make_block(
            tmp_path,
            "points",
            {
                "block.json": '{"needs": ["loyalty_points"]}',
                "block.mjml": "<mj-text>{{ loyalty_points }}</mj-text>",
                "fallback.mjml": "<mj-text>\n{{ loyalty_points }}</mj-text>",
            },
        )
    )
    assert lint.fallback_problems(block, ENV) == [
        f"{tmp_path}/points/fallback.mjml:2: block points: loyalty_points is read without a "
        "fallback (a reader may not have it): use `| default(...)` or put it inside "
        "`{% if loyalty_points %}`"
    ]
