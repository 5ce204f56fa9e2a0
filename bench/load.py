"""Load under faults: a bounded mix of open-time, send-time and ingest traffic against
`kairos serve --workers 2` on a real Redis, first healthy, then with Redis killed, with
Redis black-holed and with a hanging upstream.

    .venv/bin/python bench/load.py --short          # 4 s per phase (the default): CI
    .venv/bin/python bench/load.py --long           # 120 s per phase, on demand
    .venv/bin/python bench/load.py --duration 30 --rate 300 --json

It starts its own redis-server (a temporary directory; AOF on, `appendfsync always`, as
the no-loss promise needs: docs/operations.md), two helpers of bench/switch.py, each a
process of its own (a TCP proxy in front of Redis that can turn into a black hole, and a
recommendation model that can hang), and `kairos serve --workers 2` with the proxy as
`REDIS_URL` and the model as `KAIROS_RECS_URL`. It seeds 40 products and 500 readers
(a cart line each, consent given) and signs each reader's open-time URLs as a render
would: its three feeds, three live images, open pixel and a tracked click.

After a 2 s warm-up that is not counted, each phase is an open-loop load of `--rate`
requests/s over `--connections` keep-alive connections of a small raw-asyncio HTTP/1.1
client (cheaper than the server it loads: the machine is shared), readers taken in
turn, with this mix per 100 requests:

    30 feed    GET /v1/feeds/{cart,recommendations,profile}?t=    AMP at open
    25 image   GET /v1/img/{countdown.gif,banner.png,product.png}?t=
    15 pixel   GET /v1/px/{token}.gif                              the open pixel
    10 click   GET /c/{token}?r=                                   tracked click
    15 events  POST /v1/events: 5 events of one reader (page_view, product_view x2,
               add_to_cart, product_view), every id unique
     5 render  POST /v1/render of abandoned_cart, weekly_picks or welcome, with a
               campaign

The phases:

    baseline    nothing broken
    redis-kill  redis-server killed (SIGKILL) at half the phase, started again on the
                same port and AOF at three quarters
    blackhole   Redis black-holed through the proxy from a quarter to three quarters
                (connections accepted, nothing answered, open ones silent)
    upstream    the recommendation model hangs (reads the request, never answers)

An events request answered 503 with Retry-After (ingest's answer when it cannot store),
or 429 with Retry-After (over a rate limit), is retried with the same ids after that
delay, as the SDKs do, until answered 202 or a drain of 15 s after the phase. Then
every event of a request answered 202 is looked up in Redis (the reader's seen ids,
written with its profile by one script): lost = answered 202 but not there.

Prints, per phase, answers/s (retries included), the fallbacks served by reason, the
calls to the recommendation model by result (from /metrics, summed over the workers),
each route's count, p50, p99 and statuses, then the targets: `5xx` (answers >= 500
other than ingest's 503 + Retry-After; target 0), `failed` (no answer: connection
errors, a 10 s timeout; target 0), `lost events` (target 0), `open-time p99` (feeds
and images: target KAIROS_BUDGET_MS + 50 ms), each PASS or FAIL. `--json` prints the
figures as one JSON document on stdout (the text goes to stderr). Exit status: 0 when
the bench ran (whatever the figures), 1 when something broke, 130 on Ctrl-C. Every
process it starts is stopped on the way out.

Over 300 lines because it is one bench: its load, its faults and its report read
together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

import orjson
import redis
import uvloop
from common import (
    ROOT,
    BenchError,
    Processes,
    base_env,
    bench_products,
    free_port,
    metrics,
    run_main,
    tail,
    wait_ready,
    wait_redis,
)

from app.metrics import SHARE_EVERY_S
from app.profiles.schema import validate_profile
from app.settings import Secret, Settings
from app.stores.bundle import redis_stores
from app.stores.redis.keys import seen_key
from app.tokens import Tokens

SECRET_KEY = "kairos-bench-load-0123456789abcdefghijklm"
API_KEY = "kairos-bench-api-key-0123456789ab"
WRITE_KEY = "kairos-bench-write-key-0123456789"
CAMPAIGN = "load"
PRODUCTS = 40
READERS = 500
MIX = (("feed", 30), ("image", 25), ("pixel", 15), ("click", 10), ("events", 15), ("render", 5))
OPEN_TIME = ("feed", "image")
FEEDS = ("cart", "recommendations", "profile")
IMAGES = (("countdown", "gif"), ("banner", "png"), ("product", "png"))
TEMPLATES = ("abandoned_cart", "weekly_picks", "welcome")
PHASES = ("baseline", "redis-kill", "blackhole", "upstream")
MARGIN_MS = 50.0
REQUEST_TIMEOUT_S = 10.0
DRAIN_S = 15.0
SHORT_S, LONG_S = 4.0, 120.0
WARM_S = 2.0


# --- the client -------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1, opened again after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, raw: bytes) -> Answer:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                if self.streams is None:
                    self.streams = await asyncio.open_connection("127.0.0.1", self.port)
                reader, writer = self.streams
                writer.write(raw)
                return await _read_answer(reader)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding") == b"chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return Answer(status, headers, body)


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def _post(path: str, body: bytes, auth: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- what the readers ask for ------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    user: str
    feeds: tuple[bytes, ...]
    images: tuple[bytes, ...]
    pixel: bytes
    click: bytes


def _readers(tokens: Tokens) -> list[Reader]:
    deadline = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    link = tokens.sign("click", "", "https://shop.example.com/p/ld-001", campaign=CAMPAIGN)
    readers = []
    for i in range(READERS):
        user = f"ld-{i:04d}"

        def url(path: str, token: str) -> bytes:
            return _get(f"{path}?{urlencode({'t': token})}")

        feeds = tuple(
            url(f"/v1/feeds/{feed}", tokens.sign("feed", user, feed, campaign=CAMPAIGN))
            for feed in FEEDS
        )
        images = tuple(
            url(
                f"/v1/img/{name}.{fmt}",
                tokens.sign(
                    "image",
                    user,
                    name,
                    campaign=CAMPAIGN,
                    params={"deadline": deadline} if name == "countdown" else None,
                ),
            )  # fmt: skip
            for name, fmt in IMAGES
        )
        pixel = tokens.sign("pixel", user, "open", campaign=CAMPAIGN, variant="A")
        reader = tokens.sign("reader", user, "", campaign=CAMPAIGN, variant="A")
        readers.append(
            Reader(
                user,
                feeds,
                images,
                _get(f"/v1/px/{quote(pixel)}.gif"),
                _get(f"/c/{link}?{urlencode({'r': reader})}"),
            )  # fmt: skip
        )
    return readers


def _profile(i: int) -> dict[str, Any]:
    return validate_profile(
        {
            "first_name": f"Reader{i}",
            "locale": "en-GB",
            "tier": ("gold", "silver", "bronze")[i % 3],
            "loyalty_points": i * 7,
            "cart": [{"sku": f"LD-{i % PRODUCTS:03d}", "qty": 1}],
            "consent": {"personalization": True, "tracking": True},
        }
    )


async def _seed(url: str) -> None:
    stores = redis_stores(url, timeout_s=10.0)
    try:
        products = bench_products(PRODUCTS, "LD", 2.5, 3)
        if await stores.catalog.put_products(products) != len(products):
            raise BenchError("seeding: fewer products stored than given")
        readers = [(f"ld-{i:04d}", _profile(i)) for i in range(READERS)]
        if await stores.profiles.put_many(readers) != len(readers):
            raise BenchError("seeding: fewer readers stored than given")
    finally:
        await stores.close()


def _events(user: str, nonce: str, number: int) -> tuple[bytes, tuple[str, ...]]:
    """One events request's body and its ids."""
    kinds = ("page_view", "product_view", "product_view", "add_to_cart", "product_view")
    events, ids = [], []
    for k, kind in enumerate(kinds):
        event_id = f"{nonce}-{number}-{k}"
        sku = f"LD-{(number + k) % PRODUCTS:03d}"
        url = f"https://shop.example.com/p/{sku.lower()}"
        props: dict[str, Any] = {"url": url} if kind == "page_view" else {"sku": sku, "url": url}
        events.append({"event_id": event_id, "type": kind, "user_id": user, "properties": props})
        ids.append(event_id)
    return orjson.dumps({"events": events}), tuple(ids)


# --- one phase ----------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    server_errors: int = 0
    failed: int = 0
    retried: int = 0
    fallbacks: Counter[str] = field(default_factory=Counter)  # by reason
    # An events request answered 202: its first id -> (its reader, its ids).
    accepted: dict[str, tuple[str, ...]] = field(default_factory=dict)
    events_sent: int = 0  # events requests sent (retries not counted)
    unanswered: int = 0  # events requests never answered 202 (503/429 until the drain's end)

    def record(self, route: str, seconds: float, answer: Answer | None) -> None:
        if answer is None:
            self.failed += 1
            return
        self.latencies.setdefault(route, []).append(seconds)
        self.statuses.setdefault(route, Counter())[answer.status] += 1
        reason = answer.headers.get(b"x-kairos-fallback")
        if reason is not None:
            self.fallbacks[reason.decode(errors="replace")] += 1
        retry = route == "events" and answer.status == 503 and b"retry-after" in answer.headers
        if answer.status >= 500 and not retry:
            self.server_errors += 1


class Load:
    """The open-loop load of one phase; events answered 503 or 429 retried in the
    background."""

    def __init__(
        self, port: int, readers: Sequence[Reader], rate: float, connections: int, nonce: str
    ) -> None:
        self.port, self.readers, self.rate, self.nonce = port, readers, rate, nonce
        self.connections = connections
        self.tally = Tally()
        self.retries: set[asyncio.Task[None]] = set()
        self.number = 0
        slots = [route for route, weight in MIX for _ in range(weight)]
        # Spread each route over the hundred slots, so that a short run still mixes.
        self.slots = tuple(slots[(i * 37) % len(slots)] for i in range(len(slots)))

    async def run(self, seconds: float) -> None:
        start = time.perf_counter()
        gap = self.connections / self.rate
        await asyncio.gather(
            *(
                self._worker(start + i / self.rate, gap, start + seconds)
                for i in range(self.connections)
            )
        )

    async def drain(self) -> None:
        if self.retries:
            await asyncio.wait(self.retries, timeout=DRAIN_S)
        for task in self.retries:
            task.cancel()

    async def _worker(self, first: float, gap: float, end: float) -> None:
        connection = Connection(self.port)
        at = first
        try:
            while at < end:
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.number += 1
                await self._one(connection, self.number)
                at += gap
        finally:
            connection.close()

    async def _one(self, connection: Connection, number: int) -> None:
        route = self.slots[number % len(self.slots)]
        reader = self.readers[(number * 7919) % len(self.readers)]
        if route == "feed":
            raw = reader.feeds[number % len(reader.feeds)]
        elif route == "image":
            raw = reader.images[number % len(reader.images)]
        elif route == "pixel":
            raw = reader.pixel
        elif route == "click":
            raw = reader.click
        elif route == "render":
            template = TEMPLATES[number % len(TEMPLATES)]
            body = {"template": template, "user_id": reader.user, "campaign": CAMPAIGN}
            raw = _post("/v1/render", orjson.dumps(body), API_KEY)
        else:
            body_bytes, ids = _events(reader.user, self.nonce, number)
            self.tally.events_sent += 1
            raw = _post("/v1/events", body_bytes, WRITE_KEY)
        answer = await self._send(connection, route, raw)
        if route == "events":
            self._settle(reader.user, ids, raw, answer)

    async def _send(self, connection: Connection, route: str, raw: bytes) -> Answer | None:
        started = time.perf_counter()
        try:
            answer: Answer | None = await connection.send(raw)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            answer = None
        self.tally.record(route, time.perf_counter() - started, answer)
        return answer

    def _settle(self, user: str, ids: tuple[str, ...], raw: bytes, answer: Answer | None) -> None:
        if answer is not None and answer.status == 202:
            self.tally.accepted[ids[0]] = (user, *ids)
        elif (delay := _retry_after(answer)) is not None:
            task = asyncio.create_task(self._retry(user, ids, raw, delay))
            self.retries.add(task)
            task.add_done_callback(self.retries.discard)
        else:
            self.tally.unanswered += 1

    async def _retry(self, user: str, ids: tuple[str, ...], raw: bytes, delay: float) -> None:
        connection = Connection(self.port)
        try:
            while True:
                await asyncio.sleep(delay)
                self.tally.retried += 1
                answer = await self._send(connection, "events", raw)
                if answer is not None and answer.status == 202:
                    self.tally.accepted[ids[0]] = (user, *ids)
                    return
                next_delay = _retry_after(answer)
                if next_delay is None:
                    self.tally.unanswered += 1
                    return
                delay = next_delay
        except asyncio.CancelledError:
            self.tally.unanswered += 1
            raise
        finally:
            connection.close()


def _retry_after(answer: Answer | None) -> float | None:
    """The delay after which an answer asks to be retried: 503 (not stored) or 429 (over a
    rate limit) with Retry-After in seconds; None for any other answer."""
    if answer is None or answer.status not in (429, 503):
        return None
    value = answer.headers.get(b"retry-after", b"")
    return float(value) if value.isascii() and value.isdigit() else None


def lost_events(redis_port: int, accepted: dict[str, tuple[str, ...]]) -> int:
    """Events of requests answered 202 that are not among their reader's seen ids."""
    client = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=10)
    lost = 0
    try:
        entries = list(accepted.values())
        for at in range(0, len(entries), 500):
            pipe = client.pipeline(transaction=False)
            for user, *ids in entries[at : at + 500]:
                for event_id in ids:
                    pipe.zscore(seen_key(user), event_id)
            lost += sum(1 for score in pipe.execute() if score is None)
    finally:
        client.close()
    return lost


# --- the processes --------------------------------------------------------------------------


class Redis:
    """redis-server on a fixed port and folder, with AOF: killed, it comes back whole."""

    def __init__(self, procs: Processes, tmp: Path) -> None:
        self.procs, self.port, self.dir = procs, free_port(), tmp / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.spawn()
        self.ready()

    def spawn(self) -> None:
        """Started from the main thread: a child started from a worker thread would get
        SIGTERM when that thread ends (the benches' die-with-parent)."""
        argv = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
            "--dir", str(self.dir), "--save", "", "--appendonly", "yes",
            "--appendfsync", "always", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        self.proc = self.procs.start(
            "redis-server", argv, env=dict(os.environ), log=self.dir / "log"
        )

    def ready(self) -> None:
        assert self.proc is not None
        wait_redis(self.proc, self.port, self.dir / "log")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.procs.stop(self.proc)


class Helper:
    """A bench/switch.py process; `fault(True)` turns its fault on."""

    def __init__(self, procs: Processes, tmp: Path, role: str, *args: int) -> None:
        self.port = free_port()
        argv = [sys.executable, str(ROOT / "bench" / "switch.py"), role, str(self.port)]
        log = tmp / f"{role}.log"
        self.proc = procs.start(role, [*argv, *map(str, args)], env=base_env(), log=log)
        deadline = time.monotonic() + 30
        while "ready" not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"{role} helper did not start:\n{tail(log)}")
            time.sleep(0.05)

    def fault(self, on: bool) -> None:
        self.proc.send_signal(signal.SIGUSR1 if on else signal.SIGUSR2)


def kairos_env(tmp: Path, proxy: int, model: int) -> dict[str, str]:
    return {
        **base_env(),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_WRITE_KEYS": WRITE_KEY,
        "KAIROS_DEMO_DATA": "false",
        "KAIROS_LOG_LEVEL": "WARNING",
        "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
        "KAIROS_UPSTREAM_HOSTS": "127.0.0.1",
        "KAIROS_RECS_URL": f"http://127.0.0.1:{model}/recs",
        "REDIS_URL": f"redis://127.0.0.1:{proxy}/0",
        "TMPDIR": str(tmp),
    }


# --- the bench ----------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float
    tally: Tally
    lost: int
    upstream: dict[str, int]  # calls to the recommendation model, by result


async def _phase(
    name: str, args: argparse.Namespace, port: int, readers: Sequence[Reader],
    redis_server: Redis, proxy: Helper, model: Helper,
) -> Phase:  # fmt: skip
    seconds = args.duration
    load = Load(port, readers, args.rate, args.connections, f"{name}-{os.getpid()}")
    before = _upstream_calls(port)
    running = asyncio.create_task(load.run(seconds))
    loop = asyncio.get_running_loop()
    try:
        if name == "redis-kill":
            await asyncio.sleep(seconds / 2)
            redis_server.kill()
            await asyncio.sleep(seconds / 4)
            redis_server.spawn()
            await loop.run_in_executor(None, redis_server.ready)
        elif name == "blackhole":
            await asyncio.sleep(seconds / 4)
            proxy.fault(True)
            await asyncio.sleep(seconds / 2)
            proxy.fault(False)
        elif name == "upstream":
            model.fault(True)
        await running
    finally:
        model.fault(False)
        proxy.fault(False)
    await load.drain()
    lost = await loop.run_in_executor(None, lost_events, redis_server.port, load.tally.accepted)
    # Every worker's numbers are in a scrape within SHARE_EVERY_S.
    await asyncio.sleep(SHARE_EVERY_S * 1.5)
    after = _upstream_calls(port)
    calls = {k: int(after[k] - before.get(k, 0)) for k in after if after[k] > before.get(k, 0)}
    return Phase(name, seconds, load.tally, lost, calls)


def _upstream_calls(port: int) -> dict[str, float]:
    """Calls to the recommendation model so far, by result, summed over the workers."""
    found: dict[str, float] = {}
    for name, labels, value in metrics(port):
        if name == "kairos_recs_upstream_total":
            found[labels["result"]] = found.get(labels["result"], 0.0) + value
    return found


async def _warm(port: int, readers: Sequence[Reader]) -> None:
    """What a first request builds once (templates' per-reader parts, fonts, the image
    pool, connections to Redis in both workers), built before anything is measured."""
    load = Load(port, readers, rate=len(MIX) * 20.0, connections=4, nonce=f"warm-{os.getpid()}")
    await load.run(WARM_S)
    await load.drain()


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def _figures(phase: Phase, budget_ms: int) -> dict[str, Any]:
    tally = phase.tally
    routes = {
        route: {
            "count": len(values),
            "p50_ms": round(_ms(values, 0.50), 1),
            "p99_ms": round(_ms(values, 0.99), 1),
            "statuses": {str(k): v for k, v in sorted(tally.statuses[route].items())},
        }
        for route, values in tally.latencies.items()
    }
    open_time = [v for route in OPEN_TIME for v in tally.latencies.get(route, [])]
    answered = sum(len(v) for v in tally.latencies.values())
    return {
        "phase": phase.name,
        "seconds": phase.seconds,
        "requests_per_s": round(answered / phase.seconds, 1),
        "routes": routes,
        "fallbacks": dict(tally.fallbacks.most_common()),
        "upstream_calls": phase.upstream,
        "events_retried": tally.retried,
        "events_requests_sent": tally.events_sent,
        "events_requests_accepted": len(tally.accepted),
        "events_requests_unanswered": tally.unanswered,
        "server_errors": tally.server_errors,
        "failed": tally.failed,
        "lost_events": phase.lost,
        "open_time_p99_ms": round(_ms(open_time, 0.99), 1),
        "open_time_target_ms": budget_ms + MARGIN_MS,
    }


def _report(out: TextIO, figures: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    fallbacks = " ".join(f"{k}:{v}" for k, v in figures["fallbacks"].items()) or "none"
    print(f"\n{figures['phase']}: {figures['requests_per_s']:.0f} requests/s over "
          f"{figures['seconds']:.0f} s; fallbacks served by reason: {fallbacks}; "
          f"{figures['events_retried']} events requests retried (503, 429)",
          file=out)  # fmt: skip
    print(f"  events requests answered 202: {figures['events_requests_accepted']} of "
          f"{figures['events_requests_sent']}", file=out)  # fmt: skip
    calls = " ".join(f"{k}:{v}" for k, v in sorted(figures["upstream_calls"].items())) or "none"
    print(f"  recommendation model calls (/metrics, every worker) by result: {calls}", file=out)
    print(f"  {'route':<8} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}  statuses", file=out)
    for route, row in sorted(figures["routes"].items()):
        statuses = " ".join(f"{k}:{v}" for k, v in row["statuses"].items())
        print(f"  {route:<8} {row['count']:>7} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}  "
              f"{statuses}", file=out)  # fmt: skip
    target = figures["open_time_target_ms"]
    rows = (
        ("5xx", figures["server_errors"], "0", figures["server_errors"] == 0),
        ("failed", figures["failed"], "0", figures["failed"] == 0),
        ("lost events", figures["lost_events"], "0", figures["lost_events"] == 0),
        ("open-time p99 ms", figures["open_time_p99_ms"], f"<= {target:.0f}",
         figures["open_time_p99_ms"] <= target),
    )  # fmt: skip
    for label, value, want, ok in rows:
        print(f"  target {label:<17} {value:>8} (want {want:<6}) {verdict(ok)}", file=out)
    out.flush()


def bench(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json else sys.stdout
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="kairos-bench-load-"))
    try:
        redis_server = Redis(procs, tmp)
        redis_server.start()
        proxy = Helper(procs, tmp, "redis", redis_server.port)
        model = Helper(procs, tmp, "upstream")
        env = kairos_env(tmp, proxy.port, model.port)
        budget_ms = Settings.from_env(env).budget_ms
        asyncio.run(_seed(f"redis://127.0.0.1:{redis_server.port}/0"))
        port = free_port()
        argv = [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)]
        log = tmp / "kairos.log"
        server = procs.start("kairos", argv, env=env, log=log)
        wait_ready("kairos", server, port, "/readyz", log)
        readers = _readers(Tokens((Secret(SECRET_KEY),)))
        uvloop.run(_warm(port, readers))
        print(
            f"load: kairos serve --workers 2 on Redis (through a switchable proxy), "
            f"{args.rate:.0f} requests/s over {args.connections} connections, "
            f"{args.duration:.0f} s per phase, budget {budget_ms} ms",
            file=out,
            flush=True,
        )
        results = []
        for name in args.phases:
            phase = uvloop.run(_phase(name, args, port, readers, redis_server, proxy, model))
            if server.poll() is not None:
                raise BenchError(f"kairos exited during {name}:\n{tail(log)}")
            figures = _figures(phase, budget_ms)
            _report(out, figures)
            results.append(figures)
        if args.json:
            print(json.dumps({"budget_ms": budget_ms, "phases": results}, indent=2), flush=True)
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load with Redis killed, black-holed and a hanging upstream: 5xx, lost "
        "events and open-time p99 per phase.",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help=f"length of each phase (default {SHORT_S:.0f})")  # fmt: skip
    parser.add_argument("--short", action="store_true",
                        help=f"{SHORT_S:.0f} s per phase: what CI runs")  # fmt: skip
    parser.add_argument("--long", action="store_true",
                        help=f"{LONG_S:.0f} s per phase, on demand")  # fmt: skip
    parser.add_argument("--rate", type=float, default=200.0,
                        help="requests per second sent (default 200)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=16,
                        help="keep-alive connections (default 16)")  # fmt: skip
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                        help="which phases, in order (default: all)")  # fmt: skip
    parser.add_argument("--json", action="store_true",
                        help="the figures as JSON on stdout (the text on stderr)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.short and args.long:
        parser.error("--short or --long, not both")
    if args.duration is None:
        args.duration = LONG_S if args.long else SHORT_S
    if args.duration < 2 or args.rate < 1 or args.connections < 1:
        parser.error("--duration must be at least 2, --rate and --connections at least 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
