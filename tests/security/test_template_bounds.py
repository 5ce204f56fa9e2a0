"""A designer's template as an attacker would write it (an unsaved edit previewed, or a
saved file), through the real app: what one expression may build and what ranges one
render may iterate are bounded, and printing Python objects is refused when the file is
checked. Each answers quickly and small; ordinary uses still render.

Also what app/render/bounds.py bounds: texts grown by `~`, `+`, `%` and the filters and
methods that pad or repeat, the output of one render, and its time; a saved template
whose output depends on the reader fails that reader's batch line alone."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest
from support import AUTH, assert_error, serve

from app.app import create_app
from app.settings import PROJECT_ROOT

GREETING = "blocks/greeting/block.mjml"
ORIGINAL = (PROJECT_ROOT / GREETING).read_text(encoding="utf-8")


def edited(expression: str) -> dict[str, str]:
    assert "{{ params.message }}" in ORIGINAL
    return {GREETING: ORIGINAL.replace("{{ params.message }}", expression)}


async def preview(client, expression: str):
    body = {"template": "welcome", "sample": "full", "files": edited(expression)}
    started = time.monotonic()
    r = await client.post("/v1/preview", json=body, headers=AUTH)
    return r, time.monotonic() - started


ABUSE = {
    "a repeated string": "{{ 'B' * 20000000 }}",
    "a repeated list": "{{ ([1] * 10000000) | length }}",
    "repetition the other way": "{{ 20000000 * 'B' }}",
    "a huge power": "{{ 7 ** 10000000 }}",
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "ranges in a loop": (
        "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("expression", ABUSE.values(), ids=ABUSE.keys())
async def test_abuse_is_refused_fast_and_small(client, expression):
    r, took = await preview(client, expression)
    assert took < 5.0
    assert len(r.content) < 1_000_000
    if r.status_code == 200:  # the block fell back rather than render the abuse
        assert "BBBBBBBBBB" not in r.text
        assert any(f["block"] == "greeting" for f in r.json()["diagnostics"]["fallbacks"])
    else:
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "template_broken"


OBJECTS = [
    "{{ self }}",
    "{{ range }}",
    "{{ links }}",
    "{{ cycler }}",
    "{{ self.__class__ }}",
    # In a loop in a macro: printed through the output bound's own filter once compiled.
    "{% macro m() %}{% for x in [1] %}{{ range }}{% endfor %}{% endmacro %}{{ m() }}",
    "{% set s %}{% for x in [1] %}{{ links }}{% endfor %}{% endset %}{{ s }}",
]


@pytest.mark.parametrize("expression", OBJECTS)
async def test_printing_an_object_is_refused_with_file_and_line(client, expression):
    r, _ = await preview(client, expression)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["file"] == GREETING and error["line"] == 4
    assert "0x" not in r.text


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
        ("{{ 2 ** 10 }}", "1024"),
        ("{{ (['x'] * 4) | join }}", "xxxx"),
    ],
)
async def test_ordinary_uses_still_render(client, expression, shown):
    r, _ = await preview(client, expression)
    assert r.status_code == 200, r.text
    assert shown in r.json()["html"]


def test_the_shipped_block_is_what_this_edits():
    assert Path(PROJECT_ROOT / GREETING).is_file()


# --- texts grown in loops, padding, output, time (app/render/bounds.py) ------------------

NS = "{% set ns = namespace(s='x', l=[1]) %}"
GROWTH = {
    "a text doubled 40 times by ~": NS
    + "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "a text doubled 40 times by +": NS
    + "{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
    "a list doubled 40 times by +": NS
    + "{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}",
    "a macro doubling its argument": "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}"
    "{% else %}{{ s | length }}{% endif %}{% endmacro %}{{ f('x', 40) }}",
    "ljust": "{{ 'x'.ljust(100000000) | length }}",
    "zfill": "{{ '1'.zfill(100000000) | length }}",
    "center": "{{ 'x' | center(100000000) | length }}",
    "indent": "{{ ('a\\n' * 50000) | indent(1000) | length }}",
    "wordwrap": "{{ ('x' * 100000) | wordwrap(1, wrapstring='y' * 1000) | length }}",
    "replace": "{{ ('a' * 100000) | replace('a', 'b' * 1000) | length }}",
    "str.replace": "{{ ('a' * 100000).replace('a', 'b' * 1000) | length }}",
    "a long text repeated in a list": "{{ (['x' * 100000] * 20) | join | length }}",
    "join of a long list": "{{ ('x' * 100000) | list | join('y' * 100) | length }}",
    "format filter": "{{ '%0100000000d' | format(1) | length }}",
    "format width from an argument": "{{ '%*d' | format(100000000, 1) | length }}",
    "str.format": "{{ '{:>100000000}'.format(1) | length }}",
    "str.format width from an argument": "{{ '{:>{w}}'.format(1, w=100000000) | length }}",
    "str.format_map": "{{ '{x:>{w}}'.format_map({'x': 1, 'w': 100000000}) | length }}",
    "% built at render time": "{% set f = '%0' ~ '100000000d' %}{{ (f % 1) | length }}",
    "lipsum": "{{ lipsum(100000) | length }}",
    "sum of lists": "{{ ([[0] * 1000] * 1000) | sum(start=[]) | length }}",
}


@pytest.mark.parametrize("expression", GROWTH.values(), ids=GROWTH.keys())
async def test_growing_a_text_is_refused_with_the_file(client, expression):
    r, took = await preview(client, expression)
    assert took < 5.0 and len(r.content) < 100_000, (took, len(r.content))
    assert r.status_code == 422, r.text[:300]
    error = r.json()["error"]
    assert (error["code"], error["file"]) == ("template_broken", GREETING)
    assert "sandbox" in error["message"], error


async def test_a_wide_format_written_in_the_template_is_refused_when_checked(client):
    r, took = await preview(client, "{{ '%0100000000d' % 1 }}")
    assert took < 1.0
    error = r.json()["error"]
    assert (r.status_code, error["file"], error["line"]) == (422, GREETING, 4)
    assert "format" in error["message"]


BIG = "{% set big = 'x' * 100000 %}"
OUTPUT = {
    "a loop printing 10 MB": BIG + "{% for i in range(100) %}{{ big }}{% endfor %}",
    "nested loops printing 10 MB": BIG
    + "{% for i in range(10) %}{% for j in range(10) %}{{ big }}{% endfor %}{% endfor %}",
    "a block set to 10 MB": BIG
    + "{% set out %}{% for i in range(100) %}{{ big }}{% endfor %}{% endset %}{{ out | length }}",
    "a macro printing 10 MB": BIG
    + "{% macro f() %}{% for i in range(100) %}{{ big }}{% endfor %}{% endmacro %}"
    + "{{ f() | length }}",
    "recursion printing 6 MB": BIG
    + "{% macro f(n) %}{{ big }}{% if n %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "60 prints of 100 KB each, without a loop": BIG + "{{ big }}" * 60,
    "the same in the reader's own part": BIG + "{{ first_name }}" + "{{ big }}" * 60,
}


@pytest.mark.parametrize("expression", OUTPUT.values(), ids=OUTPUT.keys())
async def test_a_render_over_the_output_cap_is_refused(client, expression):
    r, took = await preview(client, expression)
    assert took < 5.0 and len(r.content) < 100_000
    error = r.json()["error"]
    assert (r.status_code, error["file"]) == (422, GREETING), r.text[:300]
    assert "5000000 characters" in error["message"]


GIGABYTE = {
    "in the template": BIG + "{% for i in range(10000) %}{{ big }}{% endfor %}",
    "in a macro": BIG + "{% macro f() %}{% for i in range(10000) %}{{ big }}{% endfor %}"
    "{% endmacro %}{{ f() | length }}",
    "in a block set": BIG + "{% set out %}{% for i in range(10000) %}{{ big }}{% endfor %}"
    "{% endset %}{{ out | length }}",
}


@pytest.mark.parametrize("expression", GIGABYTE.values(), ids=GIGABYTE.keys())
async def test_a_loop_printing_a_gigabyte_stops_in_bounded_memory(client, expression):
    tracemalloc.start()
    try:
        r, took = await preview(client, expression)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 422 and "5000000 characters" in r.text
    assert took < 5.0 and peak < 64_000_000, peak


async def test_output_just_under_the_cap_renders(client):
    r, _ = await preview(client, BIG + "{% for i in range(45) %}{{ big }}{% endfor %}")
    assert r.status_code == 200, r.text[:300]
    assert 4_500_000 < len(r.json()["html"]) < 5_000_000


SLOW = {
    "nested loops over texts": (
        "{% for a in 'x' * 30000 %}{% for b in 'x' * 30000 %}{% endfor %}{% endfor %}"
    ),
    "nested loops over lists": (
        "{% for a in [0] * 30000 %}{% for b in [0] * 30000 %}{% endfor %}{% endfor %}"
    ),
    "a loop over a long filtered sequence": (
        "{% for a in ('x' * 90000) | list | map('upper') %}"
        "{% for b in 'x' * 600 %}{{ '' }}{% endfor %}{% endfor %}"
    ),
    "a long loop with a costly body": (
        "{% set big = 'x' * 100000 %}{% for a in 'x' * 100000 %}"
        "{{ (big ~ big ~ big ~ big) | replace('x', 'yz') | length }}{% endfor %}"
    ),
    "exponential recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
}


@pytest.mark.parametrize("expression", SLOW.values(), ids=SLOW.keys())
async def test_a_long_render_is_stopped(client, expression):
    r, took = await preview(client, expression)
    # The render is stopped at 0.5 s (0.75 s of CPU at most), and again when the
    # studio renders the block alone to name it.
    assert took < 4.0, took
    error = r.json()["error"]
    assert (r.status_code, error["file"]) == (422, GREETING), r.text[:300]
    assert "at most 0.5 s" in error["message"]


@pytest.mark.parametrize(
    ("expression", "shown"),
    [
        (NS + "{% for i in range(3) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s }}", "x012"),
        ("{% for c in 'ab' * 40 %}{{ loop.length }}{% endfor %}", "8080"),
        ("{{ '%05d' % 42 }} {{ 7 % 3 }} {{ '%s-%s' | format('a', 'b') }}", "00042 1 a-b"),
        (
            "{{ 'x' | center(5) }}|{{ 'ab'.ljust(4) }}|{{ ['a', 'b'] | join(',') }}",
            "  x  |ab  |a,b",
        ),
        ("{{ [[1], [2]] | sum(start=[]) }}", "[1, 2]"),
    ],
)
async def test_ordinary_growth_still_renders(client, expression, shown):
    r, _ = await preview(client, expression)
    assert r.status_code == 200, r.text[:300]
    assert shown in r.json()["html"]


# --- a saved template whose output depends on the reader: that reader's line fails --------

ECHO = {
    "block.json": json.dumps({"description": "test probe: repeats the reader's text"}),
    "block.mjml": (
        "<mj-section><mj-column><mj-text>{% for i in range(attributes.times) %}"
        "{{ attributes.text }}{% endfor %}</mj-text></mj-column></mj-section>\n"
    ),
    "block.txt": "{{ attributes.text }}\n",
}


# Without a loop: 60 prints of about 100 KB, in the reader's own part and in the part
# shared by readers (each counted when its format is put together).
WIDE = {
    "wide": "{{ attributes.text * 6 }}" * 60,
    "shared": "{% set big = 'x' * 100000 %}" + "{{ big }}" * 60,
}


@pytest.fixture
async def echo_client(settings, sources_copy):
    blocks, templates = sources_copy()
    for block, mjml in {"echo": ECHO["block.mjml"], **WIDE}.items():
        (blocks / block).mkdir()
        for name, text in {**ECHO, "block.mjml": mjml}.items():
            (blocks / block / name).write_text(text)
        (templates / f"{block}_t").mkdir()
        template = {"subject": "Echo", "links": {"home": "https://shop.example.com/"}}
        template["blocks"] = ["header", block, "footer"]
        (templates / f"{block}_t" / "template.json").write_text(json.dumps(template))
    app = create_app(settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates))
    async with serve(app) as c:
        yield c


def reader(user: str, times: int) -> dict:
    attributes = {"text": "y" * 1000, "times": times}
    return {"template": "echo_t", "user_id": user, "profile": {"attributes": attributes}}


async def test_a_reader_whose_render_is_too_large_fails_its_line_alone(echo_client):
    lines = [reader("small", 3), reader("huge", 90_000), reader("after", 2)]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    started = time.monotonic()
    r = await echo_client.post(
        "/v1/render/batch",
        content=body,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert time.monotonic() - started < 5.0
    assert r.status_code == 200
    answers = [json.loads(line) for line in r.text.splitlines()]
    assert [a.get("user_id") for a in answers] == ["small", "huge", "after"]
    assert "y" * 3000 in answers[0]["html"] and "y" * 2000 in answers[2]["html"]
    assert answers[1]["error"]["code"] == "template_error"
    assert "5000000 characters" in answers[1]["error"]["message"]
    one = await echo_client.post("/v1/render", json=reader("huge", 90_000), headers=AUTH)
    assert_error(one, 422, "template_error")
    assert len(one.content) < 10_000


@pytest.mark.parametrize("template", ["wide_t", "shared_t"])
async def test_a_render_over_the_cap_without_loops_is_refused(echo_client, template):
    body = {**reader("ada", 1), "template": template}
    body["profile"]["attributes"]["text"] = "y" * 16_000
    r = await echo_client.post("/v1/render", json=body, headers=AUTH)
    assert_error(r, 422, "template_error")
    assert "5000000 characters" in r.text and len(r.content) < 10_000
