"""Just enough CSS to know an element's colours: style sheets as rules (plain, or inside
an `@media` block), `style` attributes as declarations, and selectors of the shapes the
Kairos themes use (tags, classes, attributes, descendant and child combinators) matched
against an element and its ancestors. Used by `kairos check` and the tests; not a CSS
engine (no specificity beyond counting, no pseudo-classes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

COMMENT = re.compile(r"/\*.*?\*/", re.S)
COMPOUND = re.compile(r"([a-zA-Z][\w-]*|\*)?((?:\.[\w-]+|\[[\w-]+(?:=[^\]]*)?\])*)$")


@dataclass(frozen=True)
class Element:
    """What a selector looks at: the tag, its classes and attribute names."""

    tag: str
    classes: frozenset[str] = frozenset()
    attributes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    selector: str
    declarations: tuple[tuple[str, str], ...]
    media: str = ""  # the @media condition it sits in, "" for none

    def get(self, name: str) -> str | None:
        for key, value in self.declarations:
            if key == name:
                return value
        return None


def declarations(text: str) -> tuple[tuple[str, str], ...]:
    """`color: #fff; background: red` as (name, value) pairs, names lower-cased."""
    found = []
    for item in text.split(";"):
        name, sep, value = item.partition(":")
        if sep and name.strip():
            found.append((name.strip().lower(), value.strip()))
    return tuple(found)


def parse_sheet(css: str) -> tuple[Rule, ...]:
    """The rules of a style sheet, in order; the rules of an `@media` block carry its
    condition. Unparseable parts are skipped."""
    css = COMMENT.sub(" ", css)
    rules: list[Rule] = []
    i = 0
    while i < len(css):
        brace = css.find("{", i)
        if brace < 0:
            break
        head = css[i:brace].strip()
        if head.startswith("@media"):
            depth, j = 1, brace + 1
            while j < len(css) and depth:
                depth += {"{": 1, "}": -1}.get(css[j], 0)
                j += 1
            media = head[len("@media") :].strip()
            rules.extend(
                Rule(r.selector, r.declarations, media) for r in parse_sheet(css[brace + 1 : j - 1])
            )
            i = j
            continue
        end = css.find("}", brace)
        if end < 0:
            break
        body = declarations(css[brace + 1 : end])
        for selector in head.split(","):
            if selector.strip() and not head.startswith("@"):
                rules.append(Rule(" ".join(selector.split()), body))
        i = end + 1
    return tuple(rules)


def _compound_matches(compound: str, element: Element) -> bool:
    found = COMPOUND.match(compound)
    if not found:
        return False
    tag, rest = found.group(1), found.group(2)
    if tag and tag != "*" and tag.lower() != element.tag:
        return False
    for part in re.findall(r"\.[\w-]+|\[[\w-]+", rest):
        if part.startswith(".") and part[1:] not in element.classes:
            return False
        if part.startswith("[") and part[1:] not in element.attributes:
            return False
    return True


def matches(selector: str, chain: Sequence[Element]) -> bool:
    """Whether `selector` selects the last element of `chain` (its ancestors before it)."""
    tokens = selector.replace(">", " > ").split()
    if not tokens or not chain:
        return False
    return _match_from(tokens, len(tokens) - 1, chain, len(chain) - 1)


def _match_from(tokens: list[str], t: int, chain: Sequence[Element], e: int) -> bool:
    if not _compound_matches(tokens[t], chain[e]):
        return False
    if t == 0:
        return True
    if tokens[t - 1] == ">":
        return t >= 2 and e >= 1 and _match_from(tokens, t - 2, chain, e - 1)
    return any(_match_from(tokens, t - 1, chain, k) for k in range(e - 1, -1, -1))
