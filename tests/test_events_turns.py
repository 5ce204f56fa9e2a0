"""Events requests take turns (`KAIROS_EVENTS_IN_FLIGHT`, `KAIROS_EVENTS_WAIT_MS`), through
the app on a real redis-server of the test's own, held by `CLIENT PAUSE` so that one
request is inside ingest while the next arrives: the next waits its turn and lands, or,
past its wait, is answered 503 `busy` with nothing applied and lands once on retry. Both
dialects share the turns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support import RedisServer, profile_counters, serve

from app.app import create_app

WRITE_KEY = "test-write-key-turns-0123456789abcdef"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}"}
PAUSE_MS = 600


def events(user: str, n: int, tag: str) -> dict[str, Any]:
    return {
        "events": [
            {"event_id": f"{tag}-{i}", "user_id": user, "type": "page_view"} for i in range(n)
        ]
    }


@pytest.fixture
def make_client(settings: Any, own_redis: RedisServer) -> Any:
    def make(wait_ms: int) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            settings(
                REDIS_URL=own_redis.url,
                KAIROS_WRITE_KEYS=WRITE_KEY,
                KAIROS_EVENTS_IN_FLIGHT=100,
                KAIROS_EVENTS_WAIT_MS=wait_ms,
                KAIROS_RATE_EVENTS=0,  # nothing but the store read before the turn
                KAIROS_REDIS_TIMEOUT_MS=5000,  # the pause is not an outage
            )
        )
        return serve(app)

    return make


async def hold(client: httpx.AsyncClient, server: RedisServer) -> asyncio.Task[httpx.Response]:
    """A 100-event request (all of KAIROS_EVENTS_IN_FLIGHT) inside ingest, waiting on a
    paused Redis for PAUSE_MS."""
    with server.client() as r:
        r.execute_command("CLIENT", "PAUSE", PAUSE_MS, "ALL")
    first = events("u-first", 100, "a")
    task = asyncio.create_task(client.post("/v1/events", json=first, headers=WRITE))
    await asyncio.sleep(0.1)
    assert not task.done()
    return task


def turns_metric(text: str, result: str) -> float:
    line = f'kairos_events_turns_total{{result="{result}"}} '
    found = [row for row in text.splitlines() if row.startswith(line)]
    return float(found[0][len(line) :]) if found else 0.0


async def test_a_request_behind_a_full_turn_waits_and_lands_after_it(make_client, own_redis):
    async with make_client(wait_ms=5000) as client:
        first = await hold(client, own_redis)
        started = time.monotonic()
        second = await client.post("/v1/events", json=events("u-second", 1, "b"), headers=WRITE)
        waited = time.monotonic() - started
        assert first.done(), "the second request went before the one holding every turn"
        assert (await first).status_code == 202
        assert second.status_code == 202 and second.json()["accepted"] == 1
        assert waited >= (PAUSE_MS - 150) / 1000
        assert await profile_counters(client, "u-second") == {"page_view": 1}
        metrics = (await client.get("/metrics")).text
        assert turns_metric(metrics, "waited") == 1
        assert turns_metric(metrics, "busy") == 0


@pytest.mark.parametrize("dialect", ["native", "segment"])
async def test_a_wait_past_its_limit_is_a_503_busy_with_nothing_applied(
    make_client, own_redis, dialect
):
    async with make_client(wait_ms=100) as client:
        first = await hold(client, own_redis)
        if dialect == "native":
            post = client.post("/v1/events", json=events("u-second", 1, "b"), headers=WRITE)
        else:
            message = {"type": "page", "userId": "u-second", "messageId": "b-0", "name": "Home"}
            post = client.post("/segment/v1/batch", json={"batch": [message]}, headers=WRITE)
        started = time.monotonic()
        second = await post
        assert time.monotonic() - started < (PAUSE_MS - 200) / 1000  # not held to the end
        assert second.status_code == 503
        assert second.json()["error"]["code"] == "busy"
        assert second.headers["Retry-After"] == "1"
        assert second.headers["Cache-Control"] == "no-store"
        assert (await first).status_code in (200, 202)
        assert await profile_counters(client, "u-second") == {}  # nothing of it applied
        again = await (
            client.post("/v1/events", json=events("u-second", 1, "b"), headers=WRITE)
            if dialect == "native"
            else client.post("/segment/v1/batch", json={"batch": [message]}, headers=WRITE)
        )
        assert again.status_code in (200, 202) and again.json()["accepted"] == 1
        assert await profile_counters(client, "u-second") == {"page_view": 1}
        metrics = (await client.get("/metrics")).text
        assert turns_metric(metrics, "busy") == 1
        assert turns_metric(metrics, "waited") == 1


async def test_requests_within_the_limit_do_not_wait(make_client):
    async with make_client(wait_ms=5000) as client:
        answers = await asyncio.gather(
            *(
                client.post("/v1/events", json=events(f"u-{k}", 50, f"c{k}"), headers=WRITE)
                for k in range(2)
            )
        )
        assert [a.status_code for a in answers] == [202, 202]
        metrics = (await client.get("/metrics")).text
        assert turns_metric(metrics, "waited") == 0


async def test_a_body_waits_its_turn_unparsed(make_client, own_redis):
    """Parsed only once its turn comes: a broken body behind a full turn is answered 400
    after the request holding the turn, while one over the size cap is refused at once."""
    async with make_client(wait_ms=5000) as client:
        first = await hold(client, own_redis)
        headers = {**WRITE, "Content-Type": "application/json"}
        too_large = b'{"events": [' + b" " * (4 * 1024 * 1024) + b"]}"
        refused = await client.post("/v1/events", content=too_large, headers=headers)
        assert refused.status_code == 413
        assert not first.done()
        broken = b'{"events": [{"event_id": "x"'
        answer = await client.post("/v1/events", content=broken, headers=headers)
        assert first.done()
        assert answer.status_code == 400
        assert (await first).status_code == 202
