"""Jinja's filters, methods and globals that build text of a size their arguments
choose (`center`, `indent`, `wordwrap`, `format`, `replace`, `join`, `sum`; `ljust`,
`zfill`, `expandtabs`...; `lipsum`), checked before they build it: at most
`bounds.MAX_TEXT` characters, `bounds.MAX_ITEMS` items (app/render/bounds.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import BuiltinMethodType, MappingProxyType
from typing import Any

from jinja2 import filters, pass_environment, pass_eval_context
from jinja2.exceptions import SecurityError
from jinja2.utils import generate_lorem_ipsum

from app.render.bounds import MAX_ITEMS, check_format, check_text


def _center(value: Any, width: int = 80) -> str:
    check_format("", (width,))
    return filters.do_center(value, width)


def _indent(s: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = width if isinstance(width, int) else len(str(width))
    check_text(len(text) + (text.count("\n") + 1) * pad)
    return filters.do_indent(s, width, first, blank)


@pass_eval_context
def _wordwrap(eval_ctx: Any, s: str, width: int = 79, *args: Any, **kwargs: Any) -> str:
    text = str(s)
    wrap = kwargs.get("wrapstring", args[1] if len(args) > 1 else None) or "\n"
    check_text(len(text) + (len(text) // max(int(width), 1) + 1) * len(str(wrap)))
    return filters.do_wordwrap(eval_ctx, s, width, *args, **kwargs)


def _format(value: str, *args: Any, **kwargs: Any) -> str:
    check_format(value, (*args, *kwargs.values()))
    return filters.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    replaced_size(str(s), str(old), str(new), count)
    return filters.do_replace(eval_ctx, s, old, new, count)


def replaced_size(text: str, old: str, new: str, count: int | None = None) -> None:
    found = text.count(old) if count is None or count < 0 else min(count, text.count(old))
    check_text(len(text) + found * (len(new) - len(old)))


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    joined_size(items, d)
    return filters.sync_do_join(eval_ctx, items, d, attribute)


def joined_size(items: list[Any], separator: Any) -> None:
    if len(items) > MAX_ITEMS:
        raise SecurityError(f"a list over {MAX_ITEMS} items")
    size = len(str(separator)) * max(len(items) - 1, 0)
    for item in items:
        size += len(item) if isinstance(item, str) else len(str(item))
        check_text(size)


@pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    items = list(iterable)
    if not isinstance(start, int | float):  # lists or texts added up: the total bounded
        size = len(start) if hasattr(start, "__len__") else 0
        size += sum(len(item) for item in items if hasattr(item, "__len__"))
        if size > MAX_ITEMS:
            raise SecurityError(f"a sum of lists over {MAX_ITEMS} items")
    return filters.sync_do_sum(environment, items, attribute, start)


# Jinja's filters that build text of a size their arguments choose, checked first.
FILTERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "center": _center,
        "indent": _indent,
        "wordwrap": _wordwrap,
        "format": _format,
        "replace": _replace,
        "join": _join,
        "sum": _sum,
    }
)


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's `lipsum`, at most 100 paragraphs of at most 1,000 words."""
    if n > 100 or min > 1000 or max > 1000:
        raise SecurityError("lipsum: at most 100 paragraphs of 1,000 words")
    return str(generate_lorem_ipsum(n, html, min, max))


def checked_call(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """`args` of a call, once checked: a text method that would build a text over
    `MAX_TEXT` characters is refused (a `join`'s items are read once, into a list)."""
    if type(method) is not BuiltinMethodType or not isinstance(method.__self__, str):
        return args
    text, name = method.__self__, method.__name__
    values = (*args, *kwargs.values())
    if name in ("center", "ljust", "rjust", "zfill"):
        check_format("", values[:1])
    elif name == "expandtabs":
        size = values[0] if values else 8
        check_text(len(text) + text.count("\t") * (size if type(size) is int else 8))
    elif name == "replace" and len(values) >= 2:
        count = values[2] if len(values) > 2 else None
        replaced_size(text, str(values[0]), str(values[1]), count)
    elif name == "join" and args:
        items = list(args[0])
        joined_size(items, text)
        return (items, *args[1:])
    return args  # `format` is checked where the sandbox wraps it (`Sandbox.wrap_str_format`)
