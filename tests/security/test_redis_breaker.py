"""Redis that does not answer: the circuit breaker in front of it, alone with a clock, and
against a real black hole (a listener that accepts and never answers) and then a real
redis-server on the same port. Calls end within their timeout, a handful of connections
are opened instead of one a request, and service comes back once Redis does."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from support import BlackHole, RedisServer, free_port

from app.errors import StoreUnavailable, error_response
from app.stores.redis.breaker import Breaker
from app.stores.redis.connection import RedisConnection


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_failures_in_a_row_and_probes_with_one_call():
    clock = Clock()
    breaker = Breaker(threshold=3, open_s=0.5, max_open_s=2.0, clock=clock)
    for _ in range(2):
        breaker.admit()
        breaker.failed()
    breaker.admit()
    breaker.succeeded()  # a success in between: the count starts again
    for _ in range(3):
        breaker.admit()
        breaker.failed()
    assert breaker.is_open
    with pytest.raises(StoreUnavailable):
        breaker.admit()
    clock.now += 0.5
    breaker.admit()  # the probe
    with pytest.raises(StoreUnavailable):
        breaker.admit()  # only one at a time
    breaker.failed()  # the probe failed: open twice as long
    clock.now += 0.9
    with pytest.raises(StoreUnavailable):
        breaker.admit()
    clock.now += 0.1
    breaker.admit()
    breaker.failed()
    clock.now += 2.0  # capped at max_open_s
    breaker.admit()
    breaker.succeeded()
    assert not breaker.is_open
    breaker.admit()
    breaker.admit()
    assert breaker.opened == 3


async def test_a_black_holed_redis_costs_a_few_connections_and_no_waits(tmp_path):
    port = free_port()
    connection = RedisConnection(f"redis://127.0.0.1:{port}/0", timeout_s=0.2, pool_size=64)
    try:
        with BlackHole(port) as hole:
            durations, failed = [], 0
            ended = time.monotonic() + 3.0
            while time.monotonic() < ended:

                async def one() -> None:
                    nonlocal failed
                    started = time.monotonic()
                    try:
                        await connection.call(connection.redis.get("kairos:test:k"))
                    except StoreUnavailable:
                        failed += 1
                    durations.append(time.monotonic() - started)

                await asyncio.gather(*(one() for _ in range(20)))
                await asyncio.sleep(0.02)
            assert failed == len(durations) > 200
            assert max(durations) < 0.2 + 0.3  # each within its timeout
            # Without the breaker: 20 new connections each round (each timed-out one is
            # dropped), some 300 in these 3 s.
            assert hole.accepted <= 20 + 8, hole.accepted
            assert connection.breaker.is_open
        server = RedisServer(tmp_path / "redis", port=port)
        server.start()
        try:
            deadline = time.monotonic() + connection.breaker.max_open_s + 2.0
            while True:
                try:
                    assert await connection.call(connection.redis.ping())
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "Redis is back but calls still fail"
                    await asyncio.sleep(0.05)
            assert not connection.breaker.is_open
            assert await connection.pipelined([("ECHO", "back")]) == [b"back"]
        finally:
            server.stop()
    finally:
        await connection.close()


def test_refusals_by_the_open_circuit_are_not_logged_one_by_one(caplog):
    """An outage at thousands of requests a second must not write a line per request:
    the opening is logged once, each refusal only at debug level; a store error that
    did reach Redis is still a warning."""
    breaker = Breaker(clock=lambda: 0.0)
    caplog.set_level(logging.DEBUG)
    for _ in range(breaker.threshold):
        breaker.admit()
        breaker.failed()
    opened = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(opened) == 1 and "circuit open" in opened[0].getMessage()
    caplog.clear()
    for _ in range(50):
        with pytest.raises(StoreUnavailable) as refused:
            breaker.admit()
        error_response(refused.value, "GET", "/v1/profiles/{user_id}")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 50
    caplog.clear()
    error_response(StoreUnavailable("redis: timeout"), "GET", "/v1/profiles/{user_id}")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
