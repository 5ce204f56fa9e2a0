"""Jinja for designers' templates: sandboxed, autoescaped, checked before it runs.

MJML must compile markup that still holds Jinja, so the Jinja is swapped for inert
placeholders before the MJML compiler runs and swapped back after it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from types import MethodType
from typing import Any

from jinja2 import TemplateSyntaxError, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from app.reader import DisplayItem
from app.render import bounds, growth, memo
from app.render.sources import Part, SourceError

JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
PLACEHOLDER = re.compile(r"<!--kjs(\d+)x-->|kjx(\d+)x")
_ABSENT = object()


# What a template may call on Kairos's own objects: {class: method names}.
Methods = Mapping[type, frozenset[str]]


# What one template may build in one render, beyond which it is refused (SecurityError,
# which the renderer answers as a template error): a string or list made by `*`, an
# exponent, and the items of all the ranges it iterates; texts, output and time in
# app/render/bounds.py.
MAX_EXPONENT = 100
MAX_RANGED = 100_000
SEQUENCES = (str, list, tuple)


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, with fast paths for what templates use most: keys of plain dicts
    (reader data, params), whose items are data, never Python internals; and the methods
    of Kairos's own objects listed in `methods` (`links.feed(...)`), which are safe by
    construction. Everything else goes through the sandbox's checks, which cost more
    than the call itself. Immutable: a template cannot change a list or dict (catalog
    products are shared by readers)."""

    # Not `+` or `%`: intercepted, they would no longer fold with constant params at
    # compile time (the layout's folding); app/render/bounds.py checks them instead.
    intercepted_binops = frozenset({"*", "**"})
    # How compiled templates join their buffers (macros, `{% set %}` blocks) and what
    # `Template.render` yields: bounded.
    concat = staticmethod(bounds.concat)

    def __init__(self, methods: Methods, **options: Any) -> None:
        super().__init__(**options)
        self.methods = dict(methods)  # its own: looked up at every attribute
        self.globals["range"] = _budgeted_range
        self.globals["lipsum"] = growth.lipsum

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        bounds.instrument(source, nodes.EvalContext(self))
        return super()._generate(source, name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """`*` and `**` with what they may build bounded (`bounds.MAX_ITEMS` items and
        `bounds.MAX_TEXT` characters, `MAX_EXPONENT`): `'B' * 20000000` rendered 20 MB."""
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, SEQUENCES) and isinstance(times, int):
                    bounds.repeated_size(seq, times)
        elif isinstance(right, int | float) and abs(right) > MAX_EXPONENT:  # `**`
            raise SecurityError(f"an exponent over {MAX_EXPONENT}")
        return self.binop_table[operator](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`text.format` and `format_map` as the sandbox wraps them, refused when they
        would pad to over `bounds.MAX_TEXT` characters."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            values = [*args, *kwargs.values()]
            if args and isinstance(args[0], dict):  # format_map's mapping
                values += args[0].values()
            bounds.check_format(text, values)
            return wrapped(*args, **kwargs)

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        kind = type(obj)
        if kind is dict or kind is DisplayItem:
            value = obj.get(attribute, _ABSENT)
            if value is not _ABSENT:
                return value
        else:
            allowed = self.methods.get(kind)
            if allowed is not None and attribute in allowed:
                return getattr(obj, attribute)
        return super().getattr(obj, attribute)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        if type(obj) is MethodType:
            allowed = self.methods.get(type(obj.__self__))
            if allowed is not None and obj.__name__ in allowed:
                # What Jinja passes every call in a loop or block: for context functions.
                kwargs.pop("_loop_vars", None)
                kwargs.pop("_block_vars", None)
                return obj(*args, **kwargs)
        # Macros and recursion come here: the render's time is checked at each call.
        bounds.tick(context)
        args = growth.checked_call(obj, args, kwargs)
        return super().call(context, obj, *args, **kwargs)


@pass_context
def _budgeted_range(context: Context, *args: int) -> range:
    """`range`, its items counted against the render's `MAX_RANGED` (nested ranges
    multiply: a loop of ranges of 100,000 ran for seconds)."""
    found = range(*args)
    eval_ctx = context.eval_ctx
    ranged = getattr(eval_ctx, "kairos_ranged", 0) + len(found)
    if ranged > MAX_RANGED:
        raise SecurityError(f"ranges of over {MAX_RANGED} items in one render")
    eval_ctx.kairos_ranged = ranged  # type: ignore[attr-defined]
    return found


def environment(
    *, html: bool, filters: Mapping[str, Callable[..., Any]], methods: Methods | None = None
) -> SandboxedEnvironment:
    """The sandbox designers' Jinja runs in: no access to Python internals, reader data
    escaped for HTML (`html=True`) or left as text (subject, preheader, text part)."""
    env = Sandbox(
        methods or {},
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(growth.FILTERS)
    env.filters.update(bounds.FILTERS)
    env.filters.update(filters)
    return env


def protect(source: str, tags: list[str]) -> str:
    """`source` with each Jinja tag replaced by a placeholder; the tags are appended to
    `tags` (a placeholder's number is its index there).

    Expressions become the word `kjxNx`. Statements become the comment `<!--kjsNx-->`,
    because a comment keeps its place where an HTML parser moves text (between table
    rows); inside a markup tag (an attribute value) they stay words.
    """
    if PLACEHOLDER.search(source):
        raise ValueError("the text already holds a Kairos placeholder (kjxNx)")

    def swap(match: re.Match[str]) -> str:
        tag = match.group(0)
        tags.append(tag)
        index = len(tags) - 1
        start = match.start()
        in_markup = source.rfind("<", 0, start) > source.rfind(">", 0, start)
        if tag.startswith("{{") or in_markup:
            return f"kjx{index}x"
        return f"<!--kjs{index}x-->"

    return JINJA.sub(swap, source)


def restore(compiled: str, tags: list[str]) -> tuple[str, set[int]]:
    """Put the Jinja tags back; returns the text and the indexes of tags found."""
    seen: set[int] = set()

    def swap(match: re.Match[str]) -> str:
        index = int(match.group(1) or match.group(2))
        seen.add(index)
        return tags[index]

    return PLACEHOLDER.sub(swap, compiled), seen


def check_part(env: SandboxedEnvironment, part: Part) -> None:
    """Parse one designer's file: syntax errors and attempts to reach Python internals
    (any `_name` attribute, which the sandbox refuses at render time anyway) are reported
    as `file:line: message` before anything is compiled. Within a compile that reuses
    (`app/render/memo.py`), a text checked by the last compile of the template is not
    checked again."""
    found_memo = memo.current()
    key = ("checked", id(env), str(part.path), part.text)
    if found_memo is not None and found_memo.get(key):
        return
    _check(env, part)
    if found_memo is not None:
        found_memo.put(key, True)


def _check(env: SandboxedEnvironment, part: Part) -> None:
    try:
        tree = env.parse(part.text)
        # Read before compiling, which wraps outputs in filters of Kairos's own
        # (app/render/bounds.py), in place.
        own = [used for used in tree.find_all(nodes.Filter) if used.name.startswith("_")]
        # Printed as they are, these show Python objects and their addresses, not data.
        objects = {"self", "links", *env.globals}
        printed = [
            shown
            for output in tree.find_all(nodes.Output)
            for shown in output.nodes
            if isinstance(shown, nodes.Name) and shown.name in objects
        ]
        env.compile(tree)  # unknown filters and tests surface here, with their line
    except TemplateSyntaxError as exc:
        raise SourceError(part.path, f"template syntax error: {exc.message}", exc.lineno) from None
    if own:
        raise SourceError(
            part.path, f"filter {own[0].name!r} is Kairos's own, not for templates", own[0].lineno
        )
    if printed:
        raise SourceError(
            part.path,
            f"sandbox: {{{{ {printed[0].name} }}}} prints an object, not a value",
            printed[0].lineno,
        )
    for used_name in tree.find_all(nodes.Name):
        if used_name.name == "self":
            raise SourceError(part.path, "sandbox: `self` is not for templates", used_name.lineno)
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else _const(getattr(node, "arg", None))
        if isinstance(name, str) and name.startswith("_"):
            raise SourceError(
                part.path,
                f"sandbox: access to {name!r} is not allowed in templates",
                node.lineno,
            )


def _const(node: nodes.Node | None) -> Any:
    return node.value if isinstance(node, nodes.Const) else None
