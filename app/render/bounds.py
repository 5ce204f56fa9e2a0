"""What one render of a designer's template may cost, beyond which it is refused with
a `SecurityError` (the renderer answers it as that render's template error: a 422, or
the error line of that reader in a batch).

- A text built by `~`, `+` or `%` is at most `MAX_TEXT` characters (`%` checked before
  it is built): a loop doubling a string 40 times stops at the first text over the
  limit. The filters and methods that pad or repeat text are app/render/growth.py's.
- One format of one render (HTML, AMP, text) is at most `MAX_OUTPUT` characters: what
  a template with loops yields is counted as it is yielded, what loops print into a
  buffer (a macro's, a `{% set %}` block's) as they print it (for the whole render),
  a buffer before it is joined, and the whole format once rendered.
- Loops and calls (macros, recursion) stop once the render has run `MAX_RENDER_S`
  and then half as much again of its own CPU time (`expired`).

The checks are put into a template's code when it is compiled (`instrument`): a
template without loops or joins runs as Jinja compiled it; a loop over at most
`SMALL_LOOP` items of a list, tuple, dict, text or range costs one check.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from types import MappingProxyType
from typing import Any

from jinja2 import (
    TemplateSyntaxError,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_TEXT = 1_000_000
MAX_OUTPUT = 5_000_000
MAX_RENDER_S = 0.5
MAX_ITEMS = 100_000
SMALL_LOOP = 64
CHUNK = 32
SIZED = frozenset({list, tuple, dict, str, range})
# Where a render keeps its clock (`started`) and what its loops printed into buffers:
# the render's context (`Context.parent`).
DEADLINE, PRINTED_KEY = "_deadline", "_printed"
# A width or precision of a million or more in a format (`%09999999d`, `{:>9999999}`).
WIDE_FORMAT = re.compile(r"%[-#0 +]*(\d{7,}|\*|\d*\.(\d{7,}|\*))|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")
_now = time.monotonic


def started() -> list[float]:
    """A render's clock: its deadline on the wall clock (cheap to read), then, once
    that has passed, on the thread's CPU clock (`expired`)."""
    return [_now() + MAX_RENDER_S, 0.0]


def expired(clock: list[float]) -> bool:
    """Whether the render of `clock` is past its time: `MAX_RENDER_S` on the wall clock,
    and then half as much again of its own CPU time. A process preempted meanwhile (a
    busy machine) is not refused for time that other work ran."""
    now = _now()
    if now <= clock[0]:
        return False
    cpu = time.thread_time()
    if not clock[1]:  # first past the wall deadline: the CPU grace starts
        clock[1] = cpu + MAX_RENDER_S / 2
    elif cpu >= clock[1]:
        return True
    clock[0] = now + (clock[1] - cpu)
    return False


def clock_of(context: Context) -> list[float]:
    parent = context.parent
    clock = parent.get(DEADLINE)
    if clock is None:  # a render of a template alone (the studio's diagnostics)
        clock = parent[DEADLINE] = started()
    return clock


def tick(context: Context) -> None:
    """A call: refused once the render is past its time."""
    clock = clock_of(context)
    if _now() > clock[0] and expired(clock):
        raise out_of_time()


def out_of_time() -> SecurityError:
    return SecurityError(f"a render may run at most {MAX_RENDER_S} s")


@pass_context
def looped(context: Context, iterable: Any) -> Any:
    """A loop's items: checked against the render's time once for a small sized
    iterable, else at every item."""
    clock = clock_of(context)
    if _now() > clock[0] and expired(clock):
        raise out_of_time()
    if type(iterable) in SIZED and len(iterable) <= SMALL_LOOP:
        return iterable
    return _Ticking(clock, iterable)


class _Ticking:
    """Items checked against the render's time one by one; sized like what they come
    from (`loop.length` reads it)."""

    __slots__ = ("_clock", "_items")

    def __init__(self, clock: list[float], items: Any) -> None:
        self._clock, self._items = clock, items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        clock = self._clock
        for item in self._items:
            if _now() > clock[0] and expired(clock):
                raise out_of_time()
            yield item


def mod(left: Any, right: Any) -> Any:
    """`left % right`, a text formatted only within `MAX_TEXT`."""
    if type(left) is not int and isinstance(left, str):
        check_format(left, right if type(right) is tuple else (right,))
    return left % right


def joined(value: Any) -> Any:
    """What a `~` or `+` built, if within bounds."""
    kind = type(value)
    if kind is str or kind is Markup:
        if len(value) > MAX_TEXT:
            raise too_long()
    elif (kind is list or kind is tuple) and len(value) > MAX_ITEMS:
        raise SecurityError(f"a list over {MAX_ITEMS} items")
    return value


def too_long() -> SecurityError:
    return SecurityError(f"a text over {MAX_TEXT} characters")


def check_text(size: int) -> None:
    if size > MAX_TEXT:
        raise too_long()


def check_format(text: Any, args: Iterable[Any] = ()) -> None:
    """Refuse formatting that would pad to a million characters or more."""
    if isinstance(text, str) and WIDE_FORMAT.search(text):
        raise too_long()
    for arg in args:
        if type(arg) is int and arg > MAX_TEXT:
            raise too_long()


def repeated_size(seq: Any, times: int) -> None:
    """Refuse `seq * times` when it would hold over `MAX_ITEMS` items or, for a list of
    texts, over `MAX_TEXT` characters (a list of one long text repeated, then joined)."""
    if len(seq) * times > MAX_ITEMS:
        raise SecurityError(f"a repeated text or list over {MAX_ITEMS} items")
    if type(seq) is not str:
        chars = sum(len(item) for item in seq if isinstance(item, str))
        check_text(chars * times)


def concat(pieces: Iterable[str]) -> str:
    """Jinja's join of a buffer's pieces (a list: a macro's, a `{% set %}` block's) or of
    what a template yields, refused over `MAX_OUTPUT` before the joined text is built
    (the pieces may be one text many times)."""
    if type(pieces) is not list:
        return streamed(pieces)
    if sum(map(len, pieces)) > MAX_OUTPUT:
        raise too_much_output()
    return "".join(pieces)


@pass_context
def printed(context: Context, value: Any) -> Any:
    """What a loop prints into a buffer, counted for the whole render: a buffer is
    joined only at its end, and a loop may print a new large text at every item."""
    parent = context.parent
    size = parent.get(PRINTED_KEY, 0) + (len(value) if isinstance(value, str) else 0)
    if size > MAX_OUTPUT:
        raise too_much_output()
    parent[PRINTED_KEY] = size
    return value


def streamed(pieces: Iterable[str]) -> str:
    """What a template with loops yields, joined: refused once over `MAX_OUTPUT`, read
    `CHUNK` pieces at a time (a loop may yield a new large text at every item)."""
    items = iter(pieces)
    parts = list(islice(items, CHUNK))
    size = sum(map(len, parts))
    while True:
        if size > MAX_OUTPUT:
            raise too_much_output()
        if len(parts) % CHUNK:
            return "".join(parts)
        more = list(islice(items, CHUNK))
        if not more:
            return "".join(parts)
        size += sum(map(len, more))
        parts += more


def too_much_output() -> SecurityError:
    return SecurityError(f"one format of a render may be at most {MAX_OUTPUT} characters")


# --- the code of a template ----------------------------------------------------------


# Filters of Kairos's own (a designer's template cannot name a filter starting with "_"),
# which `instrument` calls in a template's code.
LOOPED, JOINED, MOD, PRINTED = "_kairos_looped", "_kairos_joined", "_kairos_mod", "_kairos_printed"
REPEATS = (nodes.For, nodes.Macro, nodes.CallBlock)
BUFFERED = (nodes.Macro, nodes.CallBlock, nodes.AssignBlock, nodes.FilterBlock)


def instrument(tree: nodes.Template, eval_ctx: nodes.EvalContext) -> None:
    """Put the checks into `tree`, in place (once: again changes nothing): every loop's
    items passed through `looped`, every `~` and `+` that is not a constant through
    `joined`, every `%` through `mod`. Jinja allows no node types of our own: these are
    filters. A format written in the template too wide is refused here (SecurityError)."""
    for loop in tree.find_all(nodes.For):
        if not _is(loop.iter, LOOPED):
            loop.iter = nodes.Filter(loop.iter, LOOPED, [], [], None, None, lineno=loop.lineno)
    for buffer in tree.find_all(BUFFERED):
        for loop in buffer.find_all(nodes.For):
            for output in loop.find_all(nodes.Output):
                output.nodes = [_printed(node) for node in output.nodes]
    _Joins(eval_ctx).visit(tree)
    tree.set_environment(eval_ctx.environment)


def repeats(tree: nodes.Template) -> bool:
    """Whether `tree` has loops or macros: what it yields is then `streamed`."""
    return any(True for _ in tree.find_all(REPEATS))


def _printed(node: nodes.Expr) -> nodes.Expr:
    if isinstance(node, nodes.TemplateData) or _is(node, PRINTED):
        return node
    return nodes.Filter(node, PRINTED, [], [], None, None, lineno=node.lineno)


def _is(node: nodes.Node, name: str) -> bool:
    return isinstance(node, nodes.Filter) and node.name == name


class _Joins(NodeTransformer):
    def __init__(self, eval_ctx: nodes.EvalContext) -> None:
        self.eval_ctx = eval_ctx

    def visit_Filter(self, node: nodes.Filter) -> nodes.Node:
        if node.name == JOINED:
            return node  # checked already
        return self.generic_visit(node)

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        return self._wrap(node)

    def visit_Add(self, node: nodes.Add) -> nodes.Node:
        return self._wrap(node)

    def visit_Mod(self, node: nodes.Mod) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Mod)
        left = visited.left
        if isinstance(left, nodes.Const):
            if isinstance(left.value, str) and WIDE_FORMAT.search(left.value):
                # A format written in the template: refused when it is checked.
                raise TemplateSyntaxError(
                    f"sandbox: a format padding to over {MAX_TEXT} characters", node.lineno
                )
            else:
                return visited
        # `x % y` as `x | _kairos_mod(y)`: a text formatted is checked before it is built.
        return nodes.Filter(left, MOD, [visited.right], [], None, None, lineno=node.lineno)

    def _wrap(self, node: nodes.Expr) -> nodes.Node:
        visited = self.generic_visit(node)
        try:
            node.as_const(self.eval_ctx)
        except nodes.Impossible:
            return nodes.Filter(visited, JOINED, [], [], None, None, lineno=node.lineno)
        return visited  # folded when compiled: bounded by the template's own text


# What `instrument` calls, as filters of every sandbox.
FILTERS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {LOOPED: looped, JOINED: joined, MOD: mod, PRINTED: printed}
)
