"""Redis failing under a real Kairos process (real HTTP over loopback): down at start-up,
killed mid-traffic, black-holed (a listener that accepts and never answers). Open-time
routes answer their fallbacks, never a 5xx; ingest answers 503 with Retry-After, never a
500; the circuit breaker shows in /metrics and /readyz; and service comes back once
Redis does, without a restart. Then our own connection code against a real redis-server
made slow: commands cancelled mid-flight leave no reply behind for the next caller (the
redis-py cancellation bug class, CVE-2023-28858/28859), and a cancelled breaker probe
does not leave the breaker shut for good."""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    AUTH,
    TOKENS,
    BlackHole,
    KairosProcess,
    RedisServer,
    assert_error,
    fallback_body,
    feed_url,
    free_port,
    image_url,
    process_env,
)

from app.errors import StoreUnavailable
from app.metrics import Metrics
from app.stores.redis.breaker import Breaker
from app.stores.redis.connection import RedisConnection
from app.stores.redis.keys import CATALOG_KEY, CHANGES_CHANNEL

WRITE_KEY = "test-write-key-faults-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
TIMEOUT_MS = 200  # KAIROS_REDIS_TIMEOUT_MS
BUDGET_MS = 100  # KAIROS_BUDGET_MS: shorter, so open-time calls are cut mid-flight
SLACK_S = 0.4  # a shared 2-CPU machine: what a request may take beyond its bound
READERS = tuple(f"fault-{i}" for i in range(6))
SHOP = "https://shop.example.com/"
PRODUCT = {
    "sku": "SKU-F1",
    "title": "Desk lamp",
    "price": 39.0,
    "currency": "EUR",
    "url": "https://shop.example.com/p/SKU-F1",
}


def start(tmp: Path, redis_url: str, name: str) -> KairosProcess:
    env = process_env(tmp, redis_url, WRITE_KEY)
    env.update(
        KAIROS_REDIS_TIMEOUT_MS=str(TIMEOUT_MS),
        KAIROS_BUDGET_MS=str(BUDGET_MS),
        KAIROS_STORE_RETRY_MS="100",
        # Short: opens go back to the store, and through its outage to the stale copies.
        KAIROS_CACHE_TTL_MS="200",
    )
    return KairosProcess(name, env, tmp)


def seed(base: str) -> None:
    """Readers with a profile and a recommendation (product images read picks and the
    catalog: calls the request's budget cuts; `seed_catalog` puts the product there)."""
    with httpx.Client(base_url=base, timeout=5) as client:
        for user in READERS:
            doc = {"first_name": "Ada", "recommendations": [{"sku": PRODUCT["sku"]}]}
            r = client.put(f"/v1/profiles/{user}", json=doc, headers=AUTH)
            assert r.status_code in (200, 201), r.text


def seed_catalog(server: RedisServer) -> None:
    with server.client() as direct:
        direct.hset(CATALOG_KEY, PRODUCT["sku"], orjson.dumps(PRODUCT))


def event(user: str) -> dict[str, Any]:
    return {"event_id": f"f-{uuid.uuid4().hex}", "user_id": user, "type": "page_view"}


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of Traffic.KINDS
    started: float  # time.monotonic()
    elapsed: float
    status: int | None  # None: no answer at all (a transport error)
    response: httpx.Response | None


class Traffic:
    """Threads that loop over feeds, product images, events (one a request), clicks on
    a recommendation slot and open pixels against `base` until the block ends, keeping
    every outcome."""

    KINDS = ("feed", "image", "events", "click", "pixel")

    def __init__(self, base: str, threads: int = 3) -> None:
        self.base = base
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def of(self, kind: str, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind and since <= o.started < until]

    def _run(self, n: int) -> None:
        rng = random.Random(n)
        with httpx.Client(base_url=self.base, timeout=10, follow_redirects=False) as client:
            i = n
            while not self._stop.is_set():
                kind, user = self.KINDS[i % len(self.KINDS)], rng.choice(READERS)
                i += 1
                started = time.monotonic()
                try:
                    if kind == "feed":
                        feed = rng.choice(("profile", "cart", "recommendations"))
                        r = client.get(feed_url(feed, user))
                    elif kind == "image":
                        r = client.get(image_url("product", user, slot=0))
                    elif kind == "click":
                        # Slot 0's remembered product, else the signed page.
                        token = TOKENS.sign("click", user, SHOP, params={"slot": 0})
                        r = client.get(f"/c/{token}")
                    elif kind == "pixel":
                        r = client.get(f"/v1/px/{TOKENS.sign('pixel', user, 'open')}.gif")
                    else:
                        r = client.post("/v1/events", json=event(user), headers=WRITE)
                    status: int | None = r.status_code
                    response: httpx.Response | None = r
                except httpx.TransportError:
                    status, response = None, None
                elapsed = time.monotonic() - started
                self.outcomes.append(Outcome(kind, started, elapsed, status, response))
                time.sleep(0.005)


def metrics_of(base: str) -> dict[str, float]:
    """The samples of /metrics without labels, by name."""
    return samples_of(httpx.get(f"{base}/metrics", timeout=5).text)


def samples_of(exposition: bytes | str) -> dict[str, float]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.labels
    }


def readyz(base: str) -> httpx.Response:
    return httpx.get(f"{base}/readyz", timeout=5)


def wait_until_ready(server: KairosProcess, within_s: float) -> float:
    """Seconds until /readyz says ready with the breaker closed; fails past `within_s`."""
    started = time.monotonic()
    while True:
        r = readyz(server.base)
        if r.status_code == 200 and r.json()["store"]["breaker"] == "closed":
            return time.monotonic() - started
        assert time.monotonic() - started < within_s, f"not ready again: {r.text}"
        time.sleep(0.05)


def wait_until_following(server: RedisServer, within_s: float) -> None:
    """Until a Kairos process listens on the change channel again (other servers'
    writes reach its cache only through it)."""
    deadline = time.monotonic() + within_s
    with server.client() as direct:
        while direct.pubsub_numsub(CHANGES_CHANNEL)[0][1] < 1:
            assert time.monotonic() < deadline, "the change follower did not come back"
            time.sleep(0.05)


def assert_ingest_refused(r: httpx.Response) -> None:
    """503 with the JSON error and a Retry-After a client can act on."""
    assert_error(r, 503, "store_unavailable")
    retry_after = r.headers["retry-after"]
    assert retry_after.isascii() and retry_after.isdigit() and int(retry_after) >= 1


def assert_open_time_held(traffic: Traffic) -> None:
    """Every feed, image and pixel answered 200 (data or fallback), every click its
    redirect: none a 5xx or no answer."""
    for kind, status in (("feed", 200), ("image", 200), ("pixel", 200), ("click", 302)):
        statuses = sorted({o.status or 0 for o in traffic.of(kind)})
        assert statuses == [status], (kind, statuses)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[Any]]:
    """What a test started, stopped at its end (Kairos first)."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for server in reversed(started):
            server.stop()


# What needs the store and says so: 503 with Retry-After, never a 500.
STORE_CALLS = (
    ("PUT", "/v1/profiles/late-redis", {"first_name": "Ada"}),
    ("PATCH", "/v1/profiles/late-redis", {"first_name": "Ada"}),
    ("GET", "/v1/profiles/late-redis", None),
    ("DELETE", "/v1/profiles/late-redis", None),
    ("GET", "/v1/segments", None),
    ("GET", "/v1/campaigns/spring/stats", None),
    (
        "POST",
        "/segment/v1/batch",
        {"batch": [{"type": "track", "event": "X", "userId": "u", "messageId": "m"}]},
    ),
)


# --- down at start-up ---------------------------------------------------------------------


def test_redis_down_at_start_up_then_up(tmp_path: Path, servers: list[Any]) -> None:
    port = free_port()
    redis_server = RedisServer(tmp_path / "redis", port=port)
    kairos = start(tmp_path, redis_server.url, "down-at-start")
    servers.append(kairos)
    kairos.wait_ready(time.monotonic() + 20, "/healthz")

    r = readyz(kairos.base)
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["store"]["backend"] == "redis" and body["store"]["ok"] is False
    assert body["store"]["breaker"] in ("closed", "open", "half-open")

    with httpx.Client(base_url=kairos.base, timeout=5) as client:
        for feed in ("profile", "cart", "recommendations"):
            r = client.get(feed_url(feed, "ada"))
            assert r.status_code == 200, r.text
            assert r.headers["x-kairos-fallback"] == "store-unavailable"
            assert r.json() == fallback_body(feed)
        r = client.get(image_url("product", "ada", slot=0))
        assert r.status_code == 200
        assert r.headers["x-kairos-fallback"] == "store-unavailable"
        assert r.headers["content-type"] == "image/png"
        user = "late-redis"
        sent = [event(user) for _ in range(3)]
        r = client.post("/v1/events", json={"events": sent}, headers=WRITE)
        assert_ingest_refused(r)
        for method, path, body in STORE_CALLS:
            r = client.request(method, path, json=body, headers=AUTH)
            assert_ingest_refused(r)
        # A render at send time has its blocks' fallbacks for the reader's data.
        r = client.post("/v1/render", json={"template": "welcome", "user_id": user}, headers=AUTH)
        assert r.status_code == 200, r.text

        redis_server.start()
        servers.append(redis_server)
        wait_until_ready(kairos, within_s=6.0)  # the breaker's longest open time, and more
        wait_until_following(redis_server, within_s=3.0)
        r = client.post("/v1/events", json={"events": sent}, headers=WRITE)
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 3
        r = client.get(f"/v1/profiles/{user}", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["counters"] == {"page_view": 3}
        assert metrics_of(kairos.base)["kairos_redis_breaker_open"] == 0


# --- killed mid-traffic ---------------------------------------------------------------------


def test_redis_killed_mid_traffic_then_restarted(tmp_path: Path, servers: list[Any]) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    servers.append(redis_server)
    seed_catalog(redis_server)
    kairos = start(tmp_path, redis_server.url, "killed")
    servers.append(kairos)
    kairos.wait_ready(time.monotonic() + 20)
    seed(kairos.base)

    with Traffic(kairos.base) as traffic:
        time.sleep(0.6)
        assert redis_server.proc is not None
        redis_server.proc.kill()  # no goodbye: connections reset, then refused
        redis_server.proc.wait()
        killed = time.monotonic()
        time.sleep(1.0)
        redis_server.start()  # the same port, empty (no persistence)
        restarted = time.monotonic()
        took = wait_until_ready(kairos, within_s=6.0)
        time.sleep(0.5)  # traffic on the recovered server
        recovered = time.monotonic()

    assert_open_time_held(traffic)
    events = traffic.of("events")
    assert {o.status for o in events} <= {202, 503}, sorted({o.status or 0 for o in events})
    refused = [o for o in events if o.status == 503]
    assert refused, "Redis was down for a second and no events request noticed"
    for outcome in refused:
        assert outcome.response is not None
        assert_ingest_refused(outcome.response)
    # (A request sent just before the kill may reach Redis after it.)
    assert all(o.status == 202 for o in traffic.of("events", until=killed - 0.25))
    after = traffic.of("events", since=recovered - 0.4)
    assert after and all(o.status == 202 for o in after), [o.status for o in after]
    assert took < 6.0, f"ready {took:.2f}s after Redis restarted at {restarted:.2f}"
    wait_until_following(redis_server, within_s=3.0)


# --- black-holed -----------------------------------------------------------------------------


def test_redis_black_holed_then_replaced(tmp_path: Path, servers: list[Any]) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    seed_catalog(redis_server)
    kairos = start(tmp_path, redis_server.url, "black-holed")
    servers.append(kairos)
    try:
        kairos.wait_ready(time.monotonic() + 20)
        seed(kairos.base)
        with Traffic(kairos.base) as warm:
            time.sleep(0.3)  # the readers' profiles seen once: stale copies for the outage
        assert {o.status for o in warm.outcomes} <= {200, 202, 302}
    finally:
        redis_server.stop()

    with BlackHole(redis_server.port) as hole:
        with Traffic(kairos.base) as traffic:
            time.sleep(2.5)
            during = metrics_of(kairos.base)
            r = readyz(kairos.base)
        accepted = hole.accepted

    assert_open_time_held(traffic)
    bounds = (("feed", BUDGET_MS), ("image", BUDGET_MS), ("click", BUDGET_MS), ("pixel", 0))
    for kind, bound_ms in (*bounds, ("events", TIMEOUT_MS)):
        elapsed = [o.elapsed for o in traffic.of(kind)]
        assert len(elapsed) > 10, (kind, len(elapsed))
        # Each ends within its bound (the data budget, or Redis's timeout for a write).
        assert max(elapsed) < bound_ms / 1000 + SLACK_S, (kind, max(elapsed))
        assert statistics.median(elapsed) < bound_ms / 1000 + 0.05, (kind, elapsed)
    events = traffic.of("events")
    for outcome in events:
        assert outcome.response is not None
        assert_ingest_refused(outcome.response)
    # No retry storm: without the breaker every request timed out on a connection of
    # its own, dropped after (hundreds in these seconds); with it, the ones before it
    # opened and a probe now and then.
    requests = len(traffic.outcomes)
    assert accepted <= 40, f"{accepted} connections for {requests} requests"

    assert during["kairos_redis_breaker_open"] == 1
    assert during["kairos_redis_breaker_refused_total"] > 0
    assert during["kairos_redis_breaker_opened_total"] >= 1
    assert r.status_code == 503, r.text
    store = r.json()["store"]
    assert store.pop("breaker") in ("open", "half-open")
    assert store == {"backend": "redis", "ok": False}

    replacement = RedisServer(tmp_path / "redis-2", port=redis_server.port)
    replacement.start()
    servers.append(replacement)
    seed_catalog(replacement)
    with Traffic(kairos.base) as traffic:
        # Opens keep coming while Redis returns: their calls, cut by the budget, may be
        # the breaker's probe.
        wait_until_ready(kairos, within_s=6.0)
        time.sleep(0.3)
        back = time.monotonic()
        time.sleep(0.3)
    after = traffic.of("events", since=back)
    assert after and all(o.status == 202 for o in after), [o.status for o in after]
    assert_open_time_held(traffic)
    assert metrics_of(kairos.base)["kairos_redis_breaker_open"] == 0
    wait_until_following(replacement, within_s=3.0)


def test_the_breaker_is_reported_by_workers_sharing_their_numbers(tmp_path: Path) -> None:
    """With `kairos serve --workers N` every worker copies its numbers to a shared
    folder and a scrape merges them: the breaker's are among them."""
    now = [100.0]
    breaker = Breaker(threshold=1, open_s=0.5, clock=lambda: now[0])
    metrics = Metrics(tmp_path, breaker)
    try:
        assert samples_of(metrics.render())["kairos_redis_breaker_open"] == 0
        breaker.admit()
        breaker.failed()
        for _ in range(3):
            with pytest.raises(StoreUnavailable):
                breaker.admit()
        seen = samples_of(metrics.render())
        assert seen["kairos_redis_breaker_open"] == 1
        assert seen["kairos_redis_breaker_refused_total"] == 3
        assert seen["kairos_redis_breaker_opened_total"] == 1
        now[0] += 0.5
        assert breaker.admit()  # the probe
        breaker.succeeded()
        assert samples_of(metrics.render())["kairos_redis_breaker_open"] == 0
    finally:
        metrics.close()


# --- cancelled mid-flight --------------------------------------------------------------------

KEYS = 1000


def key(i: int) -> str:
    return f"kairos:test:cancel:{i}"


def value(i: int) -> bytes:
    return f"value-{i}-{'x' * (i % 37)}".encode()


async def read_one(connection: RedisConnection, i: int, way: int) -> list[Any]:
    """Key i's value (and its neighbour's) through one of our three paths."""
    j = (i + 1) % KEYS
    if way == 0:
        return await connection.pipelined([("GET", key(i)), ("GET", key(j))])
    if way == 1:
        return [await connection.call(connection.redis.get(key(i)))]
    return list(await connection.call(connection.redis.mget(key(i), key(j))))


def expected(i: int, way: int) -> list[bytes]:
    return [value(i)] if way == 1 else [value(i), value((i + 1) % KEYS)]


async def pauses(server: RedisServer, stop: asyncio.Event) -> int:
    """CLIENT PAUSE now and then from a client of its own: replies due when the
    readers' deadlines fall. The count of pauses."""
    count = 0
    with server.client() as direct:
        while not stop.is_set():
            await asyncio.to_thread(direct.execute_command, "CLIENT", "PAUSE", 15, "ALL")
            count += 1
            await asyncio.sleep(random.uniform(0.05, 0.15))
    return count


async def test_commands_cancelled_mid_flight_leave_no_reply_for_the_next(
    own_redis: RedisServer,
) -> None:
    server = own_redis
    connection = RedisConnection(server.url, timeout_s=2.0, pool_size=16)
    try:
        with server.client() as direct:
            direct.mset({key(i): value(i) for i in range(KEYS)})
        rng = random.Random(15)
        stop = asyncio.Event()
        pausing = asyncio.create_task(pauses(server, stop))
        finished = cancelled = 0

        async def chaos(i: int) -> None:
            nonlocal finished, cancelled
            way = rng.randrange(3)
            try:
                # Deadlines of 0-150 ms against pauses that last up to ~100 ms (Redis
                # lifts a pause on its 10 Hz cron): many land while the command is
                # written or its replies are due, on kept connections too.
                async with asyncio.timeout(rng.uniform(0, 0.15)):
                    got = await read_one(connection, i, way)
            except TimeoutError:
                cancelled += 1
                return
            assert got == expected(i, way), f"key {i}: cross-talk"
            finished += 1

        async def worker() -> None:
            # Back to back, more workers than connections: a connection given back by a
            # cancelled command goes at once to the next, its replies maybe still due.
            while loop.time() < until:
                await chaos(rng.randrange(KEYS))

        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        await asyncio.gather(*(worker() for _ in range(20)))
        stop.set()
        assert await pausing > 10
        assert cancelled > 100 and finished > 100, (cancelled, finished)

        # Then: commands cut while Redis holds their replies, and at once 1,000 reads on
        # every path, as many at a time as the pool allows: each its own key's value.
        with server.client() as direct:
            direct.execute_command("CLIENT", "PAUSE", 100, "ALL")
        cut = [asyncio.create_task(read_one(connection, i, i % 3)) for i in range(24)]
        await asyncio.sleep(0.03)
        for task in cut:
            task.cancel()
        await asyncio.gather(*cut, return_exceptions=True)

        async def read(i: int) -> None:
            way = i % 3
            assert await read_one(connection, i, way) == expected(i, way), f"key {i}"

        await asyncio.gather(*(read(i) for i in range(KEYS)))
        assert connection.breaker.state == "closed"
    finally:
        await connection.close()


async def test_a_probe_cut_by_its_callers_deadline_lets_the_next_probe_go(
    own_redis: RedisServer,
) -> None:
    """Open-time reads run under the request's budget (`asyncio.timeout_at`), shorter
    than Redis's timeout: the half-open breaker's one probe may be such a call, cut
    before any answer. The breaker must let another call probe later, or it stays
    open, and Redis unused, for good."""
    server = own_redis
    connection = RedisConnection(server.url, timeout_s=0.2, pool_size=8)
    try:
        breaker = connection.breaker
        with server.client() as direct:
            # (Nothing unpauses early: CLIENT UNPAUSE waits out the pause as well.)
            paused_until = time.monotonic() + 1.2
            direct.execute_command("CLIENT", "PAUSE", 1200, "ALL")
            failures = await asyncio.gather(
                *(read_one(connection, 1, 1) for _ in range(breaker.threshold)),
                return_exceptions=True,
            )
            assert all(isinstance(f, StoreUnavailable) for f in failures), failures
            assert breaker.state == "open"
            await asyncio.sleep(breaker.open_s)
            assert breaker.state == "half-open"
            for way in (0, 1):  # a probe on each path, cut by its caller
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await read_one(connection, 1, way)
            await asyncio.sleep(paused_until - time.monotonic() + 0.05)
            direct.set(key(1), value(1))
            direct.set(key(2), value(2))
        assert breaker.state == "half-open"
        assert await read_one(connection, 1, 0) == expected(1, 0)
        assert breaker.state == "closed"
    finally:
        await connection.close()
