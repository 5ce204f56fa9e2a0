"""Hostile reader data through the real app: attributes nested past any sensible depth are
refused with a 422 naming the field on every route that takes a profile, and one such line
in a render batch is answered in its place while the others render."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from support import AUTH

NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
JSON = {**AUTH, "Content-Type": "application/json"}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def profile(depth: int) -> bytes:
    """A profile whose attributes nest `depth` objects deep, as JSON text (the client's
    own encoder may refuse to write it)."""
    deep = '{"a":' * (depth - 2) + '{"leaf":1}' + "}" * (depth - 2)
    return b'{"first_name":"Ada","attributes":{"deep":%s}}' % deep.encode()


@pytest.mark.parametrize("depth", [300, 20])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/profiles/ada", lambda p: p),
        ("PATCH", "/v1/profiles/ada", lambda p: p),
        (
            "POST",
            "/v1/render",
            lambda p: b'{"template":"welcome","user_id":"ada","profile":%s}' % p,
        ),
    ],
    ids=["put", "patch", "render"],
)
async def test_deep_attributes_are_refused_naming_the_field(client, method, path, body, depth):
    r = await client.request(method, path, content=body(profile(depth)), headers=JSON)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == ("profile.attributes" if path == "/v1/render" else "attributes")
    assert "nest" in error["message"] and "8" in error["message"]


async def test_attributes_eight_deep_are_kept(client):
    doc = {"first_name": "Ada", "attributes": {"deep": nested(7)}}
    r = await client.put("/v1/profiles/ada", content=orjson.dumps(doc), headers=JSON)
    assert r.status_code in (200, 201), r.text
    r = await client.get("/v1/profiles/ada", headers=AUTH)
    assert r.json()["attributes"] == doc["attributes"]


async def test_one_deep_line_in_a_batch_is_answered_in_its_place(client):
    lines = [
        orjson.dumps({"template": "welcome", "user_id": f"r{i}", "formats": ["text"]})
        for i in range(7)
    ]
    lines[3] = b'{"template":"welcome","user_id":"deep","formats":["text"],"profile":%s}' % (
        profile(300)
    )
    r = await client.post("/v1/render/batch", content=b"\n".join(lines) + b"\n", headers=NDJSON)
    assert r.status_code == 200
    answers = [orjson.loads(line) for line in r.content.splitlines() if line.strip()]
    assert [a["line"] for a in answers] == list(range(1, 8))
    for answer in answers:
        if answer["line"] == 4:
            assert answer["error"]["code"] == "invalid"
            assert answer["error"]["field"] == "profile.attributes"
        else:
            assert "error" not in answer and answer["text"], answer
