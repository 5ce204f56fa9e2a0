"""The review's checks of a render's markup: each takes the HTML or the AMP part and
returns its problems as sentences, an empty list when the part passes (the MIME checks
are in tests/review_mime.py). They know nothing of templates or readers;
tests/review.py runs them over the render matrix, and tests/test_review_checks.py holds
each to a good and a bad hand-made document."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from review_html import (
    Colour,
    Element,
    colour,
    hidden,
    own_background,
    own_colour,
    parse,
)

from app.render.contrast import hex_colour as hex_of
from app.render.contrast import ratio as contrast

MIN_CONTRAST = 4.5  # WCAG 2.x AA for body text: the issue asks it of all text
DEFAULT_TEXT: Colour = (0, 0, 0)
DEFAULT_PAGE: Colour = (255, 255, 255)
DEFAULT_LINK: Colour = (0, 0, 238)  # browsers colour a link without one of its own
# Characters inboxes show as nothing: after the preheader they keep the body's first
# words out of the preview line.
FILLER = frozenset("\u034f\u200b\u200c\u200d\u00a0\u2007\u00ad\ufeff")
MIN_FILLER = 12
AMP_SCRIPT = "https://cdn.ampproject.org/"
IMAGES = ("img", "amp-img")


def _images(root: Element) -> list[Element]:
    return [e for e in root.iter() if e.tag in IMAGES]


def _snippet(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _effective(element: Element, *, background: bool) -> Colour:
    """The colour in force at `element`: the nearest one set on it or an ancestor."""
    for node in element.ancestors():
        value = own_background(node) if background else own_colour(node)
        found = colour(value) if value else None
        if found is not None:
            return found
        if node.tag == "a" and not background and node.attrs.get("href"):
            return DEFAULT_LINK
    return DEFAULT_PAGE if background else DEFAULT_TEXT


def contrast_problems(html: str, minimum: float = MIN_CONTRAST) -> list[str]:
    """Every shown text (and every image's alt text, which is what images-off shows)
    whose colour is below `minimum`:1 against its background, both taken from the
    inline styles of the element and its ancestors."""
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for element in parse(html).iter():
        if element.tag in ("style", "script", "title", "head") or hidden(element):
            continue
        if element.tag == "img":
            text = element.attrs.get("alt", "").strip()
            what = "alt text"
        else:
            text = element.own_text()
            what = "text"
        if not text:
            continue
        fg = _effective(element, background=False)
        bg = _effective(element, background=True)
        ratio = contrast(fg, bg)
        key = (hex_of(fg), hex_of(bg), _snippet(text))
        if ratio < minimum and key not in seen:
            seen.add(key)
            problems.append(
                f"contrast {ratio:.2f}:1 (< {minimum}) of {what} {key[2]!r}: {key[0]} on {key[1]}"
            )
    return problems


def heading_problems(html: str) -> list[str]:
    """The HTML part has a real heading (h1 or h2), and no heading is empty."""
    root = parse(html)
    headings = [e for e in root.iter() if re.fullmatch(r"h[1-6]", e.tag) and not hidden(e)]
    problems = [f"an empty <{h.tag}>" for h in headings if not h.text()]
    if not any(h.tag in ("h1", "h2") and h.text() for h in headings):
        problems.append("no h1 or h2 heading")
    return problems


def accessible_name(element: Element) -> str:
    """A link's accessible name: aria-label, else its text and its images' alt, else
    its title."""
    label = element.attrs.get("aria-label", "").strip()
    if label:
        return label
    words = [element.text()] + [i.attrs.get("alt", "") for i in element.find_all("img")]
    name = " ".join(" ".join(words).split())
    return name or element.attrs.get("title", "").strip()


def link_name_problems(html: str) -> list[str]:
    """Every link has an accessible name, and one name never leads to two places
    (six product cards each saying "Shop now" cannot be told apart by a screen reader)."""
    problems: list[str] = []
    targets: dict[str, set[str]] = defaultdict(set)
    shown: dict[str, str] = {}
    for link in parse(html).find_all("a"):
        href = link.attrs.get("href", "")
        if not href or hidden(link):
            continue
        name = accessible_name(link)
        if not name:
            problems.append(f"a link without an accessible name ({_snippet(href, 60)})")
            continue
        targets[name.casefold()].add(href)
        shown.setdefault(name.casefold(), name)
    for key, hrefs in sorted(targets.items()):
        if len(hrefs) > 1:
            problems.append(f"{len(hrefs)} links named {shown[key]!r} lead to different places")
    return problems


def _length(element: Element, name: str) -> str | None:
    """The element's `name` (width or height) in CSS pixels as digits, from the
    attribute or the inline style, else None."""
    value = element.attrs.get(name, "").strip()
    if value.isascii() and value.isdigit() and int(value) > 0:
        return value
    styled = element.style().get(name, "").strip().removesuffix("px")
    if styled.isascii() and styled.isdigit() and int(styled) > 0:
        return styled
    return None


def alt_problems(html: str) -> list[str]:
    """Every image (`<img>`, `<amp-img>`) has an `alt` attribute (empty only for
    decoration)."""
    return [
        f"an image without alt ({_snippet(img.attrs.get('src', ''), 60)})"
        for img in _images(parse(html))
        if "alt" not in img.attrs
    ]


def image_size_problems(html: str) -> list[str]:
    """Every image declares its width and height in pixels, so that with images off its
    placeholder keeps the layout."""
    problems = []
    for img in _images(parse(html)):
        missing = [n for n in ("width", "height") if _length(img, n) is None]
        if missing:
            src = _snippet(img.attrs.get("src", ""), 60)
            problems.append(f"an image without a pixel {' and '.join(missing)} ({src})")
    return problems


def placeholder_problems(html: str) -> list[str]:
    """Every image but a tracking pixel paints a background colour of its own, so that
    with images off its placeholder keeps the design's colour (and the alt text its
    contrast)."""
    problems = []
    for img in _images(parse(html)):
        if _length(img, "width") == "1" and _length(img, "height") == "1":
            continue
        if own_background(img) is None:
            src = _snippet(img.attrs.get("src", ""), 60)
            problems.append(f"an image placeholder without a background colour ({src})")
    return problems


def document_lang(html: str) -> tuple[str | None, str | None]:
    """`lang` and `dir` of the `<html>` element (None when absent)."""
    root = next(iter(parse(html).find_all("html")), None)
    if root is None:
        return None, None
    return root.attrs.get("lang"), root.attrs.get("dir")


def lang_problems(html: str) -> list[str]:
    """`<html lang>` names a language (BCP 47 shape); `dir`, if any, is ltr, rtl or auto."""
    lang, direction = document_lang(html)
    problems = []
    if not lang:
        problems.append("<html> has no lang")
    elif not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*", lang):
        problems.append(f"<html lang={lang!r}> is not a language tag")
    if direction is not None and direction.lower() not in ("ltr", "rtl", "auto"):
        problems.append(f"<html dir={direction!r}> is not ltr, rtl or auto")
    return problems


def isolation_problems(html: str, names: Iterable[str]) -> list[str]:
    """Each of `names` (a reader's text in another script) is isolated from the line
    around it: its text sits in a `<bdi>` or an element with its own `dir` that holds
    no Latin words of the line (a `dir` on the whole body does not isolate a name)."""
    problems = []
    wanted = [n for n in names if n]
    for element in parse(html).iter():
        if element.tag in ("title", "style", "head") or hidden(element):
            continue
        text = element.own_text()
        isolated = (element.tag == "bdi" or "dir" in element.attrs) and not re.search(
            "[A-Za-z]", text
        )
        for name in wanted:
            if name in text and not isolated:
                problems.append(
                    f"a name in another script is not isolated by <bdi> or dir ({text})"
                )
    return problems


def amp_problems(amp: str) -> list[str]:
    """An AMP for Email document whose `<style amp-custom>` responds to the viewport."""
    root = parse(amp)
    problems = []
    html = next(iter(root.find_all("html")), None)
    if html is None or not ({"⚡4email", "amp4email"} & set(html.attrs)):
        problems.append("not an AMP for Email document (<html ⚡4email>)")
    styles = [s for s in root.find_all("style") if "amp-custom" in s.attrs]
    if not styles:
        problems.append("no <style amp-custom>")
    elif not any("@media" in s.text() for s in styles):
        problems.append("<style amp-custom> has no @media rule (no layout for a 375 px screen)")
    return problems


def amp_list_problems(amp: str) -> list[str]:
    """No `<amp-list>` is held to a fixed height it cannot leave: a live list longer than
    the send-time one would be clipped. One may grow through an `overflow` child (a
    "see more" the reader taps), a bound `[height]`, or a layout that is not fixed."""
    problems = []
    for amp_list in parse(amp).find_all("amp-list"):
        fixed = amp_list.attrs.get("layout", "") in ("fixed", "fixed-height")
        grows = "[height]" in amp_list.attrs or any(
            "overflow" in child.attrs for child in amp_list.iter() if child is not amp_list
        )
        if fixed and not grows:
            feed = amp_list.attrs.get("src", "").split("?")[0].rsplit("/", 1)[-1]
            height = amp_list.attrs.get("height", "?")
            problems.append(f"an amp-list held to {height} px clips a longer live list ({feed})")
    return problems


def dark_mode_problems(html: str) -> list[str]:
    """The HTML part declares its colour schemes and styles a dark palette."""
    root = parse(html)
    metas = {
        m.attrs.get("name", "").lower(): m.attrs.get("content", "") for m in root.find_all("meta")
    }
    problems = [
        f'no <meta name="{name}" content="light dark">'
        for name in ("color-scheme", "supported-color-schemes")
        if "dark" not in metas.get(name, "")
    ]
    css = " ".join(s.text() for s in root.find_all("style"))
    if not re.search(r"prefers-color-scheme\s*:\s*dark", css):
        problems.append("no @media (prefers-color-scheme: dark) palette")
    return problems


def preheader_problems(html: str, preheader: str) -> list[str]:
    """The hidden preheader is followed by filler, so the inbox's preview line ends with
    it instead of running on into the email's first words."""
    if not preheader:
        return []
    for element in parse(html).iter():
        text = _raw_text(element)  # filler includes no-break spaces: keep them
        if hidden(element) and preheader in text:
            tail = text.split(preheader, 1)[1]
            if sum(ch in FILLER for ch in tail) < MIN_FILLER:
                return ["the preheader is not followed by filler (the preview runs on)"]
            return []
    return ["the preheader is not in the HTML as hidden text"]


def _raw_text(element: Element) -> str:
    return "".join(c if isinstance(c, str) else _raw_text(c) for c in element.children)


def countdown_alt_problems(html: str) -> list[str]:
    """A countdown image's alt text says when the offer ends (images off, screen readers)."""
    return [
        f"the countdown's alt {img.attrs.get('alt', '')!r} does not carry the deadline"
        for img in parse(html).find_all("img")
        if "/v1/img/countdown" in img.attrs.get("src", "")
        and not re.search(r"\d", img.attrs.get("alt", ""))
    ]


def markup_injection_problems(markup: str, payloads: Iterable[str]) -> list[str]:
    """No reader payload survives as markup: no event-handler attribute anywhere, no
    script but AMP's runtime, no payload text unescaped in the source."""
    problems = []
    root = parse(markup)
    for element in root.iter():
        handlers = sorted(a for a in element.attrs if a.startswith("on"))
        if handlers:
            problems.append(f"<{element.tag}> has event handler attributes {handlers}")
        if element.tag == "script":
            src = element.attrs.get("src", "")
            kind = element.attrs.get("type", "")
            if not (src.startswith(AMP_SCRIPT) or kind == "application/json"):
                problems.append(f"a <script> that is not AMP's: {_snippet(element.text())!r}")
    for payload in payloads:
        if payload in markup:
            problems.append(f"the payload {_snippet(payload)!r} appears unescaped")
    return problems


def evaluated_problems(text: str, forbidden: Iterable[str]) -> list[str]:
    """None of `forbidden` (what a template expression in reader data would evaluate to)
    appears: reader data is never run as a template."""
    return [f"{value!r} appears: reader data was evaluated" for value in forbidden if value in text]
