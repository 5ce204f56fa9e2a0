"""Feeds benchmark: Kairos's cart feed against bare Starlette baselines, under wrk.

    .venv/bin/python bench/feeds.py [--duration 10] [--connections 64]
    .venv/bin/python bench/feeds.py --quick        # 3 s runs, a smoke test

Four servers, one at a time, each its own uvicorn process (uvloop, httptools, 1 worker,
no access log) pinned to one core with taskset, while wrk (1 thread, pinned to the other
core) cycles through one signed feed URL per reader:

  a  kairos-cached   Kairos, cart feed, profiles from the in-process cache
                     (KAIROS_CACHE_TTL_MS=600000, every reader warmed first)
  b  kairos-redis    Kairos, cart feed, one Redis GET per request (KAIROS_CACHE_TTL_MS=0;
                     the catalog keeps its own in-process cache)
  c  bare-static     bare Starlette: orjson.dumps of the body Kairos served in (a)
  d  bare-redis      bare Starlette: one pooled redis.asyncio GET + orjson.loads/dumps

It starts its own redis-server (temporary directory, no persistence) on a free port,
seeds it through Kairos's Redis stores, checks that every server answers every reader 200
with the expected body before measuring, and for (a)/(b) reads Kairos's /metrics to show
the profile cache really was hit (a) or bypassed (b).

Prints req/s and p50/p99 latency per server, then the ratios a/c (target >= 0.7) and
b/d (target >= 0.8). Exit status: 0 when the bench ran (whatever the ratios), 1 when
something broke (a server did not start, a wrong answer, a fallback, a non-2xx), 130 on
Ctrl-C. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis
from common import (
    BENCH_DIR,
    BenchError,
    Client,
    Pinning,
    Processes,
    WrkResult,
    base_env,
    bench_products,
    free_port,
    metrics,
    pinning,
    run_main,
    run_wrk,
    start_redis,
    tail,
    total,
    uvicorn_argv,
    wait_ready,
)

from app.feeds import FEEDS, FeedContext
from app.images import ImageChecks
from app.links import Links, LinkSigner
from app.profiles.schema import validate_profile
from app.reader import ReaderData, tracked
from app.reader.catalog import Catalog
from app.routes.feeds import DEFAULT_LIMIT, clicked
from app.settings import Secret
from app.stores.bundle import redis_stores
from app.stores.memory import MemoryCatalog
from app.stores.redis.keys import profile_key
from app.tokens import Tokens

SECRET_KEY = "kairos-bench-feeds-0123456789abcdefghijk"  # fixed, 40 characters
PUBLIC_URL = "http://127.0.0.1:8000"  # what the feeds' click URLs start with
assert len(SECRET_KEY) == 40
FEED = "cart"
PRODUCTS = 50
TARGETS = (("a", "c", 0.7), ("b", "d", 0.8))


# --- data -------------------------------------------------------------------------------


def _products() -> list[dict[str, Any]]:
    return bench_products(PRODUCTS, "BENCH", 3.25, 3)


def _readers(count: int) -> list[tuple[str, dict[str, Any]]]:
    readers = []
    for i in range(count):
        doc = {
            "first_name": f"Reader{i}",
            "locale": "en-GB",
            "tier": ("gold", "silver", "bronze")[i % 3],
            "loyalty_points": i * 7,
            "cart": [
                {"sku": f"BENCH-{i % PRODUCTS:03d}", "qty": 1},
                {"sku": f"BENCH-{(i * 7 + 3) % PRODUCTS:03d}", "qty": 1 + i % 3},
            ],
            "recommendations": [{"sku": f"BENCH-{(i + 11) % PRODUCTS:03d}", "score": 0.5}],
            "consent": {"personalization": True, "tracking": True},
        }
        readers.append((f"bench-{i:05d}", validate_profile(doc)))
    return readers


async def _seed(url: str, products: list[dict[str, Any]], readers: list[Any]) -> None:
    stores = redis_stores(url, timeout_s=5.0)
    try:
        if await stores.catalog.put_products(products) != len(products):
            raise BenchError("seeding: put_products stored fewer products than given")
        if await stores.profiles.put_many(readers) != len(readers):
            raise BenchError("seeding: put_many stored fewer readers than given")
    finally:
        await stores.close()


async def _expected_feeds(
    products: list[dict[str, Any]], readers: list[tuple[str, dict[str, Any]]]
) -> dict[str, bytes]:
    """What Kairos's own cart builder makes of each reader (the stored, JSON-round-tripped
    profile against the catalog), with the reader's click URLs, as the feed route
    serialises it."""
    store = MemoryCatalog()
    await store.put_products(products)
    catalog = Catalog(store)
    signer = LinkSigner(Tokens((Secret(SECRET_KEY),)), PUBLIC_URL, ImageChecks())
    reader = ReaderData(catalog)
    out = {}
    for user_id, profile in readers:
        stored = orjson.loads(orjson.dumps(profile))
        items = await FEEDS[FEED](
            FeedContext(stored, reader, DEFAULT_LIMIT, asyncio.get_running_loop().time() + 60)
        )
        if not items:
            raise BenchError(f"reader {user_id} has an empty cart feed: the bench data is wrong")
        links = Links(signer, PUBLIC_URL, user_id, None, "", tracking=tracked(stored))
        out[user_id] = orjson.dumps({"items": clicked(items, links)})
    return out


# --- redis-server -----------------------------------------------------------------------


def _start_redis(procs: Processes, tmp: Path, pin: Pinning) -> tuple[str, int]:
    _, port = start_redis(procs, tmp, pin.load)
    return f"redis://127.0.0.1:{port}/0", port


# --- wrk --------------------------------------------------------------------------------


def _lua_script(paths: Sequence[str], path: Path) -> Path:
    """A wrk script sending the paths round-robin, requests formatted once up front."""
    for p in paths:
        if not re.fullmatch(r"[A-Za-z0-9/._~%?=&-]+", p):
            raise BenchError(f"unexpected characters in a bench URL: {p!r}")
    listed = ",\n".join(f'  "{p}"' for p in paths)
    path.write_text(
        f"local paths = {{\n{listed}\n}}\n"
        "local requests = {}\n"
        "local n = #paths\n"
        "local i = 0\n"
        "function init(args)\n"
        "  for k, p in ipairs(paths) do requests[k] = wrk.format('GET', p) end\n"
        "end\n"
        "function request()\n"
        "  i = i % n + 1\n"
        "  return requests[i]\n"
        "end\n"
    )
    return path


# --- Kairos metrics ---------------------------------------------------------------------


@dataclass
class Counters:
    hit: float
    miss: float
    stale: float
    fallbacks: float
    feed_ok: float

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.hit - other.hit,
            self.miss - other.miss,
            self.stale - other.stale,
            self.fallbacks - other.fallbacks,
            self.feed_ok - other.feed_ok,
        )


def _counters(port: int) -> Counters:
    samples = metrics(port)
    return Counters(
        hit=total(samples, "kairos_profile_cache_total", result="hit"),
        miss=total(samples, "kairos_profile_cache_total", result="miss"),
        stale=total(samples, "kairos_profile_cache_total", result="stale"),
        fallbacks=total(samples, "kairos_fallbacks_total"),
        feed_ok=total(samples, "kairos_requests_total", route="/v1/feeds/{feed}", status="200"),
    )


# --- one server -------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    name: str
    what: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    paths: list[str]  # one per reader, in reader order
    expected: list[bytes]  # the body each path must answer
    kairos: bool = False
    cached: bool = False


@dataclass
class Outcome:
    case: Case
    result: WrkResult
    served: bytes = b""  # what the server answered for the first reader
    counters: Counters | None = None
    notes: list[str] = field(default_factory=list)


def _verify(case: Case, port: int) -> bytes:
    """Every reader's URL answers 200 with the expected body (this also warms a cache).
    Returns the body the server sent for the first reader."""
    client = Client(port)
    first = b""
    try:
        for path, want in zip(case.paths, case.expected, strict=True):
            answer = client.get(path)
            problem = None
            if answer.status != 200:
                problem = f"HTTP {answer.status}"
            elif "x-kairos-fallback" in answer.headers:
                problem = f"fallback {answer.headers['x-kairos-fallback']!r}"
            elif answer.headers.get("content-type") != "application/json":
                problem = f"content-type {answer.headers.get('content-type')!r}"
            elif answer.body != want:
                problem = "unexpected body"
            if problem:
                raise BenchError(
                    f"{case.name}: wrong answer for {path[:60]}...: {problem}\n"
                    f"    got:      {answer.body[:300]!r}\n    expected: {want[:300]!r}"
                )
            first = first or answer.body
    finally:
        client.close()
    return first


def _settle(case: Case, port: int, timeout_s: float = 30.0) -> None:
    """Wait until the segment sweep has recorded every reader the first reads noticed,
    then read them all again. A reader read for the first time is evaluated against
    the segment rules by the sweep within a second or two, and its profile written once
    with its segments (its cached copy dropped): a one-time cost per reader the steady
    state this bench measures does not pay."""
    deadline = time.monotonic() + timeout_s
    while total(metrics(port), "kairos_segment_sweeps_total", outcome="recorded") < len(
        case.paths
    ):
        if time.monotonic() > deadline:
            raise BenchError(f"{case.name}: the segment sweep did not record every reader")
        time.sleep(0.1)
    _verify(case, port)


def _run_case(
    case: Case,
    procs: Processes,
    tmp: Path,
    pin: Pinning,
    seconds: float,
    warmup: float,
    connections: int,
) -> Outcome:
    port = free_port()
    argv = pin.wrap([*case.argv, "--port", str(port)], pin.server)
    log = tmp / f"server-{case.key}.log"
    print(f"[{case.key}] {case.name}: starting on port {port}", flush=True)
    proc = procs.start(case.name, argv, env=case.env, log=log)
    try:
        wait_ready(case.name, proc, port, case.ready_path, log)
        served = _verify(case, port)
        if case.cached:
            _settle(case, port)
        print(f"[{case.key}] {case.name}: {len(case.paths)} readers answered as expected")
        script = _lua_script(case.paths, tmp / f"wrk-{case.key}.lua")
        warm = run_wrk(port, script, warmup, connections, pin)
        if warm.non_2xx:
            raise BenchError(f"{case.name}: {warm.non_2xx} non-2xx answers during warm-up")
        before = _counters(port) if case.kairos else None
        result = run_wrk(port, script, seconds, connections, pin)
        outcome = Outcome(case, result, served)
        if result.non_2xx:
            raise BenchError(f"{case.name}: {result.non_2xx} non-2xx answers:\n{result.raw}")
        if result.socket_errors:
            outcome.notes.append(f"socket errors {result.socket_errors}")
        if proc.poll() is not None:
            raise BenchError(f"{case.name}: died during the run:\n{tail(log)}")
        if before is not None:
            delta = _counters(port) - before
            outcome.counters = delta
            _check_counters(case, delta)
        # Still right after the load?
        _verify(replace(case, paths=case.paths[:5], expected=case.expected[:5]), port)
        print(
            f"[{case.key}] {case.name}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms"
            + (f", {'; '.join(outcome.notes)}" if outcome.notes else ""),
            flush=True,
        )
        if outcome.counters is not None:
            c = outcome.counters
            print(
                f"[{case.key}] {case.name}: /metrics during the run: profile cache "
                f"hit +{c.hit:.0f}, miss +{c.miss:.0f}, stale +{c.stale:.0f}; "
                f"feed 200s +{c.feed_ok:.0f}; fallbacks +{c.fallbacks:.0f}",
                flush=True,
            )
        return outcome
    finally:
        procs.stop(proc)


def _check_counters(case: Case, d: Counters) -> None:
    if d.fallbacks:
        raise BenchError(f"{case.name}: Kairos served {d.fallbacks:.0f} fallbacks under load")
    if d.feed_ok <= 0:
        raise BenchError(f"{case.name}: /metrics shows no feed answered during the run")
    if case.cached:
        if d.hit <= 0 or d.miss > 0.01 * (d.hit + d.miss):
            raise BenchError(
                f"{case.name}: expected profile cache hits, got hit +{d.hit:.0f}, "
                f"miss +{d.miss:.0f}"
            )
    elif d.hit > 0 or d.miss <= 0:
        raise BenchError(
            f"{case.name}: expected every lookup to miss the cache, got hit +{d.hit:.0f}, "
            f"miss +{d.miss:.0f}"
        )


# --- the whole bench --------------------------------------------------------------------


def _kairos_env(redis_url: str, cache_ttl_ms: int) -> dict[str, str]:
    return {
        **base_env(),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_PUBLIC_URL": PUBLIC_URL,
        "REDIS_URL": redis_url,
        "KAIROS_DEMO_DATA": "false",
        "KAIROS_CACHE_TTL_MS": str(cache_ttl_ms),
        "KAIROS_LOG_LEVEL": "WARNING",
    }


def bench(args: argparse.Namespace) -> int:
    seconds = 3.0 if args.quick else float(args.duration)
    warmup = 1.0 if args.quick else min(3.0, max(1.0, seconds / 5))
    pin = pinning(not args.no_pin)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH")
    if pin.load is not None:
        os.sched_setaffinity(0, {pin.load})

    print("Kairos feeds bench")
    pinned = pin.describe("wrk, redis-server and this script")
    print(f"  python {platform.python_version()}, {os.cpu_count()} cores, pinning: {pinned}")
    print(
        f"  wrk -t1 -c{args.connections} -d{seconds:.0f}s --latency "
        f"(warm-up {warmup:.0f}s), {args.readers} readers cycled round-robin, feed '{FEED}'"
    )
    print(flush=True)

    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-") as tmp_name:
            tmp = Path(tmp_name)
            return _bench(args, procs, tmp, pin, seconds, warmup)
    finally:
        procs.stop_all()


def _bench(
    args: argparse.Namespace,
    procs: Processes,
    tmp: Path,
    pin: Pinning,
    seconds: float,
    warmup: float,
) -> int:
    redis_url, redis_port = _start_redis(procs, tmp, pin)
    products = _products()
    readers = _readers(args.readers)
    asyncio.run(_seed(redis_url, products, readers))
    expected = asyncio.run(_expected_feeds(products, readers))
    print(
        f"redis-server on port {redis_port}: seeded {len(products)} products, "
        f"{len(readers)} readers (cart of 2 items each)",
        flush=True,
    )

    tokens = Tokens((Secret(SECRET_KEY),))
    feed_paths = [
        f"/v1/feeds/{FEED}?{urlencode({'t': tokens.sign('feed', uid, FEED)})}" for uid, _ in readers
    ]
    feed_bodies = [expected[uid] for uid, _ in readers]
    run = {"seconds": seconds, "warmup": warmup, "connections": args.connections}
    outcomes: dict[str, Outcome] = {}

    kairos = uvicorn_argv("app.app:factory", factory=True)
    for key, name, what, ttl in (
        ("a", "kairos-cached", "Kairos, profile from the in-process cache", 600_000),
        ("b", "kairos-redis", "Kairos, profile read from Redis per request", 0),
    ):
        case = Case(
            key, name, what, kairos, _kairos_env(redis_url, ttl), "/readyz",
            feed_paths, feed_bodies, kairos=True, cached=ttl > 0,
        )  # fmt: skip
        outcomes[key] = _run_case(case, procs, tmp, pin, **run)

    # (c) serves the body server (a) sent for the first reader, re-serialised per request;
    # same URLs as (a), the token is ignored.
    served = outcomes["a"].served
    body_file = tmp / "feed-body.json"
    body_file.write_bytes(served)
    if orjson.dumps(orjson.loads(served)) != served:
        raise BenchError("the feed body does not survive orjson.loads + orjson.dumps")
    case_c = Case(
        "c", "bare-static", "bare Starlette, orjson.dumps of the same feed dict",
        uvicorn_argv("bare:static_app", app_dir=BENCH_DIR),
        {**base_env(), "BENCH_FEED_BODY": str(body_file)}, "/healthz",
        feed_paths, [served] * len(feed_paths),
    )  # fmt: skip
    outcomes["c"] = _run_case(case_c, procs, tmp, pin, **run)

    raw = redis.Redis.from_url(redis_url)
    try:
        stored = [raw.get(profile_key(uid)) for uid, _ in readers]
    finally:
        raw.close()
    if any(s is None for s in stored):
        raise BenchError("a seeded reader is missing from redis")
    case_d = Case(
        "d", "bare-redis", "bare Starlette, 1 redis.asyncio GET + orjson.loads/dumps",
        uvicorn_argv("bare:redis_app", app_dir=BENCH_DIR),
        {**base_env(), "REDIS_URL": redis_url}, "/healthz",
        [f"/v1/feeds/{FEED}?{urlencode({'u': uid})}" for uid, _ in readers],
        [orjson.dumps(orjson.loads(s)) for s in stored],  # type: ignore[arg-type]
    )  # fmt: skip
    outcomes["d"] = _run_case(case_d, procs, tmp, pin, **run)

    _report(outcomes)
    return 0


def _report(outcomes: dict[str, Outcome]) -> None:
    print()
    print(f"{'':2} {'server':<15} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}  what")
    for key, o in outcomes.items():
        r = o.result
        print(
            f"{key:2} {o.case.name:<15} {r.rps:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f}  "
            f"{o.case.what}"
        )
    print()
    for num, den, target in TARGETS:
        ratio = outcomes[num].result.rps / outcomes[den].result.rps
        verdict = "PASS" if ratio >= target else "BELOW"
        print(
            f"{num}/{den} = {ratio:.2f}  (target >= {target:.1f})  {verdict}"
            f"   [{outcomes[num].case.name} / {outcomes[den].case.name}]"
        )
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Kairos feed throughput against bare Starlette baselines (wrk).",
    )
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                        help="length of each measured run (default 10)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=64,
                        help="wrk connections (default 64)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 s runs: a smoke run")
    parser.add_argument("--readers", type=int, default=1000,
                        help="readers seeded and cycled through (default 1000)")  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.readers < 1:
        parser.error("--duration, --connections and --readers must be at least 1")

    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
