"""The contrast arithmetic (WCAG 2.x relative luminance) and the little CSS reader the
craft checks stand on (app/render/contrast.py, app/render/styles.py)."""

from __future__ import annotations

import pytest

from app.render.contrast import MIN_RATIO, parse_colour, ratio
from app.render.styles import Element, declarations, matches, parse_sheet


@pytest.mark.parametrize(
    ("fg", "bg", "expected"),
    [
        ("#000000", "#ffffff", 21.0),
        ("#fff", "#FFFFFF", 1.0),
        ("#777777", "#ffffff", 4.48),  # the classic just-too-light grey
        ("#767676", "#ffffff", 4.54),  # and the lightest grey that passes on white
        ("rgb(255, 0, 0)", "white", 4.0),
        ("#7b8794", "#f4f5f7", 3.36),  # the footer of issue 13
    ],
)
def test_ratios_match_the_wcag_definition(fg, bg, expected):
    a, b = parse_colour(fg), parse_colour(bg)
    assert a is not None and b is not None
    assert round(ratio(a, b), 2) == expected == round(ratio(b, a), 2)


def test_colours_are_read_from_css_values():
    assert parse_colour("#1d3b36") == (29, 59, 54)
    assert parse_colour("#abc") == (170, 187, 204)
    assert parse_colour("1px solid #e4e7eb") == (228, 231, 235)
    assert parse_colour("rgba(10, 20, 30, 0.5)") == (10, 20, 30)
    assert parse_colour("transparent") is None and parse_colour("inherit") is None
    assert MIN_RATIO == 4.5


def test_style_sheets_keep_media_conditions_and_drop_comments():
    rules = parse_sheet(
        "/* .kx-gone { color: red } */ .a, .b p { color: #111; background: #fff }\n"
        "@media (prefers-color-scheme: dark) { .a { color: #eee !important; } }\n"
        ".c { }"
    )
    assert [(r.selector, r.media) for r in rules] == [
        (".a", ""),
        (".b p", ""),
        (".a", "(prefers-color-scheme: dark)"),
        (".c", ""),
    ]
    assert rules[1].get("background") == "#fff" and rules[2].get("color") == "#eee !important"
    assert declarations("color:#fff; ;font-size : 12px") == (
        ("color", "#fff"),
        ("font-size", "12px"),
    )


def test_selectors_match_tags_classes_attributes_and_combinators():
    body = Element("div", frozenset({"kx-body"}))
    section = Element("div", frozenset({"kx-surface", "x"}), frozenset({"class", "style"}))
    table = Element("table")
    td = Element("td", frozenset({"kx-quiet"}))
    text = Element("div")
    chain = [body, section, table, td, text]
    assert matches(".kx-body div", chain)
    assert matches(".kx-body .kx-quiet div", chain)
    assert not matches(".kx-body .kx-muted div", chain)
    assert matches(".kx-surface > table", chain[:3])
    assert not matches(".kx-surface > table", [body, section, td, table])
    assert matches("div.kx-surface.x", chain[:2]) and not matches("td.kx-surface", chain[:2])
    assert matches("[style] table", chain[:3]) and not matches("[data-ogsc] table", chain[:3])
    assert matches("*", chain[:1]) and not matches("", chain)
