"""Email craft, asserted on real renders: every template x (each sample + no profile) x
each variant, HTML from the real MJML compile. Images off still read (placeholders keep
their size, a background and legible alt text); real headings; links named apart; every
text colour at least 4.5:1 against its background, computed from the inlined styles, in
the light palette and in the dark one (the `prefers-color-scheme: dark` rules applied
over the inline styles, as a client does); the preheader's filler; AMP parts that
respond to a phone's width."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import pytest
from test_render import NO_PROFILE, Engine, one_reader_per_variant

from app.render import contrast
from app.render.compiler import FILLER
from app.render.result import RenderResult
from app.render.styles import Element, Rule, declarations, matches, parse_sheet

PUBLIC_URL = "https://kairos.example.com"
VOID = frozenset({"img", "br", "meta", "link", "hr", "input", "col", "area", "base", "source"})
DARK = "prefers-color-scheme: dark"


# --- a small DOM with the styles a client computes -----------------------------------------


@dataclass(eq=False)
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # its own text, not its children's

    def element(self) -> Element:
        classes = frozenset(self.attrs.get("class", "").split())
        return Element(self.tag, classes, frozenset(self.attrs))

    def chain(self) -> list[Element]:
        nodes, node = [], self
        while node is not None:
            nodes.append(node.element())
            node = node.parent
        return nodes[::-1]

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def all_text(self) -> str:
        return " ".join([*self.text, *(c.all_text() for c in self.children)])


class Tree(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.open: list[Node] = [self.root]
        self.styles: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.open[-1])
        self.open[-1].children.append(node)
        if tag not in VOID:
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.open) - 1, 0, -1):
            if self.open[i].tag == tag:
                del self.open[i:]
                return

    def handle_data(self, data: str) -> None:
        if self.open[-1].tag == "style":
            self.styles.append(data)
        else:
            self.open[-1].text.append(data)


def visible_text(node: Node) -> str:
    # Zero-width and combining filler characters are not text a reader sees.
    return re.sub(r"[\s\u034f\u200c\u00ad]+", " ", "".join(node.text)).strip()


class Styles:
    """The colours a client computes: inline styles, with `dark` rules (all !important in
    the themes) over them when the reader's client is in dark mode."""

    def __init__(self, dark: tuple[Rule, ...] = ()) -> None:
        # Later and more specific rules win: applied in that order, each overriding.
        def weight(item: tuple[int, Rule]) -> tuple[int, int]:
            i, rule = item
            return len(re.findall(r"[.\[]", rule.selector)), i

        self.dark = [r for _, r in sorted(enumerate(dark), key=weight)]

    def own(self, node: Node, names: tuple[str, ...]) -> str | None:
        found = None
        for name, value in declarations(node.attrs.get("style", "")):
            if name in names and contrast.parse_colour(value) is not None:
                found = value
        if found is None and "background-color" in names and "bgcolor" in node.attrs:
            found = node.attrs["bgcolor"]
        chain = None
        for rule in self.dark:
            values = [rule.get(n) for n in names]
            value = next((v for v in values if v and contrast.parse_colour(v)), None)
            if value is not None:
                chain = chain or node.chain()
                if matches(rule.selector, chain):
                    found = value
        return found

    def inherited(self, node: Node, names: tuple[str, ...]) -> contrast.Colour | None:
        current: Node | None = node
        while current is not None:
            value = self.own(current, names)
            if value is not None:
                return contrast.parse_colour(value)
            current = current.parent
        return None

    def colour(self, node: Node) -> contrast.Colour | None:
        return self.inherited(node, ("color",))

    def background(self, node: Node) -> contrast.Colour | None:
        return self.inherited(node, ("background-color", "background"))


def hidden(node: Node) -> bool:
    current: Node | None = node
    while current is not None:
        if ("display", "none") in declarations(current.attrs.get("style", "").lower()):
            return True
        current = current.parent
    return False


def low_contrast(tree: Tree, styles: Styles) -> list[str]:
    """Each visible text below 4.5:1 against its background, as `text: fg on bg (ratio)`."""
    problems = []
    for node in tree.root.walk():
        text = visible_text(node)
        if not text or node.tag in ("style", "title", "#root") or hidden(node):
            continue
        fg, bg = styles.colour(node), styles.background(node)
        if fg is None or bg is None:
            problems.append(f"{text[:40]!r}: no colour or background ({fg}, {bg})")
            continue
        ratio = contrast.ratio(fg, bg)
        if ratio < contrast.MIN_RATIO:
            problems.append(
                f"{text[:40]!r}: {contrast.hex_colour(fg)} on {contrast.hex_colour(bg)} "
                f"({ratio:.2f}:1)"
            )
    return problems


def dark_rules(tree: Tree) -> tuple[Rule, ...]:
    return tuple(r for css in tree.styles for r in parse_sheet(css) if DARK in r.media)


# --- the renders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    template: str
    sample: str
    variant: str

    def __str__(self) -> str:
        return f"{self.template}/{self.sample} (variant {self.variant})"


@pytest.fixture(scope="module")
def renders(module_settings) -> Iterator[dict[Case, RenderResult]]:
    engine = Engine(module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_RELOAD_TEMPLATES="false"))
    renderer = engine.renderer
    cases = {}
    for name in renderer.names():
        samples: dict[str, Any] = dict(renderer.samples(name))
        samples[NO_PROFILE] = None
        variants = renderer.compiled(name).source.variants
        for variant, user_id in one_reader_per_variant(variants, name).items():
            for sample, doc in samples.items():
                cases[Case(name, sample, variant)] = engine.render(name, user_id, doc)
    yield cases
    engine.close()


@pytest.fixture(scope="module")
def trees(renders: dict[Case, RenderResult]) -> dict[Case, Tree]:
    return {case: Tree(r.html or "") for case, r in renders.items()}


def test_every_template_sample_and_variant_is_covered(renders):
    assert {c.template for c in renders} >= {"welcome", "abandoned_cart", "weekly_picks"}
    assert {c.variant for c in renders} == {"A", "B"}
    assert sum(c.sample == NO_PROFILE for c in renders) == 6
    assert all(r.html for r in renders.values())


# --- images off ----------------------------------------------------------------------------


def images(tree: Tree) -> list[Node]:
    # The open pixel is 1x1 and alt="": it shows nothing, images on or off.
    return [
        n for n in tree.root.walk() if n.tag == "img" and "/v1/px/" not in n.attrs.get("src", "")
    ]


def test_images_off_placeholders_keep_their_size_background_and_legible_alt(trees):
    problems = []
    for case, tree in trees.items():
        found = images(tree)
        if len(found) < 3:
            problems.append(f"{case}: only {len(found)} images")
        for img in found:
            where = f"{case}: {img.attrs.get('src', '')[:60]}"
            size = (img.attrs.get("width", ""), img.attrs.get("height", ""))
            if not all(v.isascii() and v.isdigit() and int(v) > 0 for v in size):
                problems.append(f"{where}: width/height {size}")
            if "alt" not in img.attrs:
                problems.append(f"{where}: no alt")
            style = dict(declarations(img.attrs.get("style", "")))
            bg = contrast.parse_colour(style.get("background-color", ""))
            fg = contrast.parse_colour(style.get("color", ""))
            if bg is None:
                problems.append(f"{where}: no background colour")
                continue
            if img.attrs.get("alt"):
                if fg is None or "font-family" not in style or "font-size" not in style:
                    problems.append(f"{where}: alt text not styled ({style})")
                elif contrast.ratio(fg, bg) < contrast.MIN_RATIO:
                    problems.append(f"{where}: alt text {contrast.ratio(fg, bg):.2f}:1")
    assert problems == []


def test_full_width_images_keep_their_proportions_on_a_phone(trees):
    tree = trees[Case("weekly_picks", "full", "B")]
    wide = [i for i in images(tree) if i.attrs.get("width") == "600"]
    assert len(wide) == 2  # the hero and the countdown
    for img in wide:
        style = dict(declarations(img.attrs["style"]))
        assert style["height"].startswith("auto") and style["width"] == "100%"


def test_the_countdown_alt_text_carries_the_deadline_in_words(trees):
    tree = trees[Case("weekly_picks", "full", "B")]
    (countdown,) = [i for i in images(tree) if "/v1/img/countdown" in i.attrs["src"]]
    # In the template's language (en) and the reader's time zone (Europe/London).
    assert countdown.attrs["alt"] == (
        "Time left until the sale ends on December 24, 2026, 11:59\u202fPM GMT"
    )


# --- headings and links --------------------------------------------------------------------


def test_one_main_heading_then_section_headings_styled_as_before(trees):
    problems = []
    for case, tree in trees.items():
        headings = [n for n in tree.root.walk() if re.fullmatch(r"h[1-6]", n.tag)]
        levels = [h.tag for h in headings]
        if levels.count("h1") != 1 or levels[0] != "h1" or "h2" not in levels:
            problems.append(f"{case}: headings {levels}")
        if set(levels) - {"h1", "h2"}:
            problems.append(f"{case}: headings {levels}")
        for h in headings:
            style = dict(declarations(h.attrs.get("style", "")))
            if not visible_text(h) or style.get("margin", "").split()[:1] != ["0"]:
                problems.append(f"{case}: {h.tag} {visible_text(h)!r} {style}")
            if "Georgia" not in style.get("font-family", "") or "font-size" not in style:
                problems.append(f"{case}: {h.tag} not styled: {style}")
    assert problems == []


def accessible_name(link: Node) -> str:
    if link.attrs.get("aria-label"):
        return " ".join(link.attrs["aria-label"].split())
    alts = [n.attrs.get("alt", "") for n in link.walk() if n.tag == "img"]
    return " ".join(" ".join([link.all_text(), *alts]).split())


def test_links_with_the_same_name_lead_to_the_same_place(trees):
    """Six "Shop now" links to six products cannot be told apart by a screen reader's
    list of links: each product card's link names its product."""
    problems = []
    for case, tree in trees.items():
        targets: dict[str, set[str]] = {}
        for link in (n for n in tree.root.walk() if n.tag == "a" and "href" in n.attrs):
            name = accessible_name(link)
            if not name:
                problems.append(f"{case}: a link without a name: {link.attrs['href'][:60]}")
            # A click URL is signed per target; the reader's part (?r=) is the same.
            targets.setdefault(name, set()).add(link.attrs["href"].split("?")[0])
        problems += [
            f"{case}: {n!r} leads to {len(t)} places" for n, t in targets.items() if len(t) > 1
        ]
    assert problems == []
    tree = trees[Case("weekly_picks", "full", "A")]
    shop = [
        accessible_name(n)
        for n in tree.root.walk()
        if n.tag == "a" and n.all_text().strip() == "Shop now"
    ]
    assert len(shop) == 6 and len(set(shop)) == 6
    assert all(re.fullmatch(r"Shop now: \S.*", name) for name in shop)


# --- contrast, light and dark --------------------------------------------------------------


def test_every_text_is_at_least_4_5_to_1_against_its_background(trees):
    problems = []
    for case, tree in trees.items():
        problems += [f"{case}: {p}" for p in low_contrast(tree, Styles())]
    assert problems == []


def test_the_dark_palette_is_declared_and_every_text_reads_in_it(trees, renders):
    problems = []
    for case, tree in trees.items():
        metas = {
            n.attrs.get("name"): n.attrs.get("content") for n in tree.root.walk() if n.tag == "meta"
        }
        if metas.get("color-scheme") != "light dark":
            problems.append(f"{case}: color-scheme meta {metas.get('color-scheme')!r}")
        if metas.get("supported-color-schemes") != "light dark":
            problems.append(f"{case}: supported-color-schemes meta")
        rules = dark_rules(tree)
        if len(rules) < 10 or not all("!important" in v for r in rules for _, v in r.declarations):
            problems.append(f"{case}: dark rules {rules}")
            continue
        styles = Styles(rules)
        problems += [f"{case} (dark): {p}" for p in low_contrast(tree, styles)]
        for img in images(tree):
            fg, bg = styles.colour(img), styles.background(img)
            if img.attrs.get("alt") and (fg is None or bg is None or contrast.ratio(fg, bg) < 4.5):
                problems.append(f"{case} (dark): alt text of {img.attrs['src'][:60]}")
        # Dark mode really changes the page, the surfaces and the text.
        body = next(n for n in tree.root.walk() if "kx-body" in n.attrs.get("class", ""))
        if contrast.luminance(styles.background(body) or (255, 255, 255)) > 0.05:
            problems.append(f"{case}: the dark page is not dark")
    assert problems == []


def test_a_light_palette_text_fails_in_the_dark_simulation():
    """The dark check is real: text left with its light ink on a darkened surface fails."""
    html = (
        "<style>@media (prefers-color-scheme: dark) { .kx-surface { background-color: #1c2024 "
        "!important; } }</style>"
        '<div class="kx-surface" style="background-color:#ffffff">'
        '<div style="color:#1f2933">Hello</div></div>'
    )
    tree = Tree(html)
    assert low_contrast(tree, Styles()) == []
    assert low_contrast(tree, Styles(dark_rules(tree))) == ["'Hello': #1f2933 on #1c2024 (1.11:1)"]


# --- the preheader -------------------------------------------------------------------------


def test_the_preheader_is_followed_by_filler(renders, trees):
    """The preview shows the preheader, then invisible filler rather than the body."""
    filler = html.unescape(FILLER)
    assert filler == "\u034f\u200c\xa0" * 90
    for case, r in renders.items():
        body = next(n for n in trees[case].root.walk() if n.tag == "body")
        preview = body.children[0]
        assert preview.tag == "div" and hidden(preview), case
        assert "".join(preview.text) == r.preheader + filler, case


# --- AMP at a phone's width ----------------------------------------------------------------


def amp_css(amp: str) -> str:
    return amp.split("<style amp-custom>", 1)[1].split("</style>", 1)[0]


def test_amp_parts_respond_to_a_narrow_viewport(renders):
    problems = []
    for case, r in renders.items():
        assert r.amp is not None
        narrow = [x for x in parse_sheet(amp_css(r.amp)) if "max-width" in x.media]
        stacked = {x.selector: dict(x.declarations) for x in narrow}
        if "kx-card" in r.amp and stacked.get(".kx-card", {}).get("width") != "100%":
            problems.append(f"{case}: product cards do not stack: {stacked.get('.kx-card')}")
        if not any(m.media.replace(" ", "") == "(max-width:479px)" for m in narrow):
            problems.append(f"{case}: no narrow-screen rules")
        for tag in re.findall(r"<amp-list\b[^>]*>", r.amp):
            if 'layout="fixed-height"' in tag:
                problems.append(f"{case}: an amp-list of fixed height: {tag[:120]}")
        for listing in re.findall(r"<amp-list\b.*?</amp-list>", r.amp, re.S):
            if "<div overflow" not in listing:
                problems.append(f"{case}: an amp-list without an overflow button")
    assert problems == []
