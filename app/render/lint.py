"""Two rules `kairos check` applies to the designers' own files, each problem named by
file, line and block (docs/blocks.md, "What kairos check looks for").

Contrast: every element of a block part that holds text, with the text colour and the
background it gets from its own markup and the theme, must reach 4.5:1 (WCAG AA). Colours
come from MJML attributes (`color`, `background-color`, `background`, `bgcolor`),
`style` attributes and the theme's (and, for AMP, the block's) class rules; an element
without one inherits its nearest ancestor's in the same file, else the email's defaults.
A value that chooses between colours with Jinja counts each of them.

Fallbacks: a Jinja expression that reads a reader field that may be missing or empty
(`READER_FIELDS`) must say what to show without it: through `default(...)`, as the left
side of `or`, inside an `{% if %}` (or the `if` of `a if test else b`) whose test reads
that field, or inside a `{% for %}` over it. The main part of a block that lists the
field in `needs` is shown only to readers who have it, so it may read it freely; its
fallback may not.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from jinja2 import Environment, nodes
from jinja2.exceptions import TemplateSyntaxError

from app.render import contrast
from app.render.sources import Block, Part, TemplateSource
from app.render.styles import Element, Rule, declarations, matches, parse_sheet

# The reader's fields a render may lack: undefined, None or empty for some readers.
READER_FIELDS = frozenset(
    {
        "first_name",
        "last_name",
        "tier",
        "loyalty_points",
        "attributes",
        "cart",
        "recommendations",
        "segment",
    }
)
FALLBACK_FILTERS = frozenset({"default", "d"})
# The email around a block, as `compiler.mjml_document` and `amp.document` write it.
MJML_TEXT, MJML_PAGE = "#1f2933", "#f4f5f7"
MJML_ROOT = (Element("mj-body"),)
AMP_ROOT = (Element("body"), Element("div", frozenset({"kx-wrap"})))
FG_NAMES = ("color",)
# MJML puts these behind the text of the element that carries them.
BG_NAMES = (
    "background-color",
    "background",
    "bgcolor",
    "container-background-color",
    "inner-background-color",
)
JINJA_STATEMENT = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.S)
JINJA_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
CLASS_NAME = re.compile(r"[A-Za-z_][\w-]*")
VOID = frozenset({"img", "br", "hr", "meta", "link", "input", "amp-img"})


# --- contrast ------------------------------------------------------------------------------


def contrast_problems(block: Block, theme_css: str, amp_css: str) -> list[str]:
    """Text below 4.5:1 against its background in the block's MJML and AMP parts."""
    html_rules = tuple(r for r in parse_sheet(theme_css) if not r.media)
    amp_rules = tuple(r for r in parse_sheet(amp_css + "\n" + block.amp_css) if not r.media)
    problems = []
    for part, rules, root in (
        (block.mjml, html_rules, MJML_ROOT),
        (block.fallback_mjml, html_rules, MJML_ROOT),
        (block.amp, amp_rules, AMP_ROOT),
        (block.fallback_amp, amp_rules, AMP_ROOT),
    ):
        if part is None:
            continue
        defaults = _defaults(rules, root)
        for line, fg, bg in _Colours(rules, root, defaults).pairs(part.text):
            worst = min(itertools.product(fg, bg), key=lambda p: contrast.ratio(*p))
            ratio = contrast.ratio(*worst)
            if ratio < contrast.MIN_RATIO:
                problems.append(
                    f"{part.path}:{line}: block {block.name}: text colour "
                    f"{contrast.hex_colour(worst[0])} on {contrast.hex_colour(worst[1])} is "
                    f"{ratio:.2f}:1, below {contrast.MIN_RATIO}:1 (WCAG AA)"
                )
    return problems


Colours = tuple[contrast.Colour, ...]


def _colours(value: str) -> Colours:
    found = [contrast.parse_colour(m.group()) for m in contrast.HEX.finditer(value)]
    if not found:
        found = [contrast.parse_colour(value)]
    return tuple(c for c in found if c is not None)


def _defaults(rules: tuple[Rule, ...], root: tuple[Element, ...]) -> tuple[Colours, Colours]:
    fg, bg = _colours(MJML_TEXT), _colours(MJML_PAGE)
    for i in range(1, len(root) + 1):
        own_fg, own_bg = _own(rules, root[:i], {})
        fg, bg = own_fg or fg, own_bg or bg
    return fg, bg


def _own(
    rules: tuple[Rule, ...], chain: tuple[Element, ...], attrs: dict[str, str]
) -> tuple[Colours, Colours]:
    """The text colours and backgrounds an element sets itself: class rules in sheet
    order, then its attributes, then its `style` (the last one set wins)."""
    fg: Colours = ()
    bg: Colours = ()
    sources: list[tuple[tuple[str, str], ...]] = [
        r.declarations for r in rules if matches(r.selector, chain)
    ]
    sources.append(tuple((k, v) for k, v in attrs.items() if k != "style"))
    sources.append(declarations(attrs.get("style", "")))
    for pairs in sources:
        for name, value in pairs:
            if name in FG_NAMES and _colours(value):
                fg = _colours(value)
            elif name in BG_NAMES and _colours(value):
                bg = _colours(value)
    return fg, bg


@dataclass
class _Open:
    element: Element
    line: int
    fg: Colours
    bg: Colours
    text: str = ""


class _Colours(HTMLParser):
    def __init__(
        self, rules: tuple[Rule, ...], root: tuple[Element, ...], defaults: tuple[Colours, Colours]
    ) -> None:
        super().__init__(convert_charrefs=True)
        self.rules, self.root = rules, root
        self.base = _Open(root[-1], 0, *defaults)
        self.open: list[_Open] = []
        self.found: list[tuple[int, Colours, Colours]] = []

    def pairs(self, text: str) -> list[tuple[int, Colours, Colours]]:
        """(line, text colours, backgrounds) of each element holding text."""
        # Statements go (both sides of a choice stay); an expression becomes a word of
        # text, so that a `<` inside it is not read as markup. Lines are kept.
        text = JINJA_STATEMENT.sub(lambda m: "\n" * m.group().count("\n"), text)
        text = JINJA_EXPRESSION.sub(lambda m: "x" + "\n" * m.group().count("\n"), text)
        self.feed(text)
        self.close()
        while self.open:
            self._close_top()
        return self.found

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        classes = " ".join(values.get(k, "") for k in ("class", "css-class"))
        element = Element(tag, frozenset(CLASS_NAME.findall(classes)), frozenset(values))
        chain = (*self.root, *(o.element for o in self.open), element)
        fg, bg = _own(self.rules, chain, values)
        parent = self.open[-1] if self.open else self.base
        opened = _Open(element, self.getpos()[0], fg or parent.fg, bg or parent.bg)
        if tag in VOID or tag == "mj-image":
            return
        self.open.append(opened)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # a self-closed MJML element (mj-image, mj-divider) holds no text

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i].element.tag == tag:
                while len(self.open) > i:
                    self._close_top()
                return

    def handle_data(self, data: str) -> None:
        if self.open:
            self.open[-1].text += data

    def _close_top(self) -> None:
        top = self.open.pop()
        if top.text.strip():
            self.found.append((top.line, top.fg, top.bg))


# --- fallbacks -----------------------------------------------------------------------------


def fallback_problems(block: Block, env: Environment) -> list[str]:
    """Reader fields read without a fallback in the block's parts."""
    problems: list[str] = []
    needs = frozenset(block.needs)
    for part, guarded in (
        (block.mjml, needs),
        (block.amp, needs),
        (block.text, needs),
        (block.fallback_mjml, frozenset()),
        (block.fallback_amp, frozenset()),
        (block.fallback_text, frozenset()),
    ):
        if part is not None:
            problems += _unguarded_in(part, env, guarded, f"block {block.name}")
    return problems


def template_fallback_problems(source: TemplateSource, env: Environment) -> list[str]:
    """Reader fields read without a fallback in a template's subject and preheader."""
    path = source.folder / "template.json"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    problems = []
    for key, text in (("subject", source.subject), ("preheader", source.preheader)):
        line = next((i for i, t in enumerate(lines, 1) if f'"{key}"' in t), 1)
        for name, _ in _unguarded(text, env, frozenset()):
            problems.append(_message(path, line, f"template {source.name} ({key})", name))
    return problems


def _unguarded_in(part: Part, env: Environment, guarded: frozenset[str], who: str) -> list[str]:
    return [
        _message(part.path, line, who, name) for name, line in _unguarded(part.text, env, guarded)
    ]


def _message(path: Path, line: int, who: str, name: str) -> str:
    return (
        f"{path}:{line}: {who}: {name} is read without a fallback (a reader may not have "
        f"it): use `| default(...)` or put it inside `{{% if {name} %}}`"
    )


def _unguarded(text: str, env: Environment, guarded: frozenset[str]) -> list[tuple[str, int]]:
    try:
        tree = env.parse(text)
    except TemplateSyntaxError:
        return []  # reported by the compile check, with its line
    found = dict.fromkeys(_reads(tree, guarded))
    return list(found)


def _names(node: nodes.Node) -> frozenset[str]:
    found = [node, *node.find_all(nodes.Name)]
    return frozenset(n.name for n in found if isinstance(n, nodes.Name) and n.name in READER_FIELDS)


def _walk(items: list[nodes.Node], guarded: frozenset[str]) -> Iterator[tuple[str, int]]:
    for item in items:
        yield from _reads(item, guarded)


def _reads(node: nodes.Node, guarded: frozenset[str]) -> Iterator[tuple[str, int]]:
    """(field, line) of each read of a reader field that has no fallback."""
    if isinstance(node, nodes.If):
        yield from _walk(node.body, guarded | _names(node.test))
        for branch in node.elif_:
            yield from _walk(branch.body, guarded | _names(branch.test))
        yield from _walk(node.else_, guarded)
    elif isinstance(node, nodes.For):
        within = guarded | _names(node.iter)
        yield from _walk(node.body, within)
        yield from _walk(node.else_, guarded)
    elif isinstance(node, nodes.CondExpr):
        yield from _reads(node.expr1, guarded | _names(node.test))
        if node.expr2 is not None:
            yield from _reads(node.expr2, guarded)
    elif isinstance(node, nodes.Filter) and node.name in FALLBACK_FILTERS:
        yield from _walk([*node.args, *(k.value for k in node.kwargs)], guarded)
    elif isinstance(node, nodes.Or):
        yield from _reads(node.right, guarded)
    elif isinstance(node, nodes.Test):
        return
    elif isinstance(node, nodes.Name):
        if node.ctx == "load" and node.name in READER_FIELDS and node.name not in guarded:
            yield node.name, node.lineno
    else:
        for child in node.iter_child_nodes():
            yield from _reads(child, guarded)
