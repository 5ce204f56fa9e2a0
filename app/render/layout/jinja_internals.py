"""What the layout relies on in Jinja beyond its documented use, in one module: a Jinja
upgrade that changes one of these fails tests/test_render_jinja_internals.py, which
pins each, before it shows in a render.

- A compiled template runs in a module namespace of its own, `root_render_func.
  __globals__`, where its autoescape calls `escape`: the layout puts its own there.
- `new_context(ctx, shared=True)` is a context over `ctx` itself (not a copy), which
  filters see as `context.parent`; a context is reused for the next piece of the same
  environment once `vars` and `exported_vars` (what a piece set at top level) are
  cleared. `root_render_func(context)` yields the text; `handle_exception()` re-raises
  with the template's file and line in the traceback.
- `meta.find_undeclared_variables` names what a template reads of its context, globals
  left out; `{% block %}`s are looked up in a template's own context (`blocks`).
- The AST: a node's `as_const` evaluates what is constant (params once folded in), and
  nodes are rebuilt by their constructors (`Const`, `TemplateData`, `If`, `Filter`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from jinja2 import Template, meta, nodes
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from jinja2.visitor import NodeTransformer

from app.render import bounds

Tree = nodes.Template
Escape = Callable[[Any], str]
RenderIn = Callable[[Context], str]

_ABSENT = object()


# -- compiled templates and their contexts -------------------------------------------


def compile_tree(env: SandboxedEnvironment, tree: Tree, escape: Escape) -> Template:
    """`tree` compiled, its autoescape calling `escape` instead of markupsafe's; what it
    yields is joined within the bounds of app/render/bounds.py."""
    repeats = bounds.repeats(tree)
    template = env.from_string(tree)
    template.kairos_join = bounds.streamed if repeats else "".join  # type: ignore[attr-defined]
    # The compiled template's module namespace: its autoescape calls `escape` there.
    template.root_render_func.__globals__["escape"] = escape
    return template


def shared_context(template: Template, ctx: dict[str, Any]) -> Context:
    """A context over `ctx` itself (not a copy): a render is a dozen pieces."""
    return template.new_context(ctx, shared=True)


def render_function(template: Template) -> RenderIn:
    """What renders `template` in a context another template of its environment may have
    used before: what that one set at top level is forgotten first."""
    root, env = template.root_render_func, template.environment
    join = getattr(template, "kairos_join", "".join)

    def render_in(context: Context) -> str:
        context.vars.clear()
        context.exported_vars.clear()
        try:
            return join(root(context))
        except Exception:
            _reraise(env)

    return render_in


def reusable(template: Template) -> bool:
    """Whether it may render in a context made for another template: not when it has
    `{% block %}`s, which it looks up in its own context."""
    return not template.blocks


def _reraise(env: Any) -> NoReturn:
    env.handle_exception()  # re-raises with the template's line in the traceback
    raise AssertionError("unreachable")


# -- what a tree reads ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reads:
    """What a tree reads: of the render's context (`context`, globals left out), every
    name it loads (`names`, globals too), and the filters it may use (`filters`: by
    name, `x | click`, or as a string, `map('click')`)."""

    context: frozenset[str]
    names: frozenset[str]
    filters: frozenset[str]


def reads(tree: Tree) -> Reads:
    filters = {node.name for node in tree.find_all(nodes.Filter)}
    filters.update(c.value for c in tree.find_all(nodes.Const) if isinstance(c.value, str))
    return Reads(
        frozenset(meta.find_undeclared_variables(tree)),
        frozenset(node.name for node in tree.find_all(nodes.Name)),
        frozenset(filters),
    )


# -- folding params in ---------------------------------------------------------------


def fold_params(
    tree: Tree, env: SandboxedEnvironment, params: Mapping[str, Any], escape: Escape
) -> None:
    """Evaluate in `tree`, once, what it computes from `params` alone: `{{ params.title }}`
    becomes text (escaped by `escape` when the environment autoescapes), and an
    `{% if params.intro %}` keeps only the branch taken."""
    if any(n.name == "params" and n.ctx != "load" for n in tree.find_all(nodes.Name)):
        return  # the template sets its own `params`: leave it alone
    html = env.autoescape is True
    _ParamsFolder(params, nodes.EvalContext(env), escape if html else str).visit(tree)
    tree.set_environment(env)


class _ParamsFolder(NodeTransformer):
    def __init__(
        self, params: Mapping[str, Any], eval_ctx: nodes.EvalContext, text: Escape
    ) -> None:
        self.params, self.eval_ctx, self.text = params, eval_ctx, text

    def visit_Getattr(self, node: nodes.Getattr) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Getattr)
        return self._param(visited, visited.attr)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Getitem)
        key = visited.arg.value if isinstance(visited.arg, nodes.Const) else None
        return self._param(visited, key) if isinstance(key, str) else visited

    def _param(self, node: nodes.Getattr | nodes.Getitem, key: str) -> nodes.Node:
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "params"):
            return node
        value = self.params.get(key, _ABSENT)
        if value is None or type(value) in (str, int, float, bool):
            return nodes.Const(value, lineno=node.lineno)
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Output)
        printed: list[nodes.Expr] = []
        for child in visited.nodes:
            value = _ABSENT
            if not isinstance(child, nodes.TemplateData):
                with contextlib.suppress(Exception):  # not constant: printed at render time
                    value = child.as_const(self.eval_ctx)
            if value is not _ABSENT:
                child = nodes.TemplateData(self.text(value), lineno=child.lineno)
            printed.append(child)
        visited.nodes = printed
        return visited

    def visit_If(self, node: nodes.If) -> Any:
        """The `if` with the branches its params decide taken or dropped: the taken
        branch's body in its place, or the `if` with fewer branches."""
        branches = [(node.test, node.body), *[(e.test, e.body) for e in node.elif_]]
        kept: list[tuple[nodes.Expr, list[nodes.Node]]] = []
        otherwise = self._visit_all(node.else_)
        for test, body in branches:
            test = self.visit(test)
            body = self._visit_all(body)
            try:
                taken = bool(test.as_const(self.eval_ctx))
            except Exception:  # noqa: BLE001 - decided at render time
                kept.append((test, body))
                continue
            if taken:
                otherwise = body  # what comes after can never be reached
                break
        if not kept:
            return otherwise
        elifs = [nodes.If(t, b, [], [], lineno=node.lineno) for t, b in kept[1:]]
        return nodes.If(kept[0][0], kept[0][1], elifs, otherwise, lineno=node.lineno)

    def _visit_all(self, body: list[nodes.Node]) -> list[nodes.Node]:
        out: list[nodes.Node] = []
        for child in body:
            found = self.visit(child)
            out.extend(found if isinstance(found, list) else [found])
        return out


# -- loop bodies ---------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class LoopBody:
    """The body of a plain, innermost `{% for item in ... %}` loop of a tree."""

    item: str
    tree: Tree
    _loop: nodes.For

    def call_instead(self, env: SandboxedEnvironment, name: str, number: int) -> None:
        """Make the loop print `item | name(number)` instead of its body."""
        loop = self._loop
        item = nodes.Name(self.item, "load")
        call = nodes.Filter(item, name, [nodes.Const(number)], [], None, None)
        loop.body = [nodes.Output([call], lineno=loop.lineno)]
        loop.body[0].set_environment(env)


def loop_bodies(tree: Tree, env: SandboxedEnvironment) -> Iterator[LoopBody]:
    """The body of each innermost `for` loop of `tree` without `else`, test or recursion
    whose target is a single name (the outer loops' are looked at on their own)."""
    for loop in list(tree.find_all(nodes.For)):
        target = loop.target
        if loop.else_ or loop.test is not None or loop.recursive:
            continue
        if not isinstance(target, nodes.Name):
            continue
        if any(isinstance(n, nodes.For) or any(n.find_all(nodes.For)) for n in loop.body):
            continue
        body = nodes.Template(loop.body, lineno=loop.lineno)
        body.set_environment(env)
        yield LoopBody(target.name, body, loop)
