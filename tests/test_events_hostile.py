"""A hostile client of the events API, holding only the public write key or no key at all.
Each test is an attack: those the first review found working are fixed and kept here."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import logging
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx
import pytest
import redis
from support import API_KEY, AUTH, free_port, serve

from app.app import create_app
from app.events import ingest as ingest_module
from app.events import model as model_module
from app.settings import Settings

WRITE_KEY = "hostile-write-key-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
JSON = {"Content-Type": "application/json"}
Json = dict[str, Any]
Client = httpx.AsyncClient
Open = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
embedded = pytest.mark.parametrize("backend", ["embedded"])
on_redis = pytest.mark.parametrize("backend", ["redis"])


@pytest.fixture
def open_app(
    backend: str, settings: Callable[..., Settings], request: pytest.FixtureRequest
) -> Open:
    redis_url = request.getfixturevalue("redis_url") if backend != "embedded" else None

    @contextlib.asynccontextmanager
    async def running(**env: Any) -> AsyncIterator[httpx.AsyncClient]:
        base = {"KAIROS_WRITE_KEYS": WRITE_KEY, "REDIS_URL": redis_url, "KAIROS_DEMO_DATA": "true"}
        app = create_app(settings(**{**base, **env}))
        async with serve(cast(Any, app)) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return running


@pytest.fixture
def rc(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture
async def c(open_app: Open) -> AsyncIterator[httpx.AsyncClient]:
    async with open_app() as client:
        yield client


def ev(kind: str, user: str = "", anon: str = "", eid: str = "", **props: Any) -> Json:
    event: Json = {"event_id": eid or f"h-{random.getrandbits(64):x}", "type": kind}
    event.update({k: v for k, v in (("user_id", user), ("anonymous_id", anon)) if v})
    return {**event, "properties": props} if props else event


async def post(c: Client, events: Any, headers: Any = WRITE) -> httpx.Response:
    body = {"events": events} if isinstance(events, list) else events
    return await c.post("/v1/events", json=body, headers=headers)


async def alias(c: Client, previous: str, user: str) -> httpx.Response:
    body = {"messageId": f"al-{previous}-{user}", "previousId": previous, "userId": user}
    return await c.post("/segment/v1/alias", json=body, headers=WRITE)


async def profile(c: Client, user: str, *, anonymous: bool = False) -> Json | None:
    r = await c.get(f"/v1/profiles/{user}" + ("?anonymous=true" if anonymous else ""), headers=AUTH)
    assert r.status_code in (200, 404), r.text
    return cast(Json, r.json()) if r.status_code == 200 else None


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode("latin-1")).decode()


# --- keys ------------------------------------------------------------------------------------

OTHER_ROUTES = "GET PUT PATCH DELETE".split()
OTHER_PATHS = ["/v1/profiles/ada?anonymous=true", "/v1/suppressions/ada", "/v1/erasures"]


@embedded
async def test_a_write_key_is_refused_on_every_other_route(c: Client) -> None:
    body = b'{"first_name": "Mallory"}'
    cases = [(m, "/v1/profiles/ada") for m in OTHER_ROUTES] + [("POST", "/v1/render")]
    cases += [("DELETE" if "supp" in p else "GET", p) for p in OTHER_PATHS]
    for method, path in cases:
        sent = body if method in ("PUT", "PATCH", "POST") else None
        r = await c.request(method, path, content=sent, headers={**WRITE, **JSON})
        assert (r.status_code, r.json()["error"]["code"]) == (403, "write_key_not_allowed"), path
        # Basic auth (the Segment way) carries nothing but events, even with an API key.
        r = await c.request(method, path, content=sent, headers={"Authorization": basic(API_KEY)})
        assert r.status_code == 401, (method, path)
    assert cast(Json, await profile(c, "ada"))["first_name"] == "Ada"


BAD_AUTH = [
    "Basic !!!!", basic("", WRITE_KEY), basic("x", WRITE_KEY), basic("\xff", "x"), "Bearer",
    f"Token {WRITE_KEY}", f"Bearer {WRITE_KEY[:-1]}", f"Bearer {WRITE_KEY}x",
    f"Bearer {WRITE_KEY}, Bearer x", f"Digest {WRITE_KEY}",
]  # fmt: skip


@embedded
async def test_malformed_or_wrong_keys_are_401_in_both_dialects(c: Client) -> None:
    for header in BAD_AUTH:
        h = {"Authorization": header, **JSON}
        assert (await post(c, ev("page_view", "auth1"), h)).status_code == 401, header
        segment = {"messageId": "m", "userId": "auth1", "event": "x"}
        assert (await c.post("/segment/v1/track", json=segment, headers=h)).status_code == 401
    # A key in the body: write and API keys pass (the Segment way); the native API ignores it.
    for key, status in [(WRITE_KEY, 200), (API_KEY, 200), ("nope", 401), ("", 401)]:
        for value in (key, [key]):
            body = {"writeKey": value, "messageId": "wk", "userId": "auth2", "event": "x"}
            r = await c.post("/segment/v1/track", json=body, headers={"Content-Type": "text/plain"})
            assert r.status_code == (status if value == key else 401), (value, r.text)
    assert (
        await post(c, {**ev("page_view", "auth1"), "writeKey": WRITE_KEY}, JSON)
    ).status_code == 401
    assert await profile(c, "auth1") is None


@embedded
async def test_a_wrong_header_key_is_refused_before_the_body_is_read(c: Client) -> None:
    r = await c.post("/segment/v1/batch", content=b"{{", headers={"Authorization": "Bearer no"})
    assert r.status_code == 401


# --- bodies ----------------------------------------------------------------------------------

GOOD = gzip.compress(b'{"event_id": "gz", "user_id": "gz1", "type": "page_view"}')
BODIES = [
    ("gzip", gzip.compress(b" " * (20 << 20)), 413, "payload_too_large"),
    ("gzip", GOOD[:-6], 400, "invalid_gzip"), ("gzip", GOOD[:20], 400, "invalid_gzip"),
    ("gzip", b"hello", 400, "invalid_gzip"), ("gzip", b"", 400, "invalid_gzip"),
    ("deflate", GOOD, 415, "unsupported_encoding"),
    ("gzip, gzip", GOOD, 415, "unsupported_encoding"),
    (None, None, 413, "payload_too_large"),  # 5 MB chunked, no Content-Length
]  # fmt: skip


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(50):
        yield b" " * 100_000


@embedded
@pytest.mark.parametrize(("encoding", "content", "status", "code"), BODIES)
async def test_hostile_bodies(
    c: Client, encoding: str | None, content: bytes | None, status: int, code: str
) -> None:
    for path in ("/v1/events", "/segment/v1/batch"):
        headers = {**WRITE, **JSON, **({"Content-Encoding": encoding} if encoding else {})}
        r = await c.post(path, content=_chunks() if content is None else content, headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), path


NATIVE_DEEP = '{"event_id":"d","user_id":"deep","type":"custom:x","properties":{"a":%s}}'
SEGMENT_DEEP = (
    '{"batch":[{"type":"track","messageId":"d","userId":"deep","event":"x","context":%s}]}'
)


@embedded
async def test_too_many_events_is_413_and_deep_nesting_never_500(c: Client) -> None:
    many: list[tuple[str, Json]] = [("/v1/events", {"events": [{}] * 5001})]
    for path, body in [*many, ("/segment/v1/batch", {"batch": [{}] * 5001})]:
        r = await c.post(path, json=body, headers=WRITE)
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_events")
    for depth in (200, 255, 256, 5000):
        for path, doc in (("/v1/events", NATIVE_DEEP), ("/segment/v1/batch", SEGMENT_DEEP)):
            nested = "[" * depth + "]" * depth
            r = await c.post(path, content=doc % nested, headers={**WRITE, **JSON})
            assert r.status_code in (200, 202, 400, 422), (depth, r.text)


# --- ids, types, numbers ---------------------------------------------------------------------

BAD_IDS = "a{b}c|{x}|x}|a b|a\x00b|\x00|é|ａ|a\nb|a/b|a@b.c|~x|*|a\u200bb||".split("|")
BAD_IDS[-1] = "a" * 129
TAGGED = re.compile(
    r"kairos:\{~?[A-Za-z0-9_.:-]{1,128}\}:[a-z]+|kairos:suppressed:\{\d+\}"
    r"|kairos:(catalog|popular|audit:erasures)"
    r"|kairos:rate:(api|events):[0-9a-f]{32}"  # a key's rate limit bucket, while it lives
)


@on_redis
async def test_no_reader_id_escapes_its_hash_tag(c: Client, rc: redis.Redis) -> None:
    for bad in BAD_IDS:
        for field in ("user_id", "anonymous_id"):
            r = await post(c, {"event_id": f"id-{bad!r}", field: bad, "type": "page_view"})
            assert r.json()["rejected"][0]["code"] == "invalid_field", (field, bad)
    # Odd but valid event ids and custom names are values, never keys; control
    # characters in an event id are refused (they could spell internal markers).
    odd = [
        ev("custom:../../x", "k1", eid="{x}é/*" * 10),
        ev("custom:__proto__", anon="k2", eid="*"),
        ev("custom:x", "k3", eid="\x00merged:~k2"),
    ]
    body = (await post(c, odd)).json()
    assert body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(2, "event_id")]
    assert [k for k in rc.scan_iter() if not TAGGED.fullmatch(k.decode())] == []


ITEMS = '"items":[{"sku":"S"}],"currency":"EUR","total":'
ODD = [
    ("purchase", ITEMS + "1e309", 400), ("purchase", ITEMS + "NaN", 400),
    ("purchase", ITEMS + "-0", 202), ("add_to_cart", '"sku":"S","qty":18446744073709551616', 422),
    ("add_to_cart", '"sku":"S","qty":1e2', 422), ("custom:x", '"\\ud800":1', 400),
    ("custom:x", '"__proto__":{"admin":true},"constructor":{}', 202),
    ("page_view", '"title":"\xff"', 400),
]  # fmt: skip


NONE = "no_valid_events"
SEGMENT_SHAPES = [
    ("batch", {"batch": {"type": "track"}}, "invalid_body"), ("track", "hi", "invalid_body"),
    ("batch", [{"type": "track"}], "invalid_body"), ("batch", {"batch": [["type", "track"]]}, NONE),
    ("batch", {"batch": [{"type": "group", "messageId": "g", "userId": "s"}]}, NONE),
    ("batch", {"batch": [{"type": "Track", "messageId": "t", "userId": "s", "event": "x"}]}, NONE),
    ("batch", {"batch": [{"type": "batch", "batch": []}]}, NONE),
]  # fmt: skip


@embedded
async def test_odd_values_and_shapes_are_refused_cleanly(c: Client) -> None:
    for n, (kind, props, status) in enumerate(ODD):
        raw = f'{{"event_id":"n{n}","user_id":"num","type":"{kind}","properties":{{{props}}}}}'
        r = await c.post("/v1/events", content=raw.encode("latin-1"), headers={**WRITE, **JSON})
        assert r.status_code == status, (props, r.text)
    for call, body, code in SEGMENT_SHAPES:
        r = await c.post(f"/segment/v1/{call}", json=body, headers=WRITE)
        assert (r.status_code, r.json()["error"]["code"]) == (400, code), body


# --- what a write key may do to readers -----------------------------------------------------


async def test_a_write_key_cannot_move_a_users_profile_into_another(c: Client) -> None:
    email = cast(Json, await profile(c, "ada"))["email"]
    assert (await alias(c, "ada", "mallory")).status_code == 200
    assert (await post(c, ev("identify", "mallory", anon="grace", traits={}))).status_code == 202
    assert (await post(c, ev("add_to_cart", "ada", sku="SKU-4"))).status_code == 202
    ada = cast(Json, await profile(c, "ada"))
    assert ada["email"] == email and "SKU-4" in {line["sku"] for line in ada["cart"]}
    mallory = cast(Json, await profile(c, "mallory"))
    assert "email" not in mallory and "cart" not in mallory
    assert cast(Json, await profile(c, "grace"))["first_name"] == "Grace"


async def test_a_write_key_can_neither_erase_nor_lift(
    c: Client,
) -> None:
    assert (await c.delete("/v1/profiles/alan", headers=WRITE)).status_code == 403
    assert (await c.delete("/v1/profiles/alan", headers=AUTH)).status_code == 204
    assert (await c.delete("/v1/suppressions/alan", headers=WRITE)).status_code == 403
    r = await post(c, [ev("page_view", "alan"), ev("identify", "alan", anon="x1", traits={})])
    assert {x["code"] for x in r.json()["rejected"]} == {"suppressed"}
    await alias(c, "alan", "mallory2")
    assert await profile(c, "alan") is None
    # grace declined tracking: her events are dropped, not stored.
    r = await post(c, [ev("add_to_cart", "grace", sku="SKU-1"), ev("custom:spy", "grace")])
    assert r.json()["dropped"] == 2 and "counters" not in cast(Json, await profile(c, "grace"))


@embedded
async def test_a_write_key_cannot_regrant_consent_the_api_withdrew(c: Client) -> None:
    r = await c.patch("/v1/profiles/hedy", json={"consent": {"tracking": False}}, headers=AUTH)
    assert r.status_code == 200
    await post(c, ev("identify", "hedy", traits={"consent": {"tracking": True}}))
    assert cast(Json, await profile(c, "hedy"))["consent"]["tracking"] is False


@embedded
async def test_a_write_key_cannot_set_server_owned_fields(c: Client) -> None:
    await post(c, ev("identify", "ada", traits={"tier": "platinum", "loyalty_points": 10**9}))
    ada = cast(Json, await profile(c, "ada"))
    assert (ada["tier"], ada["loyalty_points"]) == ("gold", 1234)


async def test_an_event_id_spelling_the_merge_mark_loses_no_data(c: Client) -> None:
    mark = getattr(ingest_module, "MERGE_MARK", "\x00merged:")
    reader = getattr(model_module, "anonymous_reader", lambda a: a)("cookie-1")
    await post(c, ev("add_to_cart", anon="cookie-1", sku="SKU-7", qty=2))
    await post(c, ev("page_view", "bob", eid=mark + reader))  # planted by anyone
    await post(c, ev("identify", "bob", anon="cookie-1", traits={}))
    assert [line["sku"] for line in (await profile(c, "bob") or {}).get("cart", [])] == ["SKU-7"]


async def test_merges_keep_the_profile_within_the_schema(c: Client) -> None:
    attributes = {f"v{i}": i for i in range(90)}
    await c.put("/v1/profiles/vic", json={"attributes": attributes}, headers=AUTH)
    for n in range(3):
        traits = {f"a{n}_{i}": "x" * 100 for i in range(100)}
        await post(c, ev("identify", anon=f"fat-{n}", traits=traits))
        await alias(c, f"fat-{n}", "vic")
    r = await c.patch("/v1/profiles/vic", json={"first_name": "Vic"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert len(cast(Json, await profile(c, "vic"))["attributes"]) <= 100


@embedded
async def test_an_erased_id_is_not_stored_again(c: Client) -> None:
    await post(c, ev("page_view", "gone-1"))
    assert (await c.delete("/v1/profiles/gone-1", headers=AUTH)).status_code == 204
    await post(
        c, [ev("custom:x", "y-1", anon="gone-1"), ev("identify", "y-1", anon="gone-1", traits={})]
    )
    history = await c.app.state.services.stores.events.history("y-1")  # type: ignore[attr-defined]
    assert not any(b"gone-1" in raw for raw in history)


@embedded
async def test_a_request_full_of_merges_does_not_stall_the_server(c: Client) -> None:
    n, worst, stop = 3000, [0.0], asyncio.Event()
    await post(c, [ev("add_to_cart", anon=f"m{i}", sku="S1") for i in range(n)])

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            worst[0], last = max(worst[0], time.perf_counter() - last), time.perf_counter()

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    merges = [ev("identify", "victim", anon=f"m{i}", traits={}) for i in range(n)]
    assert (await post(c, merges)).status_code == 202
    stop.set()
    await task
    assert worst[0] < 0.25


@embedded
async def test_a_put_after_an_alias_does_not_split_the_user(c: Client) -> None:
    await c.put("/v1/profiles/old-u", json={"first_name": "Old"}, headers=AUTH)
    body = {"messageId": "ak", "previousId": "old-u", "userId": "new-u"}
    assert (await c.post("/segment/v1/alias", json=body, headers=AUTH)).status_code == 200
    put = await c.put("/v1/profiles/old-u", json={"first_name": "Again"}, headers=AUTH)
    await post(c, ev("add_to_cart", "old-u", sku="S9"))
    old = await profile(c, "old-u")
    assert put.status_code == 409 and put.json()["error"]["code"] == "merged_into_another"
    assert old is None  # the cart went to new-u, where the profile lives


@on_redis
async def test_a_merge_is_bounded_work_for_redis(c: Client, rc: redis.Redis) -> None:
    for r in range(3):
        events = [
            ev("page_view", anon="heavy", eid=f"{r}-{i}-".ljust(100, "x")) for i in range(5000)
        ]
        assert (await post(c, events)).json()["accepted"] == 5000
    rc.config_set("slowlog-log-slower-than", 0)
    rc.slowlog_reset()
    try:
        await alias(c, "heavy", "u-heavy")
        entries = rc.slowlog_get(1000)
    finally:
        rc.config_set("slowlog-log-slower-than", 10000)
    more = [int(n) for e in entries for n in re.findall(rb"\((\d+) more bytes\)", e["command"])]
    assert max(more, default=0) < 1_000_000  # one argument of 1.8 MB today


# --- storms and a failing store --------------------------------------------------------------


async def test_a_storm_of_merges_applies_each_event_once(c: Client) -> None:
    rng = random.Random(7)
    anons, users = [f"sa{i}" for i in range(4)], [f"su{i}" for i in range(2)]

    def event() -> Json:
        a, n = rng.choice(anons), rng.randrange(150)
        if n < 15:
            return ev("identify", rng.choice(users), anon=a, eid=f"id-{n}", traits={})
        return ev("custom:x", anon=a, eid=f"e-{a}-{n}")

    async def poster(events: list[Json]) -> None:
        while (r := await post(c, events)).status_code != 202:  # a client retries 503s
            assert (r.status_code, r.headers["Retry-After"]) == (503, "1"), r.text

    batches = [[event() for _ in range(20)] for _ in range(30)]
    await asyncio.gather(*(poster(batch) for batch in batches))
    stored = Counter[str]()
    for reader, anonymous in [(u, False) for u in users] + [(a, True) for a in anons]:
        stored.update((await profile(c, reader, anonymous=anonymous) or {}).get("counters", {}))
    # Each anonymous event id once wherever its reader went; each identify once per user.
    posted = {(e.get("user_id"), e["event_id"]) for batch in batches for e in batch}
    assert stored["custom:x"] == sum(1 for user, _ in posted if user is None)
    assert stored["identify"] == sum(1 for user, _ in posted if user is not None)


@on_redis
async def test_a_paused_or_absent_redis_is_503_and_a_retry_lands_once(
    open_app: Open, rc: redis.Redis, settings: Callable[..., Settings]
) -> None:
    async with open_app(KAIROS_REDIS_TIMEOUT_MS=100) as client:
        events = [ev("custom:x", f"p{i % 5}", eid=f"p-{i}") for i in range(200)]
        rc.client_pause(600)
        statuses: list[int] = []
        while not statuses or statuses[-1] != 202:
            assert len(statuses) < 100
            r = await post(client, events)
            statuses.append(r.status_code)
            assert r.status_code == 202 or r.headers["Retry-After"] == "1", r.text
            await asyncio.sleep(0.05)
        assert statuses[0] == 503 and set(statuses) == {503, 202}
        found = [await profile(client, f"p{i}") or {} for i in range(5)]
        assert sum(sum(p.get("counters", {}).values()) for p in found) == 200
    down = create_app(
        settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}", KAIROS_WRITE_KEYS=WRITE_KEY)
    )
    async with serve(cast(Any, down)) as client:
        segment = {"messageId": "m", "userId": "x", "event": "e"}
        for path, body in (("/v1/events", ev("page_view", "x")), ("/segment/v1/track", segment)):
            r = await client.post(path, json=body, headers=WRITE)
            assert (r.status_code, r.headers["Retry-After"]) == (503, "1")


# --- CORS and logs ---------------------------------------------------------------------------

ORIGINS = [
    (None, 403), ("null", 403), ("*", 403), ("https://evil.example", 403),
    ("https://shop.example.com.evil.com", 403), ("https://shop.example.com", 204),
    ("https://SHOP.example.com/", 204),
]  # fmt: skip


@embedded
async def test_preflight_with_an_origin_list(open_app: Open) -> None:
    async with open_app(KAIROS_EVENT_ORIGINS="https://shop.example.com") as client:
        for origin, status in ORIGINS:
            for path in ("/v1/events", "/segment/v1/batch"):
                r = await client.options(path, headers={"Origin": origin} if origin else {})
                assert r.status_code == status, origin
                assert ("access-control-allow-origin" in r.headers) is (status == 204)


@embedded
async def test_an_erasure_does_not_log_the_erased_id(
    c: Client, caplog: pytest.LogCaptureFixture
) -> None:
    await post(c, ev("page_view", "erasee-4711"))
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert (await c.delete("/v1/profiles/erasee-4711", headers=AUTH)).status_code == 204
    assert (await c.delete("/v1/suppressions/erasee-4711", headers=AUTH)).status_code == 204
    server = [r.getMessage() for r in caplog.records if r.name.startswith("kairos")]
    assert server and not [line for line in server if "erasee-4711" in line]
