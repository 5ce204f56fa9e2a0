"""What the layout relies on in Jinja's internals (app/render/layout/jinja_internals.py),
pinned one assumption a test: a Jinja upgrade that changes one fails here, naming it,
before any render comes out wrong."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from app.render.jinja import environment
from app.render.layout import jinja_internals as jinja


def env(*, html: bool = True, **filters: Any) -> SandboxedEnvironment:
    return environment(html=html, filters=filters)


def compiled(e: SandboxedEnvironment, text: str, escape: jinja.Escape = str) -> Any:
    return jinja.compile_tree(e, e.parse(text), escape)


def render(template: Any, ctx: dict[str, Any]) -> str:
    return jinja.render_function(template)(jinja.shared_context(template, ctx))


# --- compiled templates and their contexts -------------------------------------------


def test_a_compiled_template_escapes_through_the_escape_in_its_own_namespace():
    e = env()
    template = e.from_string("{{ x }}")
    assert "escape" in template.root_render_func.__globals__
    assert template.render(x="<b>") == "&lt;b&gt;"
    given: list[Any] = []

    def ours(value: Any) -> str:
        given.append(value)
        return value if isinstance(value, Markup) else f"[{value}]"

    shouted = compiled(e, "{{ x }}|{{ y | safe }}", ours)
    assert render(shouted, {**e.globals, "x": "<b>", "y": "<i>"}) == "[<b>]|<i>"
    assert given == ["<b>", Markup("<i>")]  # what is printed, marked safe or not


def test_each_compiled_template_has_a_namespace_of_its_own():
    e = env()
    compiled(e, "{{ x }}", lambda v: "patched")
    plain = compiled(e, "{{ x }}", lambda v: str(v).upper())
    assert render(plain, {**e.globals, "x": "a<"}) == "A<"
    assert e.from_string("{{ x }}").render(x="<") == "&lt;"  # the environment untouched


def test_a_shared_context_is_over_the_dict_itself_and_filters_see_it_as_parent():
    seen: list[Any] = []

    @pass_context
    def peek(context: Context, value: Any) -> str:
        seen.append(context.parent)
        return str(value)

    e = env(html=False, peek=peek)
    template = compiled(e, "{{ name | peek }}")
    ctx = {**e.globals, "name": "Ada"}
    context = jinja.shared_context(template, ctx)
    assert jinja.render_function(template)(context) == "Ada"
    assert seen[0] is ctx
    ctx["name"] = "Grace"  # not a copy: a change shows in the next render
    assert jinja.render_function(template)(context) == "Grace"


def test_a_context_is_reused_by_another_template_once_its_top_level_sets_are_cleared():
    e = env(html=False)
    setter = compiled(e, "{% set greeting = 'hi' %}{{ greeting }}")
    reader = compiled(e, "[{{ greeting }}]")
    context = jinja.shared_context(setter, dict(e.globals))
    assert jinja.render_function(setter)(context) == "hi"
    assert context.vars or context.exported_vars  # what it set at top level
    assert jinja.render_function(reader)(context) == "[]"  # forgotten, not leaked


def test_a_render_error_is_reraised_with_the_templates_line():
    e = env(html=False)
    template = compiled(e, "line one\n{{ 1 // zero }}")
    with pytest.raises(ZeroDivisionError) as caught:
        render(template, {**e.globals, "zero": 0})
    last = caught.traceback[-1]  # pytest counts lines from 0
    assert (str(last.path), last.lineno + 1) == ("<template>", 2)


def test_a_template_with_blocks_is_not_reusable():
    e = env(html=False)
    assert jinja.reusable(compiled(e, "{{ x }}"))
    assert not jinja.reusable(compiled(e, "{% block main %}{{ x }}{% endblock %}"))


# --- what a tree reads ---------------------------------------------------------------


def test_undeclared_variables_leave_out_globals_and_what_the_template_sets():
    e = env(html=False)
    tree = e.parse(
        "{% set y = 1 %}{% for i in range(3) %}{{ i }}{{ x }}{{ y }}{{ lipsum() }}{% endfor %}"
        "{{ items | map('click') | join }}{{ name | title }}"
    )
    found = jinja.reads(tree)
    assert found.context == {"x", "items", "name"}  # not range, lipsum, i, y
    assert {"range", "lipsum", "x"} <= found.names  # every name loaded
    assert {"map", "join", "title", "click"} <= found.filters  # by name or as a string


# --- folding params in ---------------------------------------------------------------


def folded(text: str, params: dict[str, Any], *, html: bool = True) -> tuple[Any, Any]:
    e = env(html=html)
    tree = e.parse(text)
    jinja.fold_params(tree, e, params, lambda v: str(Markup.escape(v)))
    return tree, jinja.compile_tree(e, tree, lambda v: str(Markup.escape(v)))


def test_params_fold_into_text_through_as_const_escaped_for_html():
    text = "<h1>{{ params.title }}</h1>{{ params['n'] + 1 }}"
    tree, template = folded(text, {"title": "<T>", "n": 1})
    assert not list(tree.find_all(nodes.Getattr)) and not list(tree.find_all(nodes.Getitem))
    data = [d.data for d in tree.find_all(nodes.TemplateData)]
    assert data == ["<h1>", "&lt;T&gt;", "</h1>", "2"]
    assert render(template, {}) == "<h1>&lt;T&gt;</h1>2"


def test_params_decide_an_if_once_and_leave_the_rest_to_render_time():
    text = "{% if params.intro %}I{% elif name %}N{% else %}E{% endif %}"
    assert render(folded(text, {"intro": True})[1], {}) == "I"
    _, template = folded(text, {"intro": False})
    assert render(template, {"name": "x"}) == "N"
    assert render(template, {}) == "E"


def test_a_template_setting_its_own_params_is_left_alone():
    _, template = folded("{% set params = {'t': 'mine'} %}{{ params.t }}", {"t": "theirs"})
    assert render(template, {}) == "mine"


def test_params_that_are_not_plain_values_are_read_at_render_time():
    _, template = folded("{{ params.items | length }}", {"items": [1, 2]})
    assert render(template, {"params": {"items": [1, 2, 3]}}) == "3"


# --- loop bodies ---------------------------------------------------------------------


def test_an_innermost_plain_loop_body_is_replaced_by_a_filter_call():
    calls: list[tuple[Any, int]] = []

    def card(item: Any, number: int) -> str:
        calls.append((item, number))
        return f"<{item}>"

    e = env(html=False, card=card)
    tree = e.parse(
        "{% for row in rows %}{% for p in row %}{{ p }}!{% endfor %}{% endfor %}"
        "{% for q in qs if q %}{{ q }}{% endfor %}{% for a, b in pairs %}{{ a }}{% endfor %}"
        "{% for z in zs %}{{ z }}{% else %}none{% endfor %}"
    )
    loops = list(jinja.loop_bodies(tree, e))
    assert [loop.item for loop in loops] == ["p"]  # not the outer, filtered, tuple, else
    assert render(compiled(e, "{% for p in ps %}{{ p }}!{% endfor %}"), {"ps": [1]}) == "1!"
    loops[0].call_instead(e, "card", 7)
    template = jinja.compile_tree(e, tree, str)
    out = render(template, {"rows": [[1, 2]], "qs": [], "pairs": [], "zs": []})
    assert out == "<1><2>none"
    assert calls == [(1, 7), (2, 7)]
