"""A designer's template as an attacker would write it (an unsaved edit previewed, or a
saved file), through the real app: what one expression may build and what ranges one
render may iterate are bounded, and printing Python objects is refused when the file is
checked. Each answers quickly and small; ordinary uses still render."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support import AUTH

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


OBJECTS = ["{{ self }}", "{{ range }}", "{{ links }}", "{{ cycler }}", "{{ self.__class__ }}"]


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
