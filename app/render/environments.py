"""The sandboxes designers' Jinja runs in (HTML; text, subject and preheader; AMP),
with Kairos's filters and the methods templates may call on `links`: built
once per template registry (`Environments.build()`), never shared through a module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from jinja2 import pass_context, pass_eval_context
from jinja2.filters import do_title
from jinja2.nodes import EvalContext
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from app.links import Links
from app.reader.formats import Formats
from app.render.fill_links import FillLinks
from app.render.jinja import Methods, environment
from app.render.layout import SHARED_BODY_FILTER, shared_body
from app.render.layout.output import html_escape, markup


@pass_context
def _click(context: Any, url: Any) -> str:
    # The render's own `links` (a template's `{% set links %}` cannot redirect clicks).
    links: Links = context.parent["links"]
    return links.click(url if type(url) is str else str(url))


# The filters below format in the template's language: its `Formats`, built when it
# was compiled, is the render's `_formats` (the same for every reader of the template).


@pass_context
def _money(context: Any, amount: Any, currency: str | None = None) -> str:
    """`12.5 | money("EUR")`: "€12.50" in English, "12,50 €" in German; "" for None."""
    if amount is None:
        return ""
    formats: Formats = context.parent["_formats"]
    return formats.money(float(amount), currency)


@pass_context
def _number(context: Any, value: Any, decimals: int = 0) -> str:
    """A number with the language's separators (`12345 | number` is "12,345" in English,
    "12.345" in German); "" for what is not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return ""
    try:
        number = float(value) if not isinstance(value, int) else value
        places = int(decimals)
    except (TypeError, ValueError):
        return ""
    formats: Formats = context.parent["_formats"]
    return formats.number(number, places)


@pass_context
def _datetime(context: Any, value: Any) -> str:
    """An ISO 8601 time (`"2026-12-24T23:59:59Z"`, UTC when it names no offset) in the
    template's language and the reader's time zone (profile `timezone`, else UTC):
    "24 December 2026, 23:59 GMT"; "" for what is not a time."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    formats: Formats = context.parent["_formats"]
    return formats.datetime(moment, context.parent["timezone"])


def _isolator(start: str, end: str) -> Callable[[EvalContext, Any], str]:
    @pass_eval_context
    def isolate(eval_ctx: EvalContext, value: Any) -> str:
        """Reader text set apart from the copy around it (`{{ first_name | isolate }}`),
        so a name in another script (Arabic in an English line) does not reorder the
        line around it: in HTML inside `<bdi>`, in AMP (whose allow-list has no `bdi`)
        inside `<span dir="auto">`; in text, unchanged."""
        if value is None or value == "":
            return ""
        if not eval_ctx.autoescape:
            return str(value)
        if type(value) is not Markup:
            value = html_escape(str(value))
        return markup(f"{start}{value}{end}")

    return isolate


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
        "datetime": _datetime,
        "isolate": _isolator("<bdi>", "</bdi>"),
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
# What the AMP part's filters do differently: AMP4EMAIL allows fewer elements.
AMP_FILTERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {"isolate": _isolator('<span dir="auto">', "</span>")}
)


@dataclass(frozen=True)
class Environments:
    """The sandboxes of the HTML part, of the text parts (subject, preheader, text), and
    of the AMP part (the HTML one's filters, but `AMP_FILTERS`)."""

    html: SandboxedEnvironment
    text: SandboxedEnvironment
    amp: SandboxedEnvironment

    @classmethod
    def build(
        cls, filters: Mapping[str, Callable[..., Any]] = FILTERS, methods: Methods = METHODS
    ) -> Environments:
        return cls(
            environment(html=True, filters=filters, methods=methods),
            environment(html=False, filters=filters, methods=methods),
            environment(html=True, filters={**filters, **AMP_FILTERS}, methods=methods),
        )

    @property
    def globals(self) -> Mapping[str, Any]:
        """What every render's context starts from (`range`, `dict`, `namespace`...)."""
        return MappingProxyType(self.html.globals)
