"""Error answers under hostile requests, through the real app: every one is the JSON error
shape with `Cache-Control: no-store`, never a traceback or a secret; and neither the
access log nor the error log ever shows a token, even in a path no route matches."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from support import API_KEY, AUTH, SECRET, TOKENS

JSON = {"Content-Type": "application/json"}
WRITE_KEY_FREE = {"Content-Type": "application/json", "Authorization": "Bearer nope"}

CASES: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "no API key": ("GET", "/v1/profiles/ada", {}, 401),
    "a wrong API key": ("GET", "/v1/profiles/ada", {"headers": {"Authorization": "Bearer x"}}, 401),
    "a forged click token": ("GET", "/c/not-a-token", {}, 403),
    "an unknown path": ("GET", "/v1/nothing-here", {}, 404),
    "a wrong method": ("DELETE", "/v1/render", {"headers": AUTH}, 405),
    "a body over the cap": (
        "PUT",
        "/v1/profiles/ada",
        {"headers": {**AUTH, **JSON}, "content": b"{" + b" " * 2_000_000 + b"}"},
        413,
    ),
    "not JSON": ("PUT", "/v1/profiles/ada", {"headers": {**AUTH, **JSON}, "content": b"{"}, 400),
    "a wrong media type": (
        "PUT",
        "/v1/profiles/ada",
        {"headers": {**AUTH, "Content-Type": "text/plain"}, "content": b"{}"},
        415,
    ),
    "a schema error": (
        "PUT",
        "/v1/profiles/ada",
        {"headers": {**AUTH, **JSON}, "content": b'{"first_name": 7}'},
        422,
    ),
    "no valid event": (
        "POST",
        "/v1/events",
        {
            "headers": {**JSON, "Authorization": "Bearer test-write-key-0123456789"},
            "content": b'{"events":[{}]}',
        },
        422,
    ),
}


@pytest.fixture
def app(settings):  # with a write key, for the events case
    from app.app import create_app

    return create_app(settings(KAIROS_WRITE_KEYS="test-write-key-0123456789"))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_every_error_is_json_no_store_and_tells_nothing(client, case):
    method, path, kwargs, status = case
    r = await client.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] and error["message"]
    assert r.headers["cache-control"] == "no-store"
    text = r.text
    for secret in (SECRET, API_KEY, "Traceback", 'File "'):
        assert secret not in text


async def test_no_token_reaches_the_logs_even_on_a_path_no_route_matches(client, caplog):
    token = TOKENS.sign("feed", "reader-with-a-secret-id", "cart")
    caplog.set_level(logging.INFO)
    paths = [
        f"/v1/feeds/cart/{token}/extra",  # one segment too many: no route matches
        f"/v1/feedz/cart/{token}",  # mistyped
        f"/c/{token}/x",
        f"/{token}",
    ]
    for path in paths:
        r = await client.get(path)
        assert r.status_code in (403, 404), (path, r.status_code)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("kairos"))
    assert "unmatched" in logged
    assert token not in logged and token[:40] not in logged
    assert "reader-with-a-secret-id" not in logged
