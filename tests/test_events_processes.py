"""Events across real server processes: two uvicorn processes sharing one redis-server.
An event posted to one shows in the other's feeds and profile reads within a second, and
an erasure through one leaves no cached copy in the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from support import AUTH, KairosProcess, RedisServer, feed_url, process_env

from app.stores.redis.keys import profile_key

WRITE_KEY = "test-write-key-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
VISIBLE_WITHIN_S = 1.0  # what the tests wait for
BOUND_S = 2.0  # the only timing asserted: a generous bound


@pytest.fixture(scope="module")
def servers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """Two servers (A, B) on the session's redis-server, profiles cached for a minute:
    only the change channel can make B see A's writes in time."""
    tmp = tmp_path_factory.mktemp("servers")
    env = process_env(tmp, redis_server.url, WRITE_KEY)
    started = [KairosProcess(name, env, tmp) for name in ("a", "b")]
    try:
        deadline = time.monotonic() + 20
        for server in started:
            server.wait_ready(deadline)
        yield started[0].base, started[1].base
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[Any]:
    """A plain client on the shared redis-server, to write behind the servers' backs."""
    with redis_server.client() as client:
        yield client


def put_profile(base: str, user: str, doc: dict[str, Any]) -> None:
    r = httpx.put(f"{base}/v1/profiles/{user}", json=doc, headers=AUTH)
    assert r.status_code in (200, 201), r.text


def post_events(base: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = httpx.post(f"{base}/v1/events", json={"events": events}, headers=WRITE)
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def first_name(client: httpx.Client, base: str, user: str) -> str | None:
    """The profile feed's first name on that server (through its profile cache); None
    when the feed answers its fallback."""
    r = client.get(base + feed_url("profile", user))
    assert r.status_code == 200, r.text
    if "x-kairos-fallback" in r.headers:
        return None
    name: str | None = r.json()["items"][0]["first_name"]
    return name


def cache_proven(client: httpx.Client, base: str, user: str, direct: Any, shown: str) -> None:
    """The server serves `user` from its cache: a change written straight into Redis,
    announced to no one, does not show (for a while)."""
    raw = direct.get(profile_key(user))
    sneaky = {**orjson.loads(raw), "first_name": "Sneaky"}
    direct.set(profile_key(user), orjson.dumps(sneaky))
    time.sleep(0.05)
    assert first_name(client, base, user) == shown, "the server does not cache the profile"
    direct.set(profile_key(user), raw)  # as it was


def wait_for(check: Callable[[], bool], within_s: float) -> float:
    """Poll `check` until it holds; the seconds it took (fails past `within_s`)."""
    start = time.monotonic()
    while not check():
        took = time.monotonic() - start
        assert took < within_s, f"not visible after {took:.3f}s"
        time.sleep(0.002)
    return time.monotonic() - start


def test_an_event_on_one_server_shows_in_the_others_feed_within_a_second(
    servers: tuple[str, str], direct: Any
) -> None:
    a, b = servers
    user = f"proc-{uuid.uuid4().hex[:8]}"
    put_profile(a, user, {"first_name": "Before", "tier": "gold"})
    with httpx.Client() as client:
        assert first_name(client, b, user) == "Before"  # B caches it for a minute
        cache_proven(client, b, user, direct, "Before")

        event = {
            "event_id": f"e-{uuid.uuid4().hex}",
            "user_id": user,
            "type": "identify",
            "properties": {"traits": {"first_name": "After"}},
        }
        sent = time.monotonic()
        assert post_events(a, [event])["accepted"] == 1
        answered = time.monotonic()
        took = wait_for(lambda: first_name(client, b, user) == "After", BOUND_S)
        latency = time.monotonic() - answered
        assert latency < BOUND_S, (
            f"event-to-feed on the other server: {latency * 1000:.1f} ms after the 202 "
            f"({(answered - sent) * 1000:.1f} ms to the 202, polled {took * 1000:.1f} ms)"
        )

        # And B's profile API shows the live part the event wrote.
        r = client.get(f"{b}/v1/profiles/{user}", headers=AUTH)
        assert r.status_code == 200
        assert r.json()["counters"] == {"identify": 1}
        assert r.json()["tier"] == "gold"

        # A cart change through the Segment dialect on B shows on A's cart feed.
        message = {
            "type": "track",
            "event": "Product Added",
            "userId": user,
            "properties": {"sku": "SKU-1", "quantity": 2},
            "messageId": f"m-{uuid.uuid4().hex}",
        }
        r = client.post(f"{b}/segment/v1/batch", json={"batch": [message], "writeKey": WRITE_KEY})
        assert r.status_code == 200, r.text
        r = client.get(f"{a}/v1/profiles/{user}", headers=AUTH)
        assert r.json()["cart"] == [{"sku": "SKU-1", "qty": 2}]


def test_an_erasure_on_one_server_leaves_no_cached_copy_on_the_other(
    servers: tuple[str, str], direct: Any
) -> None:
    a, b = servers
    user = f"proc-{uuid.uuid4().hex[:8]}"
    put_profile(a, user, {"first_name": "Erin"})
    post_events(
        a,
        [
            {"event_id": f"e-{uuid.uuid4().hex}", "user_id": user, "type": "page_view"},
            {
                "event_id": f"e-{uuid.uuid4().hex}",
                "user_id": user,
                "anonymous_id": f"{user}-anon",
                "type": "identify",
                "properties": {"traits": {"tier": "gold"}},
            },
        ],
    )
    with httpx.Client() as client:
        for base in (a, b):
            assert first_name(client, base, user) == "Erin"  # each caches it
        cache_proven(client, b, user, direct, "Erin")

        r = client.delete(f"{a}/v1/profiles/{user}", headers=AUTH)
        assert r.status_code == 204, r.text
        erased = time.monotonic()
        took = wait_for(lambda: first_name(client, b, user) is None, VISIBLE_WITHIN_S)
        assert first_name(client, a, user) is None
        r = client.get(b + feed_url("profile", user))
        assert r.headers["x-kairos-fallback"] == "missing-profile", (
            f"B dropped its copy {took * 1000:.1f} ms after the 204"
        )
        assert client.get(f"{b}/v1/profiles/{user}", headers=AUTH).status_code == 404
        assert time.monotonic() - erased < BOUND_S

        # Suppressed on both servers: B refuses the erased reader's events.
        event = {"event_id": f"e-{uuid.uuid4().hex}", "user_id": user, "type": "page_view"}
        r = client.post(f"{b}/v1/events", json=event, headers=WRITE)
        assert r.status_code == 422, r.text
        assert r.json()["rejected"][0]["code"] == "suppressed"
        assert not [k for k in direct.scan_iter(match=f"*{user}*", count=1000)]


def test_the_servers_share_one_redis(servers: tuple[str, str], redis_server: RedisServer) -> None:
    """(The two servers are the processes started above, on the session's redis-server.)"""
    with redis.Redis(host="127.0.0.1", port=redis_server.port) as client:
        [(_, subscribers)] = client.pubsub_numsub("kairos:changes")
    assert subscribers >= 2
