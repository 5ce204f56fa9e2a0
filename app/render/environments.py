"""The two sandboxes designers' Jinja runs in (HTML and AMP; text, subject and
preheader), with Kairos's filters and the methods templates may call on `links`: built
once per template registry (`Environments.build()`), never shared through a module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from jinja2 import pass_context
from jinja2.filters import do_title
from jinja2.sandbox import SandboxedEnvironment

from app.links import Links
from app.reader import money
from app.render.fill_links import FillLinks
from app.render.jinja import Methods, environment
from app.render.layout import SHARED_BODY_FILTER, shared_body


@pass_context
def _click(context: Any, url: Any) -> str:
    # The render's own `links` (a template's `{% set links %}` cannot redirect clicks).
    links: Links = context.parent["links"]
    return links.click(url if type(url) is str else str(url))


def _money(amount: Any, currency: str | None = None) -> str:
    return money(float(amount), currency) if amount is not None else ""


def _number(value: Any, decimals: int = 0) -> str:
    """A number with thousands separators (`12345 | number` is "12,345"); "" for what is
    not a number."""
    if isinstance(value, int) and not decimals:
        return f"{value:,}"
    try:
        return f"{float(value):,.{int(decimals)}f}"
    except (TypeError, ValueError):
        return ""


def _title(value: Any) -> str:
    """Jinja's `title`, with a fast path for one word (a tier, a first name): the same
    result without its regular expression."""
    if type(value) is str and value.isalnum():
        return value[0].upper() + value[1:].lower()
    return do_title(value)


# Pure functions, so the sandboxes of every registry may hold the same ones.
FILTERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "click": _click,
        "money": _money,
        "number": _number,
        "title": _title,
        SHARED_BODY_FILTER: shared_body,
    }
)
# What templates call on `links` (`{{ links.feed('cart') }}`, `links.image(...)`,
# `links.unsubscribe()`).
LINK_METHODS = frozenset({"feed", "image", "pixel", "click", "product_click", "unsubscribe"})
METHODS: Methods = MappingProxyType({Links: LINK_METHODS, FillLinks: LINK_METHODS})


@dataclass(frozen=True)
class Environments:
    html: SandboxedEnvironment
    text: SandboxedEnvironment

    @classmethod
    def build(
        cls, filters: Mapping[str, Callable[..., Any]] = FILTERS, methods: Methods = METHODS
    ) -> Environments:
        return cls(
            environment(html=True, filters=filters, methods=methods),
            environment(html=False, filters=filters, methods=methods),
        )

    @property
    def globals(self) -> Mapping[str, Any]:
        """What every render's context starts from (`range`, `dict`, `namespace`...)."""
        return MappingProxyType(self.html.globals)
