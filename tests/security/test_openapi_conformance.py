"""The public contract against the server, through the real app: every status a hostile
or careless request gets is documented for its operation in /openapi.json, and a
profile's answer has no field its documented schema forbids."""

from __future__ import annotations

from typing import Any

import pytest
from support import AUTH

JSON = {**AUTH, "Content-Type": "application/json"}
TEXT = {**AUTH, "Content-Type": "text/plain"}

CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("PUT", "/v1/profiles/ada", "/v1/profiles/{user_id}", {"headers": JSON, "content": b"{"}),
    ("PUT", "/v1/profiles/ada", "/v1/profiles/{user_id}", {"headers": TEXT, "content": b"{}"}),
    ("PATCH", "/v1/profiles/ada", "/v1/profiles/{user_id}", {"headers": JSON, "content": b"["}),
    ("PATCH", "/v1/profiles/ada", "/v1/profiles/{user_id}", {"headers": TEXT, "content": b"{}"}),
    ("POST", "/v1/render", "/v1/render", {"headers": JSON, "content": b"{"}),
    ("POST", "/v1/render", "/v1/render", {"headers": TEXT, "content": b"{}"}),
    (
        "POST",
        "/v1/render",
        "/v1/render",
        {"headers": JSON, "content": b'{"template": "", "user_id": "ada"}'},
    ),
    ("POST", "/v1/render/batch", "/v1/render/batch", {"headers": TEXT, "content": b"{}\n"}),
    ("POST", "/v1/preview", "/v1/preview", {"headers": JSON, "content": b"{"}),
    ("POST", "/v1/preview", "/v1/preview", {"headers": TEXT, "content": b"{}"}),
    ("GET", "/v1/profiles/a%20b", "/v1/profiles/{user_id}", {"headers": AUTH}),
    ("GET", "/v1/profiles/ada", "/v1/profiles/{user_id}", {}),
]


@pytest.fixture
def app(settings):  # with a write key: a profile that events have changed too
    from app.app import create_app

    return create_app(settings(KAIROS_WRITE_KEYS="test-write-key-0123456789"))


@pytest.fixture
async def spec(client) -> dict[str, Any]:
    doc: dict[str, Any] = (await client.get("/openapi.json")).json()
    return doc


@pytest.mark.parametrize(("method", "path", "documented", "kwargs"), CASES)
async def test_every_status_is_documented(client, spec, method, path, documented, kwargs):
    r = await client.request(method, path, **kwargs)
    assert r.status_code >= 400, r.text
    responses = spec["paths"][documented][method.lower()]["responses"]
    assert str(r.status_code) in responses, (
        f"{method} {documented} answered {r.status_code}, documented {sorted(responses)}"
    )


def properties(spec: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = spec["components"]["schemas"][name]
    assert schema.get("additionalProperties") is False
    return set(schema["properties"])


async def test_a_profiles_answers_fit_their_documented_schema(client, spec):
    doc = {"first_name": "Ada", "cart": [{"sku": "SKU-1", "qty": 1}]}
    put = await client.put("/v1/profiles/ada", json=doc, headers=AUTH)
    events = [
        {"event_id": "e1", "user_id": "ada", "type": "product_view", "properties": {"sku": "S"}},
        {"event_id": "e2", "user_id": "ada", "type": "page_view"},
    ]
    sent = await client.post(
        "/v1/events",
        json={"events": events},
        headers={"Authorization": "Bearer test-write-key-0123456789"},
    )
    assert sent.status_code == 202, sent.text
    got = await client.get("/v1/profiles/ada", headers=AUTH)
    assert {"counters", "first_seen", "segments"} <= set(got.json())
    patched = await client.patch("/v1/profiles/ada", json={"tier": "gold"}, headers=AUTH)
    operations = spec["paths"]["/v1/profiles/{user_id}"]
    for r, method in ((put, "put"), (got, "get"), (patched, "patch")):
        assert r.status_code in (200, 201), r.text
        schema = operations[method]["responses"][str(r.status_code)]["content"]["application/json"][
            "schema"
        ]
        unknown = set(r.json()) - properties(spec, schema)
        assert not unknown, f"{method.upper()} answers fields its schema forbids: {unknown}"


async def test_an_empty_template_name_is_refused_by_the_schema_too(spec):
    template = spec["components"]["schemas"]
    request = spec["paths"]["/v1/render"]["post"]["requestBody"]["content"]["application/json"]
    schema = request["schema"]
    if "$ref" in schema:
        schema = template[schema["$ref"].rsplit("/", 1)[1]]
    assert schema["properties"]["template"].get("minLength") == 1
