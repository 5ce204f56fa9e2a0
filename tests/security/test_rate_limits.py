"""Rate limits per API key and per write key, on the embedded store and on a real
redis-server: a key at its limit, over it (429 `rate_limited`, `Retry-After` and the
RateLimit-* fields with their values), refilled with time, keys and families apart, one
budget for two server processes on one Redis, a Redis that stops answering (fail open,
counted), the open-time routes never limited, and no key in any Redis key name or
command."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from starlette.applications import Starlette
from support import (
    API_KEY,
    AUTH,
    TOKENS,
    KairosProcess,
    RedisServer,
    assert_error,
    feed_url,
    image_url,
    process_env,
    serve,
)

from app.app import create_app
from app.cli import main
from app.ratelimit import US
from app.stores.bundle import embedded_stores
from app.stores.memory_rates import MemoryRates

OTHER_KEY = "test-api-key-other-98765"
WRITE_KEY = "test-write-key-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
FIELDS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy")
LIMITED_ROUTES = (
    ("GET", "/v1/segments", None),
    ("GET", "/v1/templates", None),
    ("POST", "/v1/render", {"template": "welcome", "user_id": "ada"}),
    ("GET", "/v1/profiles/ada", None),
    ("GET", "/v1/blocks", None),
    ("GET", "/v1/campaigns/spring/stats", None),  # 404: nothing counted for it yet
)


class Clock:
    """Microseconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000 * US

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += round(seconds * US)


Make = Callable[..., Starlette]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make(settings: Any, backend: str, clock: Clock, request: pytest.FixtureRequest) -> Make:
    """An app on `backend` with these settings: embedded with the test's clock, or on
    the session's redis-server (flushed), on Redis's own clock."""

    def build(**env: Any) -> Starlette:
        env.setdefault("KAIROS_API_KEYS", f"{API_KEY},{OTHER_KEY}")
        env.setdefault("KAIROS_WRITE_KEYS", WRITE_KEY)
        env.setdefault("KAIROS_DEMO_DATA", "true")
        if backend == "embedded":
            stores = dataclasses.replace(embedded_stores(), rates=MemoryRates(clock))
            return create_app(settings(**env), stores=stores)
        return create_app(settings(REDIS_URL=request.getfixturevalue("redis_url"), **env))

    return build


@pytest.fixture
async def client(make: Make) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app with 3 API requests and 2 events requests a second per key."""
    async with serve(make(KAIROS_RATE_API=3, KAIROS_RATE_EVENTS=2)) as c:
        yield c


def fields(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in FIELDS if name in response.headers}


def allowed(limit: int, remaining: int) -> dict[str, str]:
    """The fields of an answer counted with `remaining` left of a full `limit` a second
    (the bucket is full again within the second: Reset 1)."""
    return {
        "ratelimit-limit": str(limit),
        "ratelimit-remaining": str(remaining),
        "ratelimit-reset": "1",
        "ratelimit-policy": f"{limit};w=1",
    }


def assert_refused(response: httpx.Response, limit: int) -> None:
    error = assert_error(response, 429, "rate_limited")
    assert response.headers["retry-after"] == "1"
    assert fields(response) == allowed(limit, 0)
    assert response.headers["cache-control"] == "no-store"
    assert f"{limit} requests a second" in error["message"]
    for key in (API_KEY, OTHER_KEY, WRITE_KEY):
        assert key not in response.text


async def call(
    client: httpx.AsyncClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    return await client.request(method, path, json=body, headers=headers)


# --- at the limit, over it, refilled ----------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), LIMITED_ROUTES)
async def test_an_api_key_gets_its_limit_then_429_with_the_fields(
    client: httpx.AsyncClient, method: str, path: str, body: Any
):
    for remaining in (2, 1, 0):
        r = await call(client, method, path, body, AUTH)
        # An error after the count carries the fields too (the campaign's 404).
        assert r.status_code in (200, 404), r.text
        assert fields(r) == allowed(3, remaining)
    for _ in range(3):
        assert_refused(await call(client, method, path, body, AUTH), 3)


async def test_every_api_route_shares_the_key_s_one_budget(client: httpx.AsyncClient):
    for method, path, body in LIMITED_ROUTES[:3]:
        assert (await call(client, method, path, body, AUTH)).status_code == 200
    for method, path, body in LIMITED_ROUTES:
        assert_refused(await call(client, method, path, body, AUTH), 3)


async def test_a_render_batch_counts_once_and_streams_with_the_fields(
    client: httpx.AsyncClient,
):
    lines = b"".join(b'{"template": "welcome", "user_id": "ada"}\n' for _ in range(5))
    headers = {**AUTH, "Content-Type": "application/x-ndjson"}
    r = await client.post("/v1/render/batch", content=lines, headers=headers)
    assert r.status_code == 200
    assert len(r.text.splitlines()) == 5
    assert fields(r) == allowed(3, 2)


SEGMENT_BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
TRACK = {"type": "track", "userId": "ada", "event": "Viewed", "messageId": "m-{n}"}


def native(n: int) -> tuple[str, Any, dict[str, str]]:
    event = {"event_id": f"rl-{n}", "user_id": "ada", "type": "page_view", "url": "/"}
    return "/v1/events", event, WRITE


def segment_header(n: int) -> tuple[str, Any, dict[str, str]]:
    return "/segment/v1/track", {**TRACK, "messageId": f"h-{n}"}, SEGMENT_BASIC


def segment_body(n: int) -> tuple[str, Any, dict[str, str]]:
    return "/segment/v1/track", {**TRACK, "messageId": f"b-{n}", "writeKey": WRITE_KEY}, {}


@pytest.mark.parametrize("post", [native, segment_header, segment_body])
async def test_a_write_key_gets_its_limit_then_429_on_each_dialect(
    client: httpx.AsyncClient, post: Callable[[int], tuple[str, Any, dict[str, str]]]
):
    for n, remaining in enumerate((1, 0)):
        path, body, headers = post(n)
        r = await client.post(path, json=body, headers=headers)
        assert r.status_code in (200, 202), r.text
        assert fields(r) == allowed(2, remaining)
    path, body, headers = post(9)
    assert_refused(await client.post(path, json=body, headers=headers), 2)


async def test_a_page_s_script_may_read_the_fields_of_events_answers(
    client: httpx.AsyncClient,
):
    page = {**WRITE, "Origin": "https://shop.example.com"}
    for status in (202, 202, 429):
        r = await client.post("/v1/events", json={"events": []}, headers=page)
        assert r.status_code == status
        assert r.headers["access-control-allow-origin"] == "*"
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert exposed == {"retry-after", *FIELDS}


async def test_the_dialects_share_the_write_key_s_budget(client: httpx.AsyncClient):
    for post in (native, segment_body):
        path, body, headers = post(1)
        assert (await client.post(path, json=body, headers=headers)).status_code in (200, 202)
    path, body, headers = segment_header(1)
    assert_refused(await client.post(path, json=body, headers=headers), 2)


async def test_a_refused_events_request_applies_nothing(
    client: httpx.AsyncClient, backend: str, clock: Clock
):
    for n in range(2):
        path, body, headers = native(n)
        await client.post(path, json=body, headers=headers)
    event = {"event_id": "rl-over", "user_id": "ada", "type": "page_view", "url": "/x"}
    assert_refused(await client.post("/v1/events", json=event, headers=WRITE), 2)
    if backend == "embedded":
        clock.advance(0.5)
    else:
        await asyncio.sleep(0.5)
    # The same event again, once there is room: new, not a duplicate of the refused one.
    r = await client.post("/v1/events", json=event, headers=WRITE)
    assert r.status_code == 202, r.text
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 0)


async def test_unknown_keys_are_401_and_count_for_no_one(client: httpx.AsyncClient):
    for _ in range(10):
        r = await client.get("/v1/segments", headers={"Authorization": "Bearer not-a-key-0000"})
        assert_error(r, 401)
        assert not fields(r)
        r = await client.post("/v1/events", json={"events": []}, headers={"Authorization": "x"})
        assert_error(r, 401)
    r = await client.get("/v1/segments", headers=AUTH)
    assert fields(r) == allowed(3, 2)


async def test_the_bucket_refills_with_time(make: Make, backend: str, clock: Clock):
    async def wait(seconds: float) -> None:
        if backend == "embedded":
            clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    # 4 a second: one more every 250 ms, a full bucket after a second.
    async with serve(make(KAIROS_RATE_API=4)) as c:
        for remaining in (3, 2, 1, 0):
            assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(4, remaining)
        assert_refused(await c.get("/v1/segments", headers=AUTH), 4)
        await wait(0.26)
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(4, 0)
        assert_refused(await c.get("/v1/segments", headers=AUTH), 4)
        await wait(1.01)
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(4, 3)


async def test_exact_refill_on_the_embedded_clock(settings: Any, clock: Clock):
    stores = dataclasses.replace(embedded_stores(), rates=MemoryRates(clock))
    async with serve(create_app(settings(KAIROS_RATE_API=10), stores=stores)) as c:
        for remaining in range(9, -1, -1):
            assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(10, remaining)
        clock.advance(0.0999)  # one interval (100 ms) not quite past
        assert_refused(await c.get("/v1/segments", headers=AUTH), 10)
        clock.advance(0.0001)
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(10, 0)
        clock.advance(0.35)  # three more, and half of one
        for remaining in (2, 1, 0):
            assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(10, remaining)
        assert_refused(await c.get("/v1/segments", headers=AUTH), 10)
        clock.advance(60)  # idle: a full bucket, never more
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(10, 9)


# --- apart: keys, families, settings ---------------------------------------------------


async def test_two_keys_have_their_own_budgets(client: httpx.AsyncClient):
    other = {"Authorization": f"Bearer {OTHER_KEY}"}
    for _ in range(3):
        await client.get("/v1/segments", headers=AUTH)
    assert_refused(await client.get("/v1/segments", headers=AUTH), 3)
    for remaining in (2, 1, 0):
        assert fields(await client.get("/v1/segments", headers=other)) == allowed(3, remaining)
    assert_refused(await client.get("/v1/segments", headers=other), 3)


async def test_an_api_key_s_events_are_a_budget_apart_from_its_api_calls(
    client: httpx.AsyncClient,
):
    for _ in range(3):
        await client.get("/v1/segments", headers=AUTH)
    assert_refused(await client.get("/v1/segments", headers=AUTH), 3)
    r = await client.post("/v1/events", json={"events": []}, headers=AUTH)
    assert r.status_code == 202
    assert fields(r) == allowed(2, 1)


async def test_zero_turns_a_family_s_limit_off(make: Make):
    async with serve(make(KAIROS_RATE_API=0, KAIROS_RATE_EVENTS=1)) as c:
        for _ in range(30):
            r = await c.get("/v1/segments", headers=AUTH)
            assert r.status_code == 200
            assert not fields(r)
        assert (await c.post("/v1/events", json={"events": []}, headers=WRITE)).status_code == 202
        assert_refused(await c.post("/v1/events", json={"events": []}, headers=WRITE), 1)


async def test_the_metrics_count_refusals_per_family(client: httpx.AsyncClient):
    for _ in range(5):
        await client.get("/v1/segments", headers=AUTH)
    for _ in range(3):
        await client.post("/v1/events", json={"events": []}, headers=WRITE)
    text = (await client.get("/metrics")).text
    assert 'kairos_rate_limited_total{family="api"} 2.0' in text
    assert 'kairos_rate_limited_total{family="events"} 1.0' in text
    assert 'kairos_rate_limit_fail_open_total{family="api"} 0.0' in text
    assert 'kairos_requests_total{method="GET",route="/v1/segments",status="429"} 2.0' in text


# --- open time: never limited ------------------------------------------------------------


def open_time_paths() -> list[str]:
    click = TOKENS.sign("click", "ada", "https://shop.example.com/lamp", campaign="spring")
    pixel = TOKENS.sign("pixel", "ada", "open", campaign="spring")
    unsubscribe = TOKENS.sign("unsubscribe", "ada", "email")
    return [
        feed_url("cart", "ada"),
        feed_url("profile", "ada"),
        image_url("countdown", "ada", deadline="2099-12-24T23:59:59Z", frames=1),
        image_url("banner", "ada"),
        f"/v1/px/{pixel}.gif",
        f"/c/{click}",
        f"/v1/unsubscribe/{unsubscribe}",
        "/healthz",
        "/readyz",
    ]


async def test_a_burst_on_open_time_routes_is_never_429(make: Make):
    async with serve(make(KAIROS_RATE_API=1, KAIROS_RATE_EVENTS=1)) as c:
        for path in open_time_paths():
            # With or without a key: a mail client sends none, a proxy might send one.
            for headers in ({}, AUTH, WRITE):
                answers = await asyncio.gather(*(c.get(path, headers=headers) for _ in range(40)))
                statuses = {r.status_code for r in answers}
                assert statuses <= {200, 302, 303}, (path, statuses)
                assert not any(fields(r) for r in answers), path
        text = (await c.get("/metrics")).text
        assert 'kairos_rate_limited_total{family="api"} 0.0' in text
        assert 'kairos_rate_limited_total{family="events"} 0.0' in text
        # the limits were there all along
        assert (await c.get("/v1/segments", headers=AUTH)).status_code == 200
        assert_refused(await c.get("/v1/segments", headers=AUTH), 1)


# --- Redis: no key in names or commands, fail open, one budget for two processes --------


async def test_redis_names_buckets_by_a_keyed_hash_and_no_command_carries_a_key(
    settings: Any, redis_url: str, redis_client: redis.Redis, redis_server: RedisServer
):
    app = create_app(
        settings(
            REDIS_URL=redis_url,
            KAIROS_WRITE_KEYS=WRITE_KEY,
            KAIROS_RATE_API=1,  # a bucket lives as long as it is not full: 1 s here
            KAIROS_RATE_EVENTS=2,
        )
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_server.port)
    try:
        writer.write(b"MONITOR\r\n")
        assert await reader.readline() == b"+OK\r\n"
        async with serve(app) as c:
            assert (await c.get("/v1/segments", headers=AUTH)).status_code == 200
            r = await c.post("/v1/events", json={"events": []}, headers=WRITE)
            assert r.status_code == 202
            segment = {**TRACK, "messageId": "m-1", "writeKey": WRITE_KEY}
            assert (await c.post("/segment/v1/track", json=segment)).status_code == 200
            names = sorted(k.decode() for k in redis_client.keys("kairos:rate:*"))
        await asyncio.sleep(0.1)
        seen = b""
        while True:
            try:
                seen += await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                break
    finally:
        writer.close()
    assert [n.rsplit(":", 1)[0] for n in names] == ["kairos:rate:api", "kairos:rate:events"]
    assert all(len(n.rsplit(":", 1)[1]) == 32 for n in names)
    plain = {
        hashlib.blake2b(k.encode(), digest_size=16).hexdigest() for k in (API_KEY, WRITE_KEY)
    }
    assert not plain & {n.rsplit(":", 1)[1] for n in names}  # keyed, not a bare hash
    assert b"EVALSHA" in seen and b"kairos:rate:api:" in seen
    every_name = b" ".join(redis_client.keys("*"))
    for key in (API_KEY, WRITE_KEY):
        for part in (key, key[:12], key[-12:]):
            assert part.encode() not in seen, part
            assert part.encode() not in every_name, part


async def test_buckets_expire_once_full_again(
    settings: Any, redis_url: str, redis_client: redis.Redis
):
    async with serve(create_app(settings(REDIS_URL=redis_url, KAIROS_RATE_API=50))) as c:
        await c.get("/v1/segments", headers=AUTH)
    [name] = redis_client.keys("kairos:rate:api:*")
    assert 0 < redis_client.pttl(name) <= 20  # one interval of 50 a second: 20 ms
    await asyncio.sleep(0.05)
    assert redis_client.keys("kairos:rate:*") == []


async def test_a_stale_bucket_gives_a_full_burst_never_more(
    settings: Any, redis_url: str, redis_client: redis.Redis
):
    app = create_app(settings(REDIS_URL=redis_url, KAIROS_RATE_API=3))
    # A bucket whose time is long past (written by hand, without its expiry): the
    # script holds it at now, as the embedded store does.
    seconds, micros = redis_client.time()
    name = app.state.services.limits.bucket("api", API_KEY.encode())
    redis_client.set(name, (seconds - 60) * US + micros)
    async with serve(app) as c:
        for remaining in (2, 1, 0):
            assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(3, remaining)
        assert_refused(await c.get("/v1/segments", headers=AUTH), 3)
        # Kept to the microsecond: whole digits, a second ahead of Redis's clock.
        raw = redis_client.get(name)
        seconds, micros = redis_client.time()
        assert raw is not None and raw.isdigit(), raw
        assert 0 < int(raw) - (seconds * US + micros) <= US


async def test_a_flushed_script_cache_is_reloaded(
    settings: Any, redis_url: str, redis_client: redis.Redis
):
    async with serve(create_app(settings(REDIS_URL=redis_url, KAIROS_RATE_API=3))) as c:
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(3, 2)
        redis_client.script_flush()
        assert fields(await c.get("/v1/segments", headers=AUTH)) == allowed(3, 1)


async def test_redis_down_fails_open_and_is_counted(settings: Any, own_redis: RedisServer):
    app = create_app(
        settings(
            REDIS_URL=own_redis.url,
            KAIROS_WRITE_KEYS=WRITE_KEY,
            KAIROS_RATE_API=2,
            KAIROS_RATE_EVENTS=1,
            KAIROS_REDIS_TIMEOUT_MS=200,
        )
    )
    async with serve(app) as c:
        for _ in range(2):
            assert (await c.get("/v1/templates", headers=AUTH)).status_code == 200
        assert_refused(await c.get("/v1/templates", headers=AUTH), 2)
        own_redis.stop()
        # Served, without fields (nothing was counted); the breaker opens on the way.
        for _ in range(12):
            r = await c.get("/v1/templates", headers=AUTH)
            assert r.status_code == 200, r.text
            assert not fields(r)
        # The events route needs the store itself: 503 (retry later), never 429.
        for _ in range(3):
            r = await c.post("/v1/events", json={"events": [native(1)[1]]}, headers=WRITE)
            assert_error(r, 503, "store_unavailable")
        text = (await c.get("/metrics")).text
        assert 'kairos_rate_limit_fail_open_total{family="api"} 12.0' in text
        assert 'kairos_rate_limit_fail_open_total{family="events"} 3.0' in text
        assert 'kairos_rate_limited_total{family="api"} 1.0' in text
        own_redis.start()  # empty: no persistence, every bucket full
        deadline = time.monotonic() + 8
        while not fields(r := await c.get("/v1/templates", headers=AUTH)):
            assert time.monotonic() < deadline, "the limits did not come back with Redis"
            await asyncio.sleep(0.1)
        assert fields(r) == allowed(2, 1)


@pytest.fixture(scope="module")
def two_servers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[KairosProcess, KairosProcess]]:
    tmp = tmp_path_factory.mktemp("rate-servers")
    env = process_env(tmp, redis_server.url, WRITE_KEY)
    env.update(KAIROS_RATE_API="4", KAIROS_RATE_EVENTS="3")
    started = [KairosProcess(name, env, tmp) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 30
        for server in started:
            server.wait_ready(deadline)
        yield started[0], started[1]
    finally:
        for server in started:
            server.stop()


@pytest.mark.parametrize(
    ("path", "headers", "limit"),
    [("/v1/segments", AUTH, 4), ("/v1/events", WRITE, 3)],
    ids=["api", "events"],
)
def test_two_processes_on_one_redis_share_one_budget(
    two_servers: tuple[KairosProcess, KairosProcess],
    redis_client: redis.Redis,
    path: str,
    headers: dict[str, str],
    limit: int,
):
    a, b = two_servers
    with httpx.Client(timeout=5) as http:

        def send(server: KairosProcess) -> httpx.Response:
            if path == "/v1/events":
                return http.post(server.base + path, json={"events": []}, headers=headers)
            return http.get(server.base + path, headers=headers)

        # Alternating between the two, within one interval (250 ms or more).
        started = time.monotonic()
        answers = [send((a, b)[i % 2]) for i in range(limit + 2)]
        elapsed = time.monotonic() - started
    assert elapsed < 0.25, f"too slow to test a shared budget: {elapsed:.3f} s"
    for remaining, r in zip(range(limit - 1, -1, -1), answers, strict=False):
        assert r.status_code < 400, r.text
        assert fields(r) == allowed(limit, remaining)
    for r in answers[limit:]:
        assert_refused(r, limit)
    # refused by both servers: each sees the other's requests
    assert {answers[limit].url.port, answers[limit + 1].url.port} == {a.port, b.port}


# --- the OpenAPI description says which operations are limited ------------------------

PATH_VALUES = {"user_id": "ada", "template": "welcome", "campaign": "spring"}
DOCUMENTED_FIELDS = {
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
}


async def test_429_is_documented_on_exactly_the_operations_that_answer_it(settings: Any):
    app = create_app(settings(KAIROS_RATE_API=1, KAIROS_RATE_EVENTS=1))
    doc = (await _openapi(app))["paths"]
    checked = 0
    async with serve(app) as c:
        # Both of the key's budgets spent: a limited route answers 429 before anything else.
        await c.get("/v1/templates", headers=AUTH)
        await c.post("/v1/events", json={"events": []}, headers=AUTH)
        for route in app.router.routes:
            path = getattr(route, "path", "")
            if path == "/designer/events":
                continue  # a stream of server-sent events: it never ends by itself
            for method in sorted(getattr(route, "methods", ()) - {"HEAD", "OPTIONS"}):
                url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m[1], "x"), path)
                body = {} if method in ("POST", "PUT", "PATCH") else None
                r = await c.request(method, url, json=body, headers=AUTH)
                documented = doc[path][method.lower()]["responses"]
                assert (r.status_code == 429) == ("429" in documented), (method, path, r.text)
                if r.status_code == 429:
                    assert r.headers["ratelimit-policy"] == "1;w=1"
                    assert set(documented["429"]["headers"]) == DOCUMENTED_FIELDS
                checked += 1
    assert checked > 30


async def _openapi(app: Starlette) -> dict[str, Any]:
    async with serve(app) as c:
        doc: dict[str, Any] = (await c.get("/openapi.json")).json()
    return doc


def test_kairos_import_through_a_limited_server_waits_and_loses_nothing(
    two_servers: tuple[KairosProcess, KairosProcess],
    redis_client: redis.Redis,
    clean_environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    a, _ = two_servers  # 4 API requests and 3 events requests a second per key
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    profiles = tmp_path / "profiles.jsonl"
    rows = [{"user_id": f"rl{i}", "loyalty_points": i} for i in range(10)]
    profiles.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    started = time.monotonic()
    assert main(["import", "profiles", str(profiles), "--server", a.base]) == 0
    # 10 at 4 a second: the first 4 at once, then one every 250 ms, 429s waited out.
    assert time.monotonic() - started > 1.0
    assert "imported 10, rejected 0" in capsys.readouterr().out
    assert orjson.loads(redis_client.get("kairos:{rl9}:profile"))["loyalty_points"] == 9

    for _ in range(3):  # the key's events budget spent
        httpx.post(f"{a.base}/v1/events", json={"events": []}, headers=AUTH)
    events = tmp_path / "events.jsonl"
    event = {"event_id": "rl-cli-1", "user_id": "rl1", "type": "page_view", "url": "/"}
    events.write_bytes(orjson.dumps(event) + b"\n")
    assert main(["import", "events", str(events), "--server", a.base]) == 0
    assert capsys.readouterr().out.startswith("accepted 1, duplicates 0")
