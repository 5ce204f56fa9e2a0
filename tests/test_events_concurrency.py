"""Events under concurrency across real server processes on one redis-server: requests
retried and posted to several servers at once land exactly once (warm readers or not);
an erasure or a consent withdrawal made on one server holds at once on the others; and a
server whose change subscription dropped forgets what it cached while it was down."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis
from support import AUTH, KairosProcess, RedisServer, feed_url, process_env

from app.stores.redis.keys import profile_key

WRITE_KEY = "test-write-key-concurrency-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
TYPES = ("page_view", "email_open", "product_view", "custom:wish_add")
SEGMENT = {
    "page_view": {"type": "page"},
    "email_open": {"type": "track", "event": "Email Opened"},
    "product_view": {"type": "track", "event": "Product Viewed"},
    "custom:wish_add": {"type": "track", "event": "wish_add"},
}


class Server(KairosProcess):
    async def copies_used(self, client: httpx.AsyncClient) -> float:
        """How many readers this server reduced on its own last write (no store read)."""
        text = (await client.get(f"{self.base}/metrics")).text
        found = re.search(r'kairos_events_warm_readers_total\{result="copy"\} (\S+)', text)
        return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, list[Server]]]:
    """A redis-server of this module's own (a test here kills its subscriptions) and three
    servers on it: two with the default warm readers, one keeping only two copies."""
    tmp = tmp_path_factory.mktemp("concurrency")
    store = RedisServer(tmp / "redis")
    store.start()
    env = process_env(tmp, store.url, WRITE_KEY)
    servers: list[Server] = []
    try:
        for name, warm in (("a", "20000"), ("b", "20000"), ("c", "2")):
            servers.append(Server(name, {**env, "KAIROS_EVENTS_WARM_READERS": warm}, tmp))
        deadline = time.monotonic() + 30
        for server in servers:
            server.wait_ready(deadline)
        with store.client() as client:
            wait_for(lambda: subscribers(client) >= len(servers), 10)
        yield store, servers
    finally:
        for server in servers:
            server.stop()
        store.stop()


def subscribers(client: redis.Redis) -> int:
    [(_, count)] = client.pubsub_numsub("kairos:changes")
    return int(count)


def wait_for(check: Any, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.01)


def event(event_id: str, user: str, kind: str) -> dict[str, Any]:
    properties = {"sku": "SKU-1"} if kind == "product_view" else {}
    return {"event_id": event_id, "user_id": user, "type": kind, "properties": properties}


async def post(
    client: httpx.AsyncClient, base: str, events: list[dict[str, Any]], segment: bool
) -> httpx.Response:
    if not segment:
        return await client.post(f"{base}/v1/events", json={"events": events}, headers=WRITE)
    batch = [
        {"messageId": e["event_id"], "userId": e["user_id"], "properties": e["properties"]}
        | SEGMENT[e["type"]]
        for e in events
    ]
    url = f"{base}/segment/v1/batch"
    return await client.post(url, json={"batch": batch}, auth=(WRITE_KEY, ""))


def counters(client: redis.Redis, user: str) -> dict[str, int]:
    raw = client.get(profile_key(user))
    return {} if raw is None else dict(orjson.loads(raw)["counters"])


async def test_retried_and_doubled_requests_land_exactly_once_on_every_server(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    store, servers = cluster
    rnd = random.Random(20260101)
    readers = [f"cc-{rnd.randrange(16**8):08x}" for _ in range(8)]
    expected: dict[str, Counter[str]] = {r: Counter() for r in readers}
    # First two requests in a row to one server: the second is reduced on its copy.
    requests = [[event(f"cc-warm-{i}", readers[0], "page_view")] for i in range(2)]
    expected[readers[0]]["page_view"] += 2
    for i in range(240):
        events = []
        for j in range(rnd.randint(1, 10)):
            user, kind = rnd.choice(readers), rnd.choice(TYPES)
            events.append(event(f"cc-{i}-{j}", user, kind))
            expected[user][kind] += 1
        requests.append(events)
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=30) as client:
        copies_before = await servers[0].copies_used(client)
        for events in requests[:2]:
            answers.append(await post(client, servers[0].base, events, False))
        assert await servers[0].copies_used(client) == copies_before + 1

        async def send(events: list[dict[str, Any]], plan: random.Random) -> None:
            # Once, or to two servers at once; then retried 0-2 times, same ids.
            targets = plan.sample(servers, plan.choice((1, 1, 2)))
            sends = [post(client, s.base, events, plan.random() < 0.3) for s in targets]
            answers.extend(await asyncio.gather(*sends))
            for _ in range(plan.randint(0, 2)):
                answers.append(await post(client, plan.choice(servers).base, events, False))

        async def worker(w: int) -> None:
            plan = random.Random(w)
            for events in requests[2 + w :: 24]:
                await send(events, plan)

        await asyncio.gather(*[worker(w) for w in range(24)])

    assert {r.status_code for r in answers} <= {200, 202}, Counter(r.status_code for r in answers)
    bodies = [r.json() for r in answers]
    distinct = sum(len(e) for e in requests)
    assert sum(b["accepted"] for b in bodies) == distinct
    posted = [orjson.loads(r.request.content) for r in answers]
    sent = sum(len(p.get("events") or p["batch"]) for p in posted)
    assert sum(b["accepted"] + b["duplicates"] for b in bodies) == sent
    assert not any(b["rejected"] or b["dropped"] for b in bodies)
    with store.client() as direct:
        assert {r: counters(direct, r) for r in readers} == {r: dict(expected[r]) for r in readers}


async def race(
    client: httpx.AsyncClient,
    users: list[str],
    targets: tuple[Server, ...],
    act: Callable[[str], Awaitable[None]],
) -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Posters of two events a request for each user, one on each of `targets`, and
    `act(user)` once they are under way; each poster goes on until it has sent ten
    requests after `act` answered. What every answer counted, per user, and what the
    answers to requests sent after `act` answered counted."""
    going = {u: asyncio.Event() for u in users}
    acted: dict[str, float] = {}
    every: dict[str, Counter[str]] = {u: Counter() for u in users}
    late: Counter[str] = Counter()

    async def poster(user: str, server: Server, n: int) -> None:
        after = 0
        for k in range(1000):
            if k == 10:
                going[user].set()
            started = time.monotonic()
            events = [event(f"{user}-{n}-{k}-{j}", user, TYPES[(k + j) % 4]) for j in range(2)]
            r = await post(client, server.base, events, k % 3 == 0)
            assert r.status_code in (200, 202, 400, 422), r.text
            body = r.json()
            counts = Counter(sent=2, accepted=body["accepted"], dropped=body["dropped"])
            counts.update(x["code"] for x in body["rejected"])
            every[user].update(counts)
            if user in acted and started > acted[user]:
                late.update(counts)
                after += 1
                if after == 10:
                    return
        raise AssertionError("the action was never answered")

    async def action(user: str) -> None:
        await going[user].wait()
        await act(user)
        acted[user] = time.monotonic()

    posters = [poster(u, s, n) for u in users for n, s in enumerate(targets)]
    await asyncio.gather(*posters, *[action(u) for u in users])
    return every, late


async def test_an_erasure_on_one_server_holds_at_once_on_the_warm_others(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    store, (a, b, c) = cluster
    users = [f"ce-{i}-{random.Random(i).randrange(16**6):06x}" for i in range(3)]
    async with httpx.AsyncClient(timeout=30) as client:

        async def erase(user: str) -> None:
            r = await client.delete(f"{a.base}/v1/profiles/{user}", headers=AUTH)
            assert r.status_code == 204, r.text

        _, late = await race(client, users, (b, c, b), erase)
        for user in users:
            for server in (a, b, c):
                r = await client.get(f"{server.base}/v1/profiles/{user}", headers=AUTH)
                assert r.status_code == 404
    assert late == Counter(sent=late["sent"], suppressed=late["sent"])
    with store.client() as direct:
        assert not [k for u in users for k in direct.scan_iter(match=f"*{u}*", count=1000)]


async def test_consent_withdrawn_on_one_server_drops_at_once_on_the_warm_others(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    store, (a, b, c) = cluster
    users = [f"cn-{i}-{random.Random(i).randrange(16**6):06x}" for i in range(3)]
    async with httpx.AsyncClient(timeout=30) as client:

        async def withdraw(user: str) -> None:
            patch = {"consent": {"tracking": False}}
            r = await client.patch(f"{a.base}/v1/profiles/{user}", json=patch, headers=AUTH)
            assert r.status_code == 200, r.text

        every, late = await race(client, users, (b, c), withdraw)
    assert late == Counter(sent=late["sent"], dropped=late["sent"])
    with store.client() as direct:
        counted = {u: sum(counters(direct, u).values()) for u in users}
        assert counted == {u: every[u]["accepted"] for u in users}
        assert all(every[u]["sent"] == every[u]["accepted"] + every[u]["dropped"] for u in users)


def test_a_dropped_subscription_forgets_what_was_cached_until_it_was_back(
    cluster: tuple[RedisServer, list[Server]],
) -> None:
    store, (a, b, _) = cluster
    user = f"cs-{random.Random(3).randrange(16**6):06x}"
    r = httpx.put(f"{a.base}/v1/profiles/{user}", json={"first_name": "Erin"}, headers=AUTH)
    assert r.status_code == 201

    def first_name(base: str) -> str | None:
        r = httpx.get(base + feed_url("profile", user))
        assert r.status_code == 200, r.text
        return None if "x-kairos-fallback" in r.headers else r.json()["items"][0]["first_name"]

    with store.client() as direct:
        assert direct.client_kill_filter(_type="pubsub") >= 2
        time.sleep(0.2)  # B saw its subscription end; it subscribes again a second later
        assert first_name(b.base) == "Erin"  # cached by B while it hears nothing
        assert httpx.delete(f"{a.base}/v1/profiles/{user}", headers=AUTH).status_code == 204
        wait_for(lambda: subscribers(direct) >= 3, 5)
        time.sleep(0.2)
    assert first_name(a.base) is None
    assert first_name(b.base) is None  # the erased reader, still served by B
