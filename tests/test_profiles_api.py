"""`/v1/profiles/{user_id}`: auth, PUT/PATCH/GET/DELETE, validation, body limits, and
writes that show up in the feeds at once."""

from __future__ import annotations

import asyncio
import re
import time

import orjson
import pytest
from support import ADA_PROFILE_ITEM, API_KEY, AUTH, assert_error, fallback_body, feed_url, serve

from app.app import create_app

PROFILE = {
    "first_name": "Katherine",
    "last_name": "Johnson",
    "email": "kj@example.org",
    "locale": "en-US",
    "timezone": "America/New_York",
    "tier": "gold",
    "loyalty_points": 10,
    "cart": [{"sku": "SKU-3", "qty": 1}],
    "consent": {"personalization": True, "tracking": True},
    "attributes": {"team": "orbits", "pets": ["cat"]},
}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("GET", {}),
        ("PUT", {"json": PROFILE}),
        ("PATCH", {"json": {"tier": "x"}}),
        ("DELETE", {}),
    ],
)
async def test_missing_api_key_is_401(client, method: str, kwargs: dict):
    r = await client.request(method, "/v1/profiles/ada", **kwargs)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY[:-1]}",
        "Bearer wrong-key-entirely",
        f"Basic {API_KEY}",
        f"Token {API_KEY}",
    ],
)
async def test_wrong_api_key_is_401(client, header: str):
    r = await client.get("/v1/profiles/ada", headers={"Authorization": header})
    assert_error(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    assert "Ada" not in r.text


async def test_wrong_key_does_not_write(client):
    r = await client.put(
        "/v1/profiles/kj", json=PROFILE, headers={"Authorization": "Bearer nope-nope-nope"}
    )
    assert_error(r, 401, "invalid_api_key")
    assert (await client.get("/v1/profiles/kj", headers=AUTH)).status_code == 404


async def test_scheme_is_case_insensitive(client):
    r = await client.get("/v1/profiles/ada", headers={"Authorization": f"bearer {API_KEY}"})
    assert r.status_code == 200


async def test_any_configured_key_works(settings):
    other = "second-api-key-abcdefghij"
    app = create_app(settings(KAIROS_API_KEYS=f"{API_KEY},{other}"))
    async with serve(app) as client:
        for key in (API_KEY, other):
            r = await client.get("/v1/profiles/ada", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200


async def test_no_api_keys_configured_is_401(settings):
    app = create_app(settings(KAIROS_API_KEYS=None))
    async with serve(app) as client:
        r = await client.get("/v1/profiles/ada", headers=AUTH)
        assert_error(r, 401, "auth_not_configured")
        assert "KAIROS_API_KEYS" in r.json()["error"]["message"]


# --- create, read, replace, delete -------------------------------------------------------


async def test_get_demo_profile(any_client):
    r = await any_client.get("/v1/profiles/ada", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == "ada"
    assert body["email"] == "ada@example.org"
    assert body["cart"][1] == {"sku": "SKU-2", "qty": 2}


async def test_get_unknown_is_404(any_client):
    assert_error(
        await any_client.get("/v1/profiles/nobody", headers=AUTH), 404, "profile_not_found"
    )


async def test_put_creates_then_replaces(any_client):
    r = await any_client.put("/v1/profiles/kj", json=PROFILE, headers=AUTH)
    assert r.status_code == 201
    body = r.json()
    assert body.pop("user_id") == "kj"
    assert TIMESTAMP.fullmatch(body.pop("updated_at"))
    assert body == PROFILE

    got = (await any_client.get("/v1/profiles/kj", headers=AUTH)).json()
    assert {
        k: v for k, v in got.items() if k not in ("user_id", "updated_at", "segments")
    } == PROFILE

    r = await any_client.put("/v1/profiles/kj", json={"first_name": "Kate"}, headers=AUTH)
    assert r.status_code == 200
    got = (await any_client.get("/v1/profiles/kj", headers=AUTH)).json()
    # replaced, not merged; segments are evaluated on each read
    assert set(got) == {"user_id", "first_name", "updated_at", "segments"}
    assert got["first_name"] == "Kate"


async def test_put_keeps_computed_fields(app, client):
    await app.state.services.stores.profiles.put(
        "kj", {"first_name": "K", "segments": ["vip"], "counters": {"opens": 3}}
    )
    r = await client.put("/v1/profiles/kj", json={"tier": "gold"}, headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert body["segments"] == ["vip"]
    assert body["counters"] == {"opens": 3}
    assert body["tier"] == "gold"
    assert "first_name" not in body


async def test_put_drops_null_fields(client):
    r = await client.put("/v1/profiles/kj", json={"first_name": "K", "tier": None}, headers=AUTH)
    assert r.status_code == 201
    assert "tier" not in r.json()


async def test_delete(any_client):
    assert (await any_client.delete("/v1/profiles/grace", headers=AUTH)).status_code == 204
    assert_error(await any_client.get("/v1/profiles/grace", headers=AUTH), 404, "profile_not_found")
    assert_error(await any_client.delete("/v1/profiles/grace", headers=AUTH), 404)


async def test_delete_in_redis_removes_the_key(redis_app_client, redis_client):
    assert redis_client.exists("kairos:{grace}:profile") == 1
    assert (await redis_app_client.delete("/v1/profiles/grace", headers=AUTH)).status_code == 204
    assert redis_client.exists("kairos:{grace}:profile") == 0


async def test_unreadable_stored_profile(redis_app, redis_client):
    """A stored value that is not JSON: GET says so (500, not 503: the store is up),
    PATCH finds nothing to patch, PUT replaces it, DELETE erases it."""
    redis_client.set("kairos:{bad}:profile", b"{not json")
    async with serve(redis_app, raise_app_exceptions=False) as client:
        r = await client.get("/v1/profiles/bad", headers=AUTH)
        assert_error(r, 500, "invalid_stored_data")
        assert "retry-after" not in r.headers
        assert "not json" not in r.text  # the stored bytes are not echoed

        r = await client.patch("/v1/profiles/bad", json={"tier": "gold"}, headers=AUTH)
        assert_error(r, 404, "profile_not_found")
        assert redis_client.get("kairos:{bad}:profile") == b"{not json"

        r = await client.put("/v1/profiles/bad", json={"tier": "gold"}, headers=AUTH)
        assert r.status_code == 201  # nothing readable was there
        assert r.json()["tier"] == "gold"
        r = await client.get("/v1/profiles/bad", headers=AUTH)
        assert r.status_code == 200
        assert r.json()["tier"] == "gold"

        redis_client.set("kairos:{bad}:profile", b"{not json")
        assert (await client.delete("/v1/profiles/bad", headers=AUTH)).status_code == 204
        assert redis_client.exists("kairos:{bad}:profile") == 0


async def test_put_in_redis_lands_under_the_reader_key(redis_app_client, redis_client):
    r = await redis_app_client.put("/v1/profiles/kj", json=PROFILE, headers=AUTH)
    assert r.status_code == 201
    stored = orjson.loads(redis_client.get("kairos:{kj}:profile"))
    assert {k: v for k, v in stored.items() if k != "updated_at"} == PROFILE


# --- PATCH: JSON merge patch -------------------------------------------------------------


async def test_patch_merges(any_client):
    await any_client.put("/v1/profiles/kj", json=PROFILE, headers=AUTH)
    patch = {
        "tier": None,  # null deletes
        "loyalty_points": 11,  # replaces
        "consent": {"tracking": False},  # nested objects merge
        "attributes": {"pets": None, "shift": "night"},
    }
    r = await any_client.patch(
        "/v1/profiles/kj",
        content=orjson.dumps(patch),
        headers={**AUTH, "Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 200
    body = r.json()
    assert "tier" not in body
    assert body["loyalty_points"] == 11
    assert body["consent"] == {"personalization": True, "tracking": False}
    assert body["attributes"] == {"team": "orbits", "shift": "night"}
    assert body["first_name"] == "Katherine"
    assert body["cart"] == PROFILE["cart"]

    got = (await any_client.get("/v1/profiles/kj", headers=AUTH)).json()
    assert got.pop("segments") == {"primary": None, "all": []}  # evaluated on each read
    assert {k: v for k, v in got.items() if k != "updated_at"} == {
        k: v for k, v in body.items() if k != "updated_at"
    }


async def test_patch_replaces_lists(client):
    await client.put("/v1/profiles/kj", json=PROFILE, headers=AUTH)
    r = await client.patch("/v1/profiles/kj", json={"cart": [{"sku": "SKU-9"}]}, headers=AUTH)
    assert r.json()["cart"] == [{"sku": "SKU-9"}]


async def test_concurrent_patches_are_all_applied(any_client):
    await any_client.put("/v1/profiles/kj", json={"first_name": "K"}, headers=AUTH)
    responses = await asyncio.gather(
        *(
            any_client.patch("/v1/profiles/kj", json={"attributes": {f"k{i}": i}}, headers=AUTH)
            for i in range(25)
        )
    )
    assert [r.status_code for r in responses] == [200] * 25
    got = (await any_client.get("/v1/profiles/kj", headers=AUTH)).json()
    assert got["attributes"] == {f"k{i}": i for i in range(25)}  # no lost update


async def test_patch_unknown_profile_is_404(any_client):
    r = await any_client.patch("/v1/profiles/nobody", json={"tier": "gold"}, headers=AUTH)
    assert_error(r, 404, "profile_not_found")
    assert (await any_client.get("/v1/profiles/nobody", headers=AUTH)).status_code == 404


async def test_patch_keeps_computed_fields(app, client):
    await app.state.services.stores.profiles.put("kj", {"first_name": "K", "segments": ["vip"]})
    r = await client.patch("/v1/profiles/kj", json={"tier": "gold"}, headers=AUTH)
    assert r.json()["segments"] == ["vip"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"segments": ["vip"]}, "segments"),
        ({"shoe_size": 42}, "shoe_size"),
        ({"consent": {"tracking": "no"}}, "consent.tracking"),
        ({"loyalty_points": -5}, "loyalty_points"),
    ],
)
async def test_invalid_patch_is_422_and_writes_nothing(any_client, patch: dict, field: str):
    before = (await any_client.get("/v1/profiles/ada", headers=AUTH)).json()
    r = await any_client.patch("/v1/profiles/ada", json=patch, headers=AUTH)
    error = assert_error(r, 422)
    assert error["field"] == field
    assert (await any_client.get("/v1/profiles/ada", headers=AUTH)).json() == before


async def test_patch_validated_after_merging(any_client):
    many = {f"k{i}": i for i in range(60)}
    await any_client.put("/v1/profiles/kj", json={"attributes": many}, headers=AUTH)
    more = {f"m{i}": i for i in range(60)}  # fine alone, 120 keys once merged
    r = await any_client.patch("/v1/profiles/kj", json={"attributes": more}, headers=AUTH)
    assert assert_error(r, 422)["field"] == "attributes"
    got = (await any_client.get("/v1/profiles/kj", headers=AUTH)).json()
    assert got["attributes"] == many


async def test_patch_must_be_an_object(client):
    r = await client.patch("/v1/profiles/ada", json=["tier"], headers=AUTH)
    assert_error(r, 400, "invalid_body")


# --- validation --------------------------------------------------------------------------


async def test_unknown_field_is_422_naming_it(client):
    r = await client.put(
        "/v1/profiles/kj", json={**PROFILE, "favourite_colour": "blue"}, headers=AUTH
    )
    error = assert_error(r, 422, "invalid")
    assert error["field"] == "favourite_colour"
    assert "favourite_colour" in error["message"]
    assert (await client.get("/v1/profiles/kj", headers=AUTH)).status_code == 404


@pytest.mark.parametrize("field", ["segments", "counters", "updated_at", "user_id"])
async def test_read_only_field_is_422(client, field: str):
    r = await client.put("/v1/profiles/kj", json={"first_name": "K", field: ["x"]}, headers=AUTH)
    assert assert_error(r, 422)["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"loyalty_points": "many"}, "loyalty_points"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"tier": "t" * 33}, "tier"),
        ({"email": "nope"}, "email"),
        ({"timezone": "Nowhere/Land"}, "timezone"),
        ({"cart": [{"sku": f"SKU-{i}"} for i in range(101)]}, "cart"),
        ({"cart": [{"sku": "SKU-1", "qty": "2"}]}, "cart[0].qty"),
        ({"consent": {"personalization": 1}}, "consent.personalization"),
        ({"attributes": {"big": "x" * 20_000}}, "attributes"),
    ],
)
async def test_invalid_values_are_422_with_field(client, body: dict, field: str):
    r = await client.put("/v1/profiles/kj", json=body, headers=AUTH)
    assert assert_error(r, 422, "invalid")["field"] == field


async def test_body_that_is_not_an_object_is_422(client):
    assert_error(await client.put("/v1/profiles/kj", json=[1], headers=AUTH), 422, "invalid_body")


async def test_timezone_naming_a_directory_is_422(app):
    # Regression: IsADirectoryError from ZoneInfo('Europe') escaped the validation, so
    # the PUT answered 500 instead of 422.
    async with serve(app, raise_app_exceptions=False) as client:
        r = await client.put("/v1/profiles/kj", json={"timezone": "Europe"}, headers=AUTH)
        assert assert_error(r, 422, "invalid")["field"] == "timezone"
        r = await client.patch("/v1/profiles/ada", json={"timezone": "America"}, headers=AUTH)
        assert assert_error(r, 422, "invalid")["field"] == "timezone"
        assert (await client.get("/v1/profiles/kj", headers=AUTH)).status_code == 404


@pytest.mark.parametrize("body", [b"{not json", b'{"a": 1,}', b"\xff\xfe", b'{"first_name": "x"'])
async def test_malformed_json_is_400(client, body: bytes):
    r = await client.put(
        "/v1/profiles/kj", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")


async def test_empty_body_is_400(client):
    r = await client.put(
        "/v1/profiles/kj", content=b"", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_wrong_content_type_is_415(client, content_type: str | None):
    headers = dict(AUTH)
    if content_type:
        headers["Content-Type"] = content_type
    r = await client.put("/v1/profiles/kj", content=orjson.dumps(PROFILE), headers=headers)
    assert_error(r, 415, "unsupported_media_type")


async def test_content_type_with_charset_is_accepted(client):
    r = await client.put(
        "/v1/profiles/kj",
        content=orjson.dumps(PROFILE),
        headers={**AUTH, "Content-Type": "Application/JSON; charset=utf-8"},
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    "path",
    [
        "/v1/profiles/%7Bada%7D",
        "/v1/profiles/a%7Bb",
        "/v1/profiles/ada@example.org",
        "/v1/profiles/ada%40example.org",
        "/v1/profiles/a%20b",
        "/v1/profiles/" + "a" * 129,
    ],
)
async def test_invalid_user_id_is_400(client, path: str):
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        r = await client.request(method, path, json={"tier": "gold"}, headers=AUTH)
        error = assert_error(r, 400, "invalid_user_id")
        assert error["field"] == "user_id"


@pytest.mark.parametrize(
    "text", ["<script>alert(1)</script>", "{{ 7*7 }}", "{% if 1 %}x{% endif %}"]
)
async def test_markup_is_data_stored_byte_exact(any_client, text: str):
    body = {"first_name": text, "attributes": {"note": text}}
    r = await any_client.put("/v1/profiles/kj", json=body, headers=AUTH)
    assert r.status_code == 201
    got = await any_client.get("/v1/profiles/kj", headers=AUTH)
    assert got.json()["first_name"] == text
    assert got.json()["attributes"]["note"] == text
    assert orjson.dumps(text) in got.content  # byte for byte, not escaped or rendered
    feed = await any_client.get(feed_url("profile", "kj"))
    assert feed.json()["items"][0]["first_name"] == text
    assert "49" not in feed.text


# --- body size limit ---------------------------------------------------------------------


@pytest.fixture
async def small_body_client(settings):
    app = create_app(settings(KAIROS_MAX_BODY_BYTES=2048))
    async with serve(app) as c:
        yield c


def big_profile() -> bytes:
    body = orjson.dumps({"first_name": "K", "attributes": {"note": "x" * 3000}})
    assert len(body) > 2048
    return body


async def test_declared_oversize_body_is_413(small_body_client):
    body = big_profile()
    r = await small_body_client.put(
        "/v1/profiles/kj",
        content=body,
        headers={**AUTH, "Content-Type": "application/json", "Content-Length": str(len(body))},
    )
    assert_error(r, 413, "payload_too_large")
    assert (await small_body_client.get("/v1/profiles/kj", headers=AUTH)).status_code == 404


async def test_streamed_oversize_body_is_413(small_body_client):
    body = big_profile()
    received = []

    async def chunks():
        for i in range(0, len(body), 500):
            received.append(i)
            yield body[i : i + 500]

    r = await small_body_client.put(
        "/v1/profiles/kj", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert "content-length" not in r.request.headers  # chunked: no size declared up front
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_error(r, 413, "payload_too_large")
    assert len(received) < len(range(0, len(body), 500))  # refused before the end
    assert (await small_body_client.get("/v1/profiles/kj", headers=AUTH)).status_code == 404


async def test_streamed_body_under_the_limit_is_fine(small_body_client):
    body = orjson.dumps({"first_name": "K", "attributes": {"note": "x" * 1500}})
    assert len(body) < 2048

    async def chunks():
        for i in range(0, len(body), 300):
            yield body[i : i + 300]

    r = await small_body_client.put(
        "/v1/profiles/kj", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 201
    assert r.json()["attributes"]["note"] == "x" * 1500


async def test_body_of_exactly_the_limit_is_accepted(small_body_client):
    prefix = b'{"first_name":"K","attributes":{"note":"'
    suffix = b'"}}'
    body = prefix + b"x" * (2048 - len(prefix) - len(suffix)) + suffix
    assert len(body) == 2048
    r = await small_body_client.put(
        "/v1/profiles/kj", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 201


async def test_non_numeric_content_length_is_400(small_body_client):
    r = await small_body_client.put(
        "/v1/profiles/kj",
        content=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Content-Length": "abc"},
    )
    assert_error(r, 400)


# --- writes show in the feeds at once ----------------------------------------------------


async def test_writes_invalidate_the_feed_cache(any_client):
    r = await any_client.get(feed_url("profile", "ada"))
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}  # now cached (TTL 5 s)
    r = await any_client.get(feed_url("profile", "ada"))
    assert r.json() == {"items": [ADA_PROFILE_ITEM]}

    r = await any_client.put(
        "/v1/profiles/ada", json={"first_name": "Augusta", "tier": "platinum"}, headers=AUTH
    )
    assert r.status_code == 200
    r = await any_client.get(feed_url("profile", "ada"))
    assert r.json()["items"][0]["first_name"] == "Augusta"
    assert r.json()["items"][0]["tier"] == "platinum"

    r = await any_client.patch("/v1/profiles/ada", json={"loyalty_points": 99}, headers=AUTH)
    assert r.status_code == 200
    r = await any_client.get(feed_url("profile", "ada"))
    assert r.json()["items"][0]["loyalty_points"] == 99

    r = await any_client.get(feed_url("cart", "ada"))
    assert r.json() == {"items": []}  # the PUT replaced the cart away

    assert (await any_client.delete("/v1/profiles/ada", headers=AUTH)).status_code == 204
    for feed in ("profile", "cart", "recommendations"):
        r = await any_client.get(feed_url(feed, "ada"))
        assert r.status_code == 200
        assert r.headers["x-kairos-fallback"] == "missing-profile"
        assert r.json() == fallback_body(feed)
    assert_error(await any_client.get("/v1/profiles/ada", headers=AUTH), 404, "profile_not_found")


async def test_created_reader_is_served_at_once_after_a_missing_lookup(any_client):
    r = await any_client.get(feed_url("profile", "kj"))
    assert r.headers["x-kairos-fallback"] == "missing-profile"  # "missing" is cached too
    await any_client.put("/v1/profiles/kj", json=PROFILE, headers=AUTH)
    r = await any_client.get(feed_url("profile", "kj"))
    assert "x-kairos-fallback" not in r.headers
    assert r.json()["items"][0]["first_name"] == "Katherine"


async def test_write_on_one_server_shows_on_another(settings, redis_url, redis_app_client):
    """Two servers on one Redis: a write through one drops the other's cached copy."""
    other = create_app(settings(REDIS_URL=redis_url))
    async with serve(other) as other_client:
        r = await other_client.get(feed_url("profile", "ada"))
        assert r.json() == {"items": [ADA_PROFILE_ITEM]}  # cached there now (TTL 5 s)

        r = await redis_app_client.patch(
            "/v1/profiles/ada", json={"first_name": "Augusta"}, headers=AUTH
        )
        assert r.status_code == 200

        async def first_name():
            r = await other_client.get(feed_url("profile", "ada"))
            return r.json()["items"][0]["first_name"]

        deadline = time.monotonic() + 2
        while await first_name() != "Augusta":
            assert time.monotonic() < deadline, "the other server kept its stale copy"
            await asyncio.sleep(0.01)

        assert (await redis_app_client.delete("/v1/profiles/ada", headers=AUTH)).status_code == 204
        deadline = time.monotonic() + 2
        while True:
            r = await other_client.get(feed_url("profile", "ada"))
            if r.headers.get("x-kairos-fallback") == "missing-profile":
                break
            assert time.monotonic() < deadline, "the other server still serves an erased reader"
            await asyncio.sleep(0.01)
