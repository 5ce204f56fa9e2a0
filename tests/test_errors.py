"""Every error answer is JSON `{"error": {"code": str, "message": str}}`, whatever
produced it: routing, auth, tokens, validation, body limits, the store."""

from __future__ import annotations

import orjson
import pytest
from support import AUTH, FALLBACKS_DIR, assert_error, feed_url, free_port, serve

from app.app import create_app
from app.reader import ReaderData

CASES = [
    # (id, method, url, kwargs, status, code)
    ("unknown route", "GET", "/nope", {}, 404, "not_found"),
    ("unknown v1 route", "GET", "/v1/no-such-thing", {}, 404, "not_found"),
    ("wrong method on health", "POST", "/healthz", {}, 405, "method_not_allowed"),
    ("wrong method on feed", "DELETE", "/v1/feeds/profile", {}, 405, "method_not_allowed"),
    (
        "wrong method on profiles",
        "POST",
        "/v1/profiles/ada",
        {"json": {}},
        405,
        "method_not_allowed",
    ),
    ("missing token", "GET", "/v1/feeds/profile", {}, 403, "bad_token"),
    ("bad token", "GET", "/v1/feeds/profile?t=abc.def", {}, 403, "bad_token"),
    ("no api key", "GET", "/v1/profiles/ada", {}, 401, "unauthorized"),
    ("bad user id", "GET", "/v1/profiles/a@b", {"headers": AUTH}, 400, "invalid_user_id"),
    ("no profile", "GET", "/v1/profiles/nobody", {"headers": AUTH}, 404, "profile_not_found"),
    (
        "bad json",
        "PUT",
        "/v1/profiles/kj",
        {"content": b"{", "headers": {**AUTH, "Content-Type": "application/json"}},
        400,
        "invalid_json",
    ),
    (
        "not json",
        "PUT",
        "/v1/profiles/kj",
        {"content": b"x", "headers": {**AUTH, "Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    (
        "invalid field",
        "PUT",
        "/v1/profiles/kj",
        {"json": {"x": 1}, "headers": AUTH},
        422,
        "invalid",
    ),
    (
        "too large",
        "PUT",
        "/v1/profiles/kj",
        {
            "content": b"x" * (1024 * 1024 + 1),
            "headers": {**AUTH, "Content-Type": "application/json"},
        },
        413,
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
async def test_error_shape(client, method: str, url: str, kwargs: dict, status: int, code: str):
    r = await client.request(method, url, **kwargs)
    assert_error(r, status, code)


async def test_feed_errors_have_the_shape_too(client):
    assert_error(await client.get(feed_url("nosuchfeed", "ada")), 404, "not_found")
    assert_error(await client.get(feed_url("cart", "ada", limit="x")), 400, "bad_request")


async def test_405_names_allowed_methods(client):
    r = await client.post("/healthz")
    assert_error(r, 405, "method_not_allowed")
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize("method", ["POST", "OPTIONS"])
async def test_405_on_profiles_lists_every_method(client, method: str):
    # Regression: one Route per method for /v1/profiles/{user_id}; Starlette answered the
    # 405 from the first partial match (the GET route), so `Allow` said 'GET, HEAD' though
    # PUT, PATCH and DELETE are allowed too.
    r = await client.request(method, "/v1/profiles/ada", json={}, headers=AUTH)
    assert_error(r, 405, "method_not_allowed")
    allowed = set(r.headers["allow"].replace(" ", "").split(","))
    assert allowed == {"GET", "HEAD", "PUT", "PATCH", "DELETE"}


async def test_every_method_on_profiles_reaches_its_handler(client):
    r = await client.put("/v1/profiles/kj", json={"tier": "gold"}, headers=AUTH)
    assert r.status_code == 201
    r = await client.patch("/v1/profiles/kj", json={"tier": "silver"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["tier"] == "silver"
    r = await client.get("/v1/profiles/kj", headers=AUTH)
    assert r.status_code == 200 and r.json()["tier"] == "silver"
    assert (await client.delete("/v1/profiles/kj", headers=AUTH)).status_code == 204
    assert_error(await client.get("/v1/profiles/kj", headers=AUTH), 404, "profile_not_found")


async def test_head_on_profiles_answers_like_get(app):
    # Regression: the one route for all methods accepted HEAD (Starlette adds it to GET)
    # but dispatched on a table without it: KeyError, a 500.
    async with serve(app, raise_app_exceptions=False) as client:
        get = await client.get("/v1/profiles/ada", headers=AUTH)
        r = await client.head("/v1/profiles/ada", headers=AUTH)
        assert r.status_code == 200
        assert r.headers["content-type"] == get.headers["content-type"]
        # (dropping the body of a HEAD answer is the HTTP server's job, not the app's)
        assert (await client.head("/v1/profiles/nobody", headers=AUTH)).status_code == 404


async def test_store_unavailable_is_503_json(settings):
    app = create_app(settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        for method, kwargs in (
            ("GET", {}),
            ("PUT", {"json": {"tier": "gold"}}),
            ("PATCH", {"json": {"tier": "gold"}}),
            ("DELETE", {}),
        ):
            r = await client.request(method, "/v1/profiles/ada", headers=AUTH, **kwargs)
            assert_error(r, 503, "store_unavailable")
            assert r.headers["retry-after"] == "1"


async def test_a_bug_in_a_feed_builder_is_the_feeds_fallback_logged_and_counted(
    client, monkeypatch, caplog
):
    """Regression: a feed builder that raised something unexpected answered 500 to a
    reader's mail client. An open-time GET never answers 5xx for a reader: the bug is
    logged with its traceback, counted, and the reader gets the feed's fallback."""

    async def broken(self: ReaderData, *args: object) -> list[object]:
        raise RuntimeError("a bug in a feed builder")

    monkeypatch.setattr(ReaderData, "cart", broken)
    r = await client.get(feed_url("cart", "ada"))
    assert r.status_code == 200
    assert r.headers["x-kairos-fallback"] == "error"
    assert r.json() == orjson.loads((FALLBACKS_DIR / "feeds" / "cart.json").read_bytes())
    assert "a bug in a feed builder" not in r.text
    assert any("a bug in a feed builder" in (rec.exc_text or "") for rec in caplog.records)
    metrics = (await client.get("/metrics")).text
    assert any(
        line.startswith("kairos_fallbacks_total")
        and 'kind="feed"' in line
        and 'reason="error"' in line
        and line.endswith(" 1.0")
        for line in metrics.splitlines()
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/v1/feeds/profile", 405, "method_not_allowed"),
        ("GET", "/v1/feeds/profile/more", 404, "not_found"),
        ("GET", "/v1/feeds/", 404, "not_found"),
    ],
)
async def test_what_is_not_the_feed_route_is_a_json_error(
    client, method, path, status, code
):
    assert_error(await client.request(method, path), status, code)
