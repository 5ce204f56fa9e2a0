"""Events benchmark: events/s one Kairos process accepts, beside Redis's own figure for the
per-event script, and how soon an event shows in a feed served by another process.

    .venv/bin/python bench/events.py [--duration 10] [--connections 16]
    .venv/bin/python bench/events.py --quick        # 3 s runs, 50 trials: a smoke test
    .venv/bin/python bench/events.py --profile 25 --py-spy /path/to/py-spy
    .venv/bin/python bench/events.py --warm-readers 0   # every reader read before its write
    .venv/bin/python bench/events.py --no-cooccurrence  # what co-occurrence costs

It starts its own redis-server (temporary directory, no persistence, pinned to the load
core) and seeds it through Kairos's Redis stores: a catalog of 200 products and 20,000
readers per case (consent given, a cart line each): each case runs on readers of its
own, seeded alike, since a profile grows with the events applied to it (carts, views,
purchases) and its size drives the cost of each event. Then:

  g  the generator's own ceiling: the same wrk scripts against a sink (`sink_app` below, a
     bare ASGI app that reads the body and answers a fixed 202), so the figures below are
     known not to be the generator's
  a  native       POST /v1/events, requests of 100 events from 100 distinct readers
  b  segment      POST /segment/v1/batch, the same events as Segment messages (Basic auth
                  with the write key, `sentAt`, the SDKs' message shape)
  c  segment-gz   the same with `Content-Encoding: gzip` (bodies gzipped before the run)
     in-process   the CPU per event of each step of ingest (parse, translate, check, read,
                  reduce, write), timed in this process on the server's core, no HTTP;
                  `--profile N` adds a cProfile of Ingest.ingest
  r  redis-benchmark -P 100 of EVALSHA scripts doing an event's Redis work (r1: GET the
     profile, SET it, ZADD an id, ZADD a history entry, PUBLISH, as the issue names it;
     r2: everything Kairos's write script does for one event), with a subscriber on the
     changes channel as Kairos has: Redis's own events/s ceiling on this machine
  l  event-to-feed latency: two Kairos processes sharing the Redis; an add_to_cart posted
     to A, then B's signed cart feed polled until it shows the new line, timed from the
     moment A's 202 arrived (B's profile cache is on, so B sees the change only through
     the change channel: checked first with a write that is not announced)
  s  event-to-segment latency: the same two processes; a reader's third view of one
     product posted to A, then B's GET /v1/profiles/{id} polled until it shows the reader
     in `browsing_intent`, timed from A's 202

The servers run as shipped: the default segment rules (`templates/segments.toml`),
evaluated on every event, and co-occurrence counted on ingest (`--no-cooccurrence`
turns it off, to see its cost).

Each Kairos server is `uvicorn --factory app.app:factory` (uvloop, httptools, 1 worker, no
access log) pinned with taskset: the one under load on core 0; wrk (-t1), redis-server
and this script on core 1 (B of the latency test too). A request's 100 readers are a
block of the 20,000, the next request takes the next block, so concurrent requests never
touch the same reader; every event id is unique (a per-run nonce and the request's
number, filled in by wrk's Lua script). The mix per request: 45 product_view, 30
page_view, 20 add_to_cart, 5 purchase, over the catalog's products.

A server keeps the last profile it wrote for up to KAIROS_EVENTS_WARM_READERS readers
(default 20,000) and skips the read for them: with 20,000 readers cycled, every reader
comes back within about a second, so after the first pass the runs are served from those
copies (each run prints the share). `--warm-readers 0` measures every reader read first,
as for readers that do not come back to the same server.

Checks: a request of each case answers 202 (200 for Segment) with 100 accepted before
measuring; after, Kairos's /metrics must count the run's events as accepted (no
duplicate, drop or rejection) and wrk must have seen no non-2xx answer or socket error.

Prints events/s per case (wrk's requests/s x 100) with the CPU each process used and what
every other process on the machine used meanwhile (a shared machine shows there), events
per CPU-second of the server, the ratio Kairos events/s / redis-benchmark scripts/s, the
latencies' p50/p99, and PASS/BELOW against the targets (>= 15,000 events/s per process
with the default rules and co-occurrence on, the segments issue's; event-to-feed and
event-to-segment p99 <= 100 ms). Before segments and co-occurrence, the events issue's
target was 20,000 (docs/benchmarks.md has both). `--py-spy PATH` samples the server during each
measured run and prints where its time went. Exit status: 0 when the bench ran (whatever
the figures), 1 when something broke, 130 on Ctrl-C. Every process it starts is stopped
on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import functools
import gc
import gzip
import io
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis
import uvloop
from common import (
    ROOT,
    BenchError,
    Client,
    Pinning,
    Processes,
    WrkResult,
    base_env,
    bench_products,
    cpu_seconds,
    die_with_parent,
    free_port,
    lua_string,
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

from app.events.intake import SegmentBody, native_events
from app.events.model import check_event
from app.events.privacy import ReaderHashes
from app.events.reduce import reduce
from app.http import parse_json
from app.profiles.schema import validate_profile
from app.services import build_services
from app.settings import Secret, Settings
from app.stores.bundle import redis_stores
from app.stores.protocols import ReaderAsk
from app.stores.redis.keys import CHANGES_CHANNEL, history_key, profile_key
from app.tokens import Tokens

SECRET_KEY = "kairos-bench-events-0123456789abcdefghij"  # fixed, 40 characters
WRITE_KEY = "kairos-bench-write-key-0123456789"
API_KEY = "kairos-bench-api-key-0123456789ab"
PUBLIC_URL = "http://127.0.0.1:8000"
assert len(SECRET_KEY) == 40
PER_REQUEST = 100  # events in one request, from as many distinct readers
PRODUCTS = 200
MIX = (("product_view", 45), ("page_view", 30), ("add_to_cart", 20), ("purchase", 5))
TEMPLATES = 20  # request bodies with different types and skus per reader, cycled
FEED = "cart"
TARGET_EVENTS_S = 15_000.0  # with the default segment rules and co-occurrence on
TARGET_P99_MS = 100.0
POLL_TIMEOUT_S = 2.0  # a trial whose change has not shown by then counts as this long
NATIVE_PATH = "/v1/events"
SEGMENT_PATH = "/segment/v1/batch"
BASIC = "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
LIBRARY = {"name": "analytics-node", "version": "2.1.0"}


# --- data -------------------------------------------------------------------------------


def _products() -> list[dict[str, Any]]:
    return bench_products(PRODUCTS, "EV", 1.25, 4)


def _reader_id(block: int, j: int, case: str = "a") -> str:
    return f"ev{case}-{block}-{j}"


def _profile(i: int) -> dict[str, Any]:
    return validate_profile(
        {
            "first_name": f"Reader{i}",
            "locale": "en-GB",
            "tier": ("gold", "silver", "bronze")[i % 3],
            "cart": [{"sku": f"EV-{i % PRODUCTS:04d}", "qty": 1}],
            "consent": {"personalization": True, "tracking": True},
        }
    )


async def _seed(url: str, products: list[dict[str, Any]], readers: list[Any]) -> None:
    stores = redis_stores(url, timeout_s=10.0)
    try:
        if await stores.catalog.put_products(products) != len(products):
            raise BenchError("seeding: put_products stored fewer products than given")
        for at in range(0, len(readers), 5000):
            part = readers[at : at + 5000]
            if await stores.profiles.put_many(part) != len(part):
                raise BenchError("seeding: put_many stored fewer readers than given")
    finally:
        await stores.close()


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- request bodies ---------------------------------------------------------------------
#
# A template is one request's body with two holes: `@K@` (the request's nonce and number,
# the start of each event id) and `@B@` (the block of readers). Request k of a run uses
# template (k // blocks) % TEMPLATES and block k % blocks: wrk's Lua script fills the
# holes per request (bench-side the same is done in Python for the gzipped bodies).

KEY_HOLE, BLOCK_HOLE = "@K@", "@B@"


def _types() -> list[str]:
    return [kind for kind, n in MIX for _ in range(n)]


def _template_reader(j: int, case: str) -> str:
    """Reader j of a template's block, the block left as a hole."""
    return _reader_id(0, j, case).replace("-0-", f"-{BLOCK_HOLE}-", 1)


def _native_event(j: int, kind: str, product: dict[str, Any], ts: str, case: str) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": f"{KEY_HOLE}-{j}",
        "user_id": _template_reader(j, case),
        "type": kind,
        "ts": ts,
    }
    sku = product["sku"]
    if kind == "page_view":
        event["properties"] = {"url": product["url"], "title": product["title"]}
    elif kind == "purchase":
        event["properties"] = {
            "order_id": f"o-{KEY_HOLE}-{j}",
            "items": [{"sku": sku, "qty": 1, "price": product["price"]}],
            "total": product["price"],
            "currency": "EUR",
        }
    else:
        event["properties"] = {
            "sku": sku,
            "title": product["title"],
            "price": product["price"],
            "currency": "EUR",
            "url": product["url"],
        }
    return event


def _segment_message(
    j: int, kind: str, product: dict[str, Any], ts: str, case: str
) -> dict[str, Any]:
    """The message analytics-node's `track`/`page` would send for the same event."""
    message: dict[str, Any] = {
        "messageId": f"{KEY_HOLE}-{j}",
        "userId": _template_reader(j, case),
        "timestamp": ts,
        "context": {"library": LIBRARY},
        "integrations": {},
    }
    sku = product["sku"]
    if kind == "page_view":
        message.update(type="page", name=product["title"], properties={"url": product["url"]})
        return message
    message["type"] = "track"
    if kind == "purchase":
        message["event"] = "Order Completed"
        message["properties"] = {
            "order_id": f"o-{KEY_HOLE}-{j}",
            "total": product["price"],
            "currency": "EUR",
            "products": [{"product_id": sku, "sku": sku, "quantity": 1, "price": product["price"]}],
        }
    else:
        message["event"] = "Product Viewed" if kind == "product_view" else "Product Added"
        message["properties"] = {
            "product_id": sku,
            "sku": sku,
            "name": product["title"],
            "price": product["price"],
            "currency": "EUR",
            "url": product["url"],
        }
    return message


def templates(
    dialect: str, products: list[dict[str, Any]], now: datetime, case: str = "a"
) -> list[str]:
    """The request bodies of `dialect`, for the readers of `case` (each case has readers
    of its own, seeded alike: a case must not meet profiles an earlier case grew)."""
    types = _types()
    ts = _iso(now - timedelta(seconds=1))
    sent_at = _iso(now)
    out = []
    for t in range(TEMPLATES):
        items = []
        for j in range(PER_REQUEST):
            kind = types[(j + 37 * t) % len(types)]
            product = products[(7 * j + 13 * t) % len(products)]
            if dialect == "native":
                items.append(_native_event(j, kind, product, ts, case))
            else:
                items.append(_segment_message(j, kind, product, ts, case))
        if dialect == "native":
            body: dict[str, Any] = {"events": items}
        else:
            body = {"batch": items, "sentAt": sent_at, "writeKey": WRITE_KEY}
        text = orjson.dumps(body).decode()
        if "\r" in text or "%" in text:  # neither a Lua long string nor gsub would keep it
            raise BenchError("a template has a character the Lua script cannot carry")
        out.append(text)
    return out


def fill(template_list: Sequence[str], blocks: int, nonce: str, k: int) -> str:
    """Request k's body, exactly as the Lua script makes it."""
    body = template_list[(k // blocks) % len(template_list)]
    return body.replace(KEY_HOLE, f"{nonce}-{k}").replace(BLOCK_HOLE, str(k % blocks))


# --- wrk scripts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Dialect:
    key: str
    name: str
    path: str
    headers: dict[str, str]
    what: str
    gzip: bool = False
    metric: str = "native"  # the `dialect` label of kairos_events_total
    status: int = 202


NATIVE = Dialect(
    "a", "native", NATIVE_PATH,
    {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_KEY}"},
    "POST /v1/events, Bearer write key",
)  # fmt: skip
SEGMENT = Dialect(
    "b", "segment", SEGMENT_PATH,
    {"Content-Type": "application/json", "Authorization": BASIC},
    "POST /segment/v1/batch, Basic auth, sentAt", metric="segment", status=200,
)  # fmt: skip
SEGMENT_GZ = Dialect(
    "c", "segment-gz", SEGMENT_PATH,
    {"Content-Type": "application/json", "Authorization": BASIC, "Content-Encoding": "gzip"},
    "the same, gzip bodies", gzip=True, metric="segment", status=200,
)  # fmt: skip


def _lua_headers(headers: dict[str, str]) -> str:
    return (
        "{" + ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers.items()) + "}"
    )


def lua_templates(dialect: Dialect, tpl: Sequence[str], blocks: int, path: Path) -> Path:
    """A wrk script filling the templates per request; the nonce is wrk's first argument."""
    listed = ",\n".join(lua_string(t) for t in tpl)
    path.write_text(
        f"local templates = {{\n{listed}\n}}\n"
        f"local blocks = {blocks}\n"
        f"local headers = {_lua_headers(dialect.headers)}\n"
        "local T = #templates\n"
        "local nonce = 'x'\n"
        "local k = 0\n"
        "function init(args)\n"
        "  if args[1] then nonce = args[1] end\n"
        "end\n"
        "function request()\n"
        "  local body = templates[math.floor(k / blocks) % T + 1]\n"
        "  body = body:gsub('@K@', nonce .. '-' .. string.format('%d', k))\n"
        "  body = body:gsub('@B@', string.format('%d', k % blocks))\n"
        "  k = k + 1\n"
        f"  return wrk.format('POST', {lua_string(dialect.path)}, headers, body)\n"
        "end\n"
    )
    return path


def lua_bodies(dialect: Dialect, bodies: Sequence[bytes], path: Path) -> Path:
    """A wrk script sending prepared (gzipped) bodies in order, read from a file at init;
    past the last one it starts again (which the bench sees as duplicates)."""
    data = path.with_suffix(".bin")
    data.write_bytes(b"".join(bodies))
    sizes = ", ".join(str(len(b)) for b in bodies)
    path.write_text(
        f"local sizes = {{{sizes}}}\n"
        f"local headers = {_lua_headers(dialect.headers)}\n"
        "local bodies = {}\n"
        "local k = 0\n"
        "function init(args)\n"
        f"  local f = assert(io.open({lua_string(str(data))}, 'rb'))\n"
        "  local all = f:read('*a')\n"
        "  f:close()\n"
        "  local at = 1\n"
        "  for i, n in ipairs(sizes) do\n"
        "    bodies[i] = all:sub(at, at + n - 1)\n"
        "    at = at + n\n"
        "  end\n"
        "end\n"
        "function request()\n"
        "  k = k + 1\n"
        "  return wrk.format('POST', "
        f"{lua_string(dialect.path)}, headers, bodies[(k - 1) % #bodies + 1])\n"
        "end\n"
    )
    return path


def _wrk(
    port: int, script: Path, seconds: float, connections: int, pin: Pinning, *args: str
) -> tuple[WrkResult, float]:
    """wrk with arguments for the script's init; its result and the CPU seconds wrk used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if args:
        # run_wrk has no place for script arguments: a copy of the script that sets them.
        argv_lua = ", ".join(lua_string(a) for a in args)
        wrapped = script.with_name(f"{script.stem}-{args[0]}.lua")
        wrapped.write_text(
            script.read_text() + f"local _init = init\nfunction init(a) _init({{{argv_lua}}}) end\n"
        )
        script = wrapped
    result = run_wrk(port, script, seconds, connections, pin, timeout_s=10.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, used


def busy_seconds() -> float:
    """CPU time all cores of the machine have been busy so far (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- the sink: the generator's ceiling ---------------------------------------------------

SINK_ANSWER = orjson.dumps({"accepted": PER_REQUEST, "duplicates": 0, "dropped": 0, "rejected": []})


async def sink_app(scope: dict[str, Any], receive: Callable[..., Any], send: Any) -> None:
    """A bare ASGI app: reads a request's whole body and answers a fixed 202 (200 to a
    GET, for the readiness check). What wrk can push through uvicorn with these bodies."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    status = 200 if scope["method"] == "GET" else 202
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": SINK_ANSWER})


# --- Kairos -----------------------------------------------------------------------------


def kairos_env(
    redis_url: str, warm_readers: int | None = None, cooccurrence: bool = True
) -> dict[str, str]:
    warm = {} if warm_readers is None else {"KAIROS_EVENTS_WARM_READERS": str(warm_readers)}
    return {
        **base_env(),
        **warm,
        "KAIROS_RECS_COOCCURRENCE": "true" if cooccurrence else "false",
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_PUBLIC_URL": PUBLIC_URL,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_WRITE_KEYS": WRITE_KEY,
        "REDIS_URL": redis_url,
        "KAIROS_DEMO_DATA": "false",
        # Long enough that server B can only see an event through the change channel.
        "KAIROS_CACHE_TTL_MS": "600000",
        "KAIROS_LOG_LEVEL": "WARNING",
    }


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


def start_server(
    procs: Processes, tmp: Path, name: str, argv: list[str], env: dict[str, str],
    core: int | None, ready: str,
) -> Server:  # fmt: skip
    port = free_port()
    full = [*argv, "--port", str(port)]
    if core is not None:
        full = ["taskset", "-c", str(core), *full]
    log = tmp / f"server-{name}.log"
    proc = procs.start(name, full, env=env, log=log)
    wait_ready(name, proc, port, ready, log)
    return Server(name, port, proc, log)


def _alive(server: Server) -> None:
    if server.proc.poll() is not None:
        raise BenchError(f"{server.name}: died:\n{tail(server.log)}")


def _event_counts(port: int) -> dict[tuple[str, str], float]:
    samples = metrics(port)
    counts = {
        (dialect, outcome): total(samples, "kairos_events_total", dialect=dialect, outcome=outcome)
        for dialect in ("native", "segment")
        for outcome in ("accepted", "duplicate", "dropped", "rejected")
    }
    for result in ("copy", "read", "refused"):
        counts["warm", result] = total(samples, "kairos_events_warm_readers_total", result=result)
    return counts


def _post(port: int, dialect: Dialect, body: bytes) -> dict[str, Any]:
    client = Client(port, timeout=30.0)
    try:
        answer = client.request("POST", dialect.path, body=body, headers=dialect.headers)
    finally:
        client.close()
    if answer.status != dialect.status:
        raise BenchError(
            f"{dialect.name}: answered {answer.status}, not {dialect.status}: {answer.body[:400]!r}"
        )
    doc: dict[str, Any] = orjson.loads(answer.body)
    return doc


@dataclass
class Outcome:
    key: str
    name: str
    what: str
    result: WrkResult
    seconds: float
    server_cpu: float  # share of one core the server process used during the run
    redis_cpu: float
    wrk_cpu: float
    body_bytes: float  # mean request body size on the wire
    # What every other process on the machine used meanwhile (this script, py-spy, and
    # whatever else runs here): more than a few % means the figures are disturbed.
    other_cpu: float = 0.0

    @property
    def events_s(self) -> float:
        return self.result.rps * PER_REQUEST


@dataclass
class Run:
    seconds: float
    warmup: float
    connections: int
    blocks: int


def measure_kairos(
    server: Server, redis_pid: int, dialect: Dialect, tpl: Sequence[str], run: Run,
    pin: Pinning, tmp: Path, estimate_rps: float | None, py_spy: str | None = None,
) -> Outcome:  # fmt: skip
    """Warm up, then the measured run, for one dialect; checks /metrics after."""
    port = server.port
    # One request first, outside wrk: the answer must accept all 100 events.
    probe = fill(tpl, run.blocks, f"probe{dialect.name}{time.time_ns()}", 0).encode()
    doc = _post(port, dialect, gzip.compress(probe) if dialect.gzip else probe)
    if doc.get("accepted") != PER_REQUEST or doc.get("rejected"):
        raise BenchError(f"{dialect.name}: the probe request was not all accepted: {doc}")

    nonce = f"{dialect.name}{int(time.time())}"
    if dialect.gzip:
        # Enough gzipped bodies for the warm-up and the run at twice the rate of the
        # uncompressed run (300 requests/s at least), so no id repeats.
        rate = max(2.0 * (estimate_rps or 0.0), 300.0)
        script_w = _gzip_script(dialect, tpl, run, tmp, f"{nonce}w", rate * run.warmup)
        script_m = _gzip_script(dialect, tpl, run, tmp, f"{nonce}m", rate * run.seconds)
        warm_args: tuple[str, ...] = ()
        run_args: tuple[str, ...] = ()
    else:
        script_w = script_m = lua_templates(dialect, tpl, run.blocks, tmp / f"{dialect.name}.lua")
        warm_args, run_args = (f"{nonce}w",), (f"{nonce}m",)
    warm, _ = _wrk(port, script_w, run.warmup, run.connections, pin, *warm_args)
    if warm.non_2xx or warm.socket_errors:
        raise BenchError(f"{dialect.name}: warm-up saw errors:\n{warm.raw}")
    _alive(server)
    time.sleep(0.3)  # the warm-up's last requests finish
    before = _event_counts(port)
    s0, r0, m0 = cpu_seconds(server.proc.pid), cpu_seconds(redis_pid), busy_seconds()
    t0 = time.monotonic()
    spy = None
    if py_spy is not None:
        spy_out = tmp / f"py-spy-{dialect.name}.txt"
        spy = py_spy_start(py_spy, server.proc.pid, run.seconds, spy_out, pin)
    result, wrk_cpu = _wrk(port, script_m, run.seconds, run.connections, pin, *run_args)
    elapsed = time.monotonic() - t0
    s1, r1, m1 = cpu_seconds(server.proc.pid), cpu_seconds(redis_pid), busy_seconds()
    if spy is not None:
        profile = py_spy_report(spy, spy_out)
    _alive(server)
    time.sleep(0.3)
    after = _event_counts(port)
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"{dialect.name}: wrk saw errors:\n{result.raw}")
    delta = {k: after[k] - before[k] for k in after}
    accepted = delta[(dialect.metric, "accepted")]
    others = {
        outcome: delta[(dialect.metric, outcome)]
        for outcome in ("duplicate", "dropped", "rejected")
        if delta[(dialect.metric, outcome)]
    }
    readers = delta["warm", "copy"] + delta["warm", "read"]
    if others:
        hint = " (the gzipped bodies ran out: more are needed)" if dialect.gzip else ""
        raise BenchError(f"{dialect.name}: events not accepted during the run: {others}{hint}")
    sent = result.requests * PER_REQUEST
    # wrk counts answered requests; those in flight when it stopped are applied too.
    if not sent <= accepted <= sent + run.connections * PER_REQUEST:
        raise BenchError(
            f"{dialect.name}: wrk had {sent:,} events answered, /metrics counts {accepted:,.0f}"
        )
    if dialect.gzip:
        size = statistics.fmean(len(gzip.compress(fill(tpl, run.blocks, "x", k).encode()))
                                for k in range(0, run.blocks * TEMPLATES, run.blocks))  # fmt: skip
    else:
        size = statistics.fmean(len(fill(tpl, run.blocks, nonce, k)) for k in range(TEMPLATES))
    outcome = Outcome(
        dialect.key, dialect.name, dialect.what, result, elapsed,
        server_cpu=(s1 - s0) / elapsed, redis_cpu=(r1 - r0) / elapsed,
        wrk_cpu=wrk_cpu / elapsed, body_bytes=size,
        other_cpu=max(0.0, (m1 - m0) - (s1 - s0) - (r1 - r0) - wrk_cpu) / elapsed,
    )  # fmt: skip
    print(
        f"[{dialect.key}] {dialect.name}: {outcome.events_s:,.0f} events/s "
        f"({result.rps:,.0f} req/s), p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms; "
        f"CPU: server {outcome.server_cpu:.0%}, redis {outcome.redis_cpu:.0%}, "
        f"wrk {outcome.wrk_cpu:.0%}, other {outcome.other_cpu:.0%}; "
        f"/metrics +{accepted:,.0f} accepted; readers from the server's copy of its "
        f"last write {delta['warm', 'copy'] / max(readers, 1):.0%}, read first "
        f"{delta['warm', 'read'] / max(readers, 1):.0%} ({delta['warm', 'refused']:,.0f} "
        "copies refused)",
        flush=True,
    )
    if spy is not None:
        print(profile, flush=True)
    return outcome


def py_spy_start(py_spy: str, pid: int, seconds: float, out: Path, pin: Pinning) -> Any:
    """py-spy sampling the server for the measured run, 200 times a second (each sample
    pauses the server for a moment: whole stacks, at a small cost; py-spy's own CPU is on
    the load core)."""
    argv = [
        py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
        "--rate", "200", "--format", "raw", "--output", str(out),
    ]  # fmt: skip
    if pin.load is not None:
        argv = ["taskset", "-c", str(pin.load), *argv]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=die_with_parent
    )


def py_spy_report(spy: Any, out: Path, top: int = 25) -> str:
    """Where the sampled server spent its time: functions by own (leaf) samples and by
    samples they were on the stack for, in % of the samples (idle excluded)."""
    try:
        _, err = spy.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.communicate()
        return "    py-spy did not finish"
    if spy.returncode != 0 or not out.exists():
        return f"    py-spy failed ({spy.returncode}): {err.decode(errors='replace')[-500:]}"
    own: dict[str, int] = {}
    stacks: list[tuple[set[str], int, str]] = []  # each stack's functions, samples, leaf
    samples = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame(f) for f in stack.split(";")]
        stacks.append(({f.partition(" (")[0] for f in frames}, n, frames[-1]))
        own[frames[-1]] = own.get(frames[-1], 0) + n
    if not samples:
        return "    py-spy took no sample"
    areas: dict[str, int] = {}
    for name, n in own.items():
        area = _area(name)
        areas[area] = areas.get(area, 0) + n
    lines = [f"    py-spy, {samples:,} samples of the server (busy only): own time by area"]
    for area, n in sorted(areas.items(), key=lambda kv: -kv[1]):
        lines.append(f"      {n / samples:6.1%}  {area}")
    lines.append("    steps, inclusive (what they and all they call took)")
    for label, names in STEPS:
        n = sum(count for funcs, count, _ in stacks if funcs & names)
        lines.append(f"      {n / samples:6.1%}  {label}")
    # Neither in the route nor on the changes channel: the event loop, uvicorn, timers.
    outside: dict[str, int] = {}
    for funcs, count, leaf in stacks:
        if not funcs & (STEPS[0][1] | STEPS[-1][1]):
            outside[leaf] = outside.get(leaf, 0) + count
    lines.append(
        f"      {sum(outside.values()) / samples:6.1%}  the rest (the event loop, uvicorn, "
        "timers; stacks caught in part); by own time:"
    )
    for name, n in sorted(outside.items(), key=lambda kv: -kv[1])[:8]:
        lines.append(f"        {n / samples:6.1%}  {name}")
    lines.append("    own time by function")
    for name, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"      {n / samples:6.1%}  {name}")
    return "\n".join(lines)


AREAS = (
    ("app/events/segment.py", "Segment translation (app/events/segment.py)"),
    ("app/events/intake.py", "event checks (app/events/intake.py, model.py)"),
    ("app/events/model.py", "event checks (app/events/intake.py, model.py)"),
    ("app/events/reduce.py", "reduce (app/events/reduce.py)"),
    ("app/events/", "ingest (app/events/ingest.py, privacy.py)"),
    ("app/stores/", "Kairos's Redis store (app/stores/redis/)"),
    ("app/segments/", "segments (app/segments/)"),
    ("app/recs/", "co-occurrence and recommendations (app/recs/)"),
    ("app/routes/", "routes (app/routes/)"),
    ("app/", "the rest of app/ (edge, metrics, profile cache, ...)"),
    ("redis/", "redis-py (command packing, replies, pub/sub)"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn"),
    ("asyncio/", "asyncio (timeouts, tasks)"),
    ("uvloop/", "asyncio (timeouts, tasks)"),
)


# Steps of a request, by the functions that do them (a function's name as py-spy gives
# it, without its file); a sample counts once for a step, however many of them it shows.
STEPS: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (label, frozenset(names))
    for label, names in (
        ("the whole events route", ("routes.<locals>.native",
                                    "routes.<locals>.segment.<locals>.handler")),
        ("  reading the body (read_body)", ("read_body",)),
        ("  parse_json", ("parse_json",)),
        ("  Segment translation (SegmentBody)", ("SegmentBody.__init__",
                                                 "SegmentBody.translated")),
        ("  check_event", ("check_event",)),
        ("  reader hashes (ReaderHashes.of)", ("ReaderHashes.of",)),
        ("  store read (RedisEvents.read)", ("RedisEvents.read",)),
        ("  reduce", ("reduce",)),
        ("  store write (RedisEvents.write)", ("RedisEvents.write",)),
        ("  segments (Segmenter.step)", ("Segmenter.step",)),
        ("  segments recorded (Ingest._record)", ("Ingest._record",)),
        ("  co-occurrence noted (CoOccurrence.note)", ("CoOccurrence.note",)),
        ("  answer (JSONResponse)", ("JSONResponse.__init__", "JSONResponse.render")),
        ("  in the store: redis-py's Pipeline.execute", ("Pipeline.execute",)),
        ("  in the store: queueing commands (evalsha)", ("ScriptCommands.evalsha",)),
        ("co-occurrence flushed (CoOccurrence.run)", ("CoOccurrence.run",)),
        ("segment sweep (Sweep.run)", ("Sweep.run",)),
        ("changes channel: messages in (pub/sub)", ("PubSub.handle_message",
                                                    "PubSub._execute")),
    )
)  # fmt: skip


def _area(name: str) -> str:
    where = name.rpartition(" (")[2].rstrip(")")
    return next((label for prefix, label in AREAS if where.startswith(prefix)), "other")


def _frame(frame: str) -> str:
    """'function (path/to/file.py:123)' as 'function (file.py)'; paths made short."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})" if where else name


def _gzip_script(
    dialect: Dialect, tpl: Sequence[str], run: Run, tmp: Path, nonce: str, count: float
) -> Path:
    n = int(count) + 4 * run.connections + 50
    bodies = [gzip.compress(fill(tpl, run.blocks, nonce, k).encode(), 6) for k in range(n)]
    return lua_bodies(dialect, bodies, tmp / f"{dialect.name}-{nonce}.lua")


def measure_sink(
    server: Server, dialect: Dialect, tpl: Sequence[str], run: Run, pin: Pinning, tmp: Path,
    seconds: float,
) -> Outcome:  # fmt: skip
    script = lua_templates(dialect, tpl, run.blocks, tmp / f"sink-{dialect.name}.lua")
    _wrk(server.port, script, min(run.warmup, 1.0), run.connections, pin, "sinkw")
    s0, m0 = cpu_seconds(server.proc.pid), busy_seconds()
    t0 = time.monotonic()
    result, wrk_cpu = _wrk(server.port, script, seconds, run.connections, pin, "sinkm")
    elapsed = time.monotonic() - t0
    s1, m1 = cpu_seconds(server.proc.pid), busy_seconds()
    server_cpu = (s1 - s0) / elapsed
    if result.non_2xx or result.socket_errors:
        raise BenchError(f"sink: wrk saw errors:\n{result.raw}")
    size = statistics.fmean(len(fill(tpl, run.blocks, "sinkm", k)) for k in range(TEMPLATES))
    outcome = Outcome(
        "g", f"sink-{dialect.name}", f"generator ceiling: {dialect.name} bodies to a bare "
        "ASGI app", result, elapsed, server_cpu, 0.0, wrk_cpu / elapsed, size,
        other_cpu=max(0.0, (m1 - m0) - (s1 - s0) - wrk_cpu) / elapsed,
    )  # fmt: skip
    print(
        f"[g] sink ({dialect.name} bodies): {outcome.events_s:,.0f} events/s "
        f"({result.rps:,.0f} req/s); CPU: sink {server_cpu:.0%}, wrk {outcome.wrk_cpu:.0%}",
        flush=True,
    )
    return outcome


# --- in-process: where an event's time goes ---------------------------------------------


@dataclass
class Stages:
    per_event_us: list[tuple[str, float]]  # (stage, CPU µs per event)
    profile: str  # cProfile's top functions, or ""


async def _in_process(
    env: dict[str, str], tpl: dict[str, list[str]], blocks: int, requests: int, top: int
) -> Stages:
    """CPU per event of each step of ingest, in this process (no HTTP), against the bench's
    Redis: the steps timed alone request by request, then `Ingest.ingest` whole on other
    requests; with `top`, a cProfile of more `Ingest.ingest` calls."""
    services = build_services(Settings.from_env(env))
    settings, events = services.settings, services.stores.events
    hashes = ReaderHashes(settings.secret_keys)
    stamp = f"ip{time.time_ns()}"

    def bodies(dialect: str, tag: str) -> list[bytes]:
        return [fill(tpl[dialect], blocks, f"{stamp}{tag}", k).encode() for k in range(requests)]

    labels = (
        "parse the native JSON body",
        "parse + translate a Segment batch",
        "check_event",
        "reader hashes + ReaderAsk",
        "store read (RedisEvents.read, one pipeline per request)",
        "reduce",
    )
    spent = dict.fromkeys(labels, 0.0)
    clock = time.process_time

    try:
        # Warm: the pool's connections, the scripts loaded, the slot tags computed (once
        # per process), the code paths taken once.
        for body in bodies("native", "w")[:5]:
            await services.ingest.ingest(native_events(parse_json(body)))
        native, segment, whole_bodies = (
            bodies("native", "n"), bodies("segment", "s"), bodies("native", "i"),
        )  # fmt: skip
        extra = bodies("native", "p") if top else []
        gc.collect()
        gc.freeze()  # as the server does after start-up
        for body, seg in zip(native, segment, strict=True):
            t0 = clock()
            docs = native_events(parse_json(body))
            t1 = clock()
            SegmentBody("batch", parse_json(seg)).translated(services.ingest.clock)
            t2 = clock()
            now_ms = int(time.time() * 1000)
            checked = [
                check_event(
                    d,
                    received_ms=now_ms,
                    max_bytes=settings.event_max_bytes,
                    clock=services.ingest.clock,
                )
                for d in docs
            ]
            t3 = clock()
            asks = [ReaderAsk(e.reader, (e.event_id,), hashes.of(e.reader)) for e in checked]
            t4 = clock()
            states = await events.read(asks)
            t5 = clock()
            for e, st in zip(checked, states, strict=True):
                reduce(st.profile, [e], st.seen)
            t6 = clock()
            for label, took in zip(
                labels, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5), strict=True
            ):
                spent[label] += took
        whole = 0.0
        for body in whole_bodies:
            docs = native_events(parse_json(body))
            t0 = clock()
            result = await services.ingest.ingest(docs)
            whole += clock() - t0
            if result.accepted != PER_REQUEST:
                raise BenchError(f"in-process: ingest accepted {result.accepted} of 100")
        n_events = requests * PER_REQUEST
        out = [(label, took * 1e6 / n_events) for label, took in spent.items()]
        parts = sum(us for label, us in out[2:])  # check, hashes, read, reduce
        out.append(
            ("Ingest.ingest whole (check, read, reduce, write, cache)", whole * 1e6 / n_events)
        )
        out.append(("  of which the write and the rest", out[-1][1] - parts))
        report = ""
        if top:
            profiler = cProfile.Profile()
            profiler.enable()
            for body in extra:
                await services.ingest.ingest(native_events(parse_json(body)))
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
            report = _trim_pstats(text.getvalue())
        return Stages(out, report)
    finally:
        gc.unfreeze()
        await services.stores.close()


def _trim_pstats(text: str) -> str:
    lines = text.splitlines()
    at = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    keep = [line.replace(str(ROOT) + "/", "") for line in lines[at:] if line.strip()]
    return "\n".join("    " + line.replace(sys.prefix, "").strip() for line in keep)


def in_process(
    env: dict[str, str], tpl: dict[str, list[str]], blocks: int, requests: int, top: int,
    pin: Pinning,
) -> Stages:  # fmt: skip
    """`_in_process` on the server's core, with uvloop as the servers have."""
    if pin.server is not None:
        os.sched_setaffinity(0, {pin.server})
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_in_process(env, tpl, blocks, requests, top))
    finally:
        if pin.load is not None:
            os.sched_setaffinity(0, {pin.load})


# --- redis-benchmark --------------------------------------------------------------------

# What the issue names: GET the profile, SET it, ZADD an id, ZADD a history entry, PUBLISH.
# KEYS: profile, seen, history, links, alias, suppressed (as Kairos's write script).
# ARGV: profile JSON, now ms, event id, event JSON, user id.
SCRIPT_MINIMAL = """
local current = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[4])
redis.call('PUBLISH', 'kairos:changes', ARGV[5])
return 'written'
"""
# Everything Kairos's write script (app/stores/redis/events.py) does for a reader with one
# event, one reader hash and no links, except that the version compare cannot refuse
# (the keys are random, so no version is known): the redis-side ceiling of Kairos's work.
SCRIPT_KAIROS = """
if redis.call('EXISTS', KEYS[5]) == 1 then return 'moved' end
if redis.call('SISMEMBER', KEYS[6], ARGV[6]) == 1 then return 'suppressed' end
local same = (redis.call('GET', KEYS[1]) or '') == ARGV[7]
redis.call('SET', KEYS[1], ARGV[1])
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - 86400000))
redis.call('ZADD', KEYS[2], now, ARGV[3])
redis.call('PEXPIRE', KEYS[2], 86400000)
redis.call('ZADD', KEYS[3], now, ARGV[4])
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1001)
redis.call('PEXPIRE', KEYS[3], 7776000000)
redis.call('PUBLISH', 'kairos:events', ARGV[4])
redis.call('PUBLISH', 'kairos:changes', ARGV[5])
return 'written'
"""
# A subscriber to the changes channel, as every Kairos process is: it reads and discards.
SUBSCRIBER = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"SUBSCRIBE %s\\r\\n" % sys.argv[2].encode())
while s.recv(1 << 20):
    pass
"""


@dataclass
class RedisFigure:
    key: str
    name: str
    what: str
    scripts_s: float
    redis_cpu: float
    client_cpu: float  # redis-benchmark's own
    other_cpu: float


def stored_sizes(url: str, blocks: int) -> tuple[int, int]:
    """The mean size of a profile and of a history entry after the Kairos runs."""
    client = redis.Redis.from_url(url)
    try:
        profiles, entries = [], []
        for block in range(0, blocks, max(1, blocks // 20)):
            for j in (0, 33, 66, 99):
                user = _reader_id(block, j)
                raw = client.get(profile_key(user))
                if raw:
                    profiles.append(len(raw))
                entries += [len(e) for e in client.zrange(history_key(user), 0, 4)]
    finally:
        client.close()
    if not profiles or not entries:
        raise BenchError("no stored profile or history to size redis-benchmark's arguments")
    return round(statistics.fmean(profiles)), round(statistics.fmean(entries))


def redis_benchmark(
    procs: Processes, tmp: Path, redis_port: int, redis_pid: int, pin: Pinning,
    requests: int, clients: int, sizes: tuple[int, int],
) -> list[RedisFigure]:  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=redis_port, db=1)
    try:
        shas = {name: client.script_load(s) for name, s in
                (("r1", SCRIPT_MINIMAL), ("r2", SCRIPT_KAIROS))}  # fmt: skip
    finally:
        client.close()
    profile_size, entry_size = sizes
    profile = orjson.dumps({"first_name": "x" * max(1, profile_size - 20)}).decode()
    entry = orjson.dumps({"event_id": "rb-__rand_int__", "pad": "y" * max(1, entry_size - 50)})
    uid = "rb-__rand_int__"
    keys = [
        f"kairos:{{{uid}}}:profile", f"kairos:{{{uid}}}:seen", f"kairos:{{{uid}}}:history",
        f"kairos:{{{uid}}}:links", f"kairos:{{{uid}}}:alias", "kairos:suppressed:{0}",
    ]  # fmt: skip
    argv = {
        "r1": [profile, "1764000000000", "id-__rand_int__", entry.decode(), uid],
        # the version sent is a profile as read, as Kairos sends it
        "r2": [profile, "1764000000000", "id-__rand_int__", entry.decode(), uid, "h" * 43, profile],
    }
    sub_argv = [sys.executable, "-c", SUBSCRIBER, str(redis_port), CHANGES_CHANNEL]
    if pin.server is not None:
        sub_argv = ["taskset", "-c", str(pin.server), *sub_argv]
    subscriber = procs.start("subscriber", sub_argv, env=base_env(), log=tmp / "sub.log")
    out = []
    try:
        time.sleep(0.3)
        for key, what in (
            ("r1", "GET+SET profile, ZADD id, ZADD history, PUBLISH (the issue's script)"),
            ("r2", "all of Kairos's write script for one event (checks, trims, 2 PUBLISH)"),
        ):
            cmd = [
                "redis-benchmark", "-h", "127.0.0.1", "-p", str(redis_port),
                "--dbnum", "1", "-n", str(requests), "-c", str(clients), "-P", "100",
                "-r", "100000", "--csv",
                "EVALSHA", shas[key], "6", *keys, *argv[key],
            ]  # fmt: skip
            if pin.server is not None:
                cmd = ["taskset", "-c", str(pin.server), *cmd]
            r0, m0, t0 = cpu_seconds(redis_pid), busy_seconds(), time.monotonic()
            c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=600, check=False,
                preexec_fn=die_with_parent,
            )  # fmt: skip
            elapsed = time.monotonic() - t0
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            used = {
                "redis": cpu_seconds(redis_pid) - r0,
                "client": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
            }
            other = max(0.0, busy_seconds() - m0 - sum(used.values())) / elapsed
            redis_cpu, client_cpu = used["redis"] / elapsed, used["client"] / elapsed
            rows = [line for line in done.stdout.splitlines() if line.startswith('"EVALSHA')]
            if done.returncode != 0 or not rows:
                raise BenchError(f"redis-benchmark failed:\n{done.stdout}{done.stderr}")
            # "test","rps","avg_latency_ms",... and 5 more: the test is the whole command.
            rps = float(rows[-1].rsplit(",", 7)[1].strip('"'))
            out.append(
                RedisFigure(key, f"redis-benchmark {key}", what, rps, redis_cpu, client_cpu, other)
            )
            print(
                f"[{key}] redis-benchmark -P 100 -c {clients} EVALSHA ({what}): "
                f"{rps:,.0f} scripts/s; CPU: redis {redis_cpu:.0%}, redis-benchmark "
                f"{client_cpu:.0%}, other {other:.0%}",
                flush=True,
            )
        if subscriber.poll() is not None:
            raise BenchError("the changes-channel subscriber died during redis-benchmark")
    finally:
        procs.stop(subscriber)
        client = redis.Redis(host="127.0.0.1", port=redis_port, db=1)
        try:
            client.flushdb()
        finally:
            client.close()
    return out


# --- event-to-feed latency --------------------------------------------------------------


@dataclass
class Latency:
    trials: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    polls: float  # mean feed requests per trial
    late: int  # trials that had not shown the change after POLL_TIMEOUT_S


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    at = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[at]


def latency(
    a: Server, b: Server, trials: int, products: list[dict[str, Any]], redis_url: str
) -> Latency:
    tokens = Tokens((Secret(SECRET_KEY),))
    post, poll = Client(a.port), Client(b.port)
    timed = _Trials()

    def feed(user: str) -> str:
        return f"/v1/feeds/{FEED}?{urlencode({'t': tokens.sign('feed', user, FEED)})}"

    try:
        # B must answer from its profile cache: a change written to Redis without the
        # announcement stays unseen there, so the trials time the change channel.
        control, sku = "lat-control", products[-1]["sku"]
        poll.get(feed(control))
        raw = redis.Redis.from_url(redis_url)
        try:
            changed = {**_profile(0), "cart": [{"sku": sku, "qty": 1}]}
            raw.set(profile_key(control), orjson.dumps(changed))
        finally:
            raw.close()
        if sku.encode() in poll.get(feed(control)).body:
            raise BenchError("latency: B does not serve from its profile cache")
        for i in range(trials):
            user = f"lat-{i}"
            sku = products[(i * 11 + 5) % PRODUCTS]["sku"]
            path = feed(user)
            first = poll.get(path)  # B now holds the reader's profile in its cache
            if first.status != 200 or "x-kairos-fallback" in first.headers:
                fallback = first.headers.get("x-kairos-fallback")
                raise BenchError(
                    f"latency: B's feed for {user} answered {first.status} ({fallback}): "
                    f"{first.body[:200]!r}"
                )
            if sku.encode() in first.body:
                raise BenchError(f"latency: {user}'s feed shows {sku} before the event")
            event = {
                "event_id": f"lat-{time.time_ns()}-{i}",
                "user_id": user,
                "type": "add_to_cart",
                "properties": {"sku": sku, "qty": 1},
            }
            answer = post.request(
                "POST", NATIVE_PATH, orjson.dumps(event),
                {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_KEY}"},
            )  # fmt: skip
            arrived = time.perf_counter()
            if answer.status != 202 or orjson.loads(answer.body).get("accepted") != 1:
                raise BenchError(f"latency: the event answered {answer.status}: {answer.body!r}")
            timed.until(functools.partial(_shows, poll, path, sku), arrived)
    finally:
        post.close()
        poll.close()
    return timed.latency()


def _shows(poll: Client, path: str, sku: str) -> bool:
    answer = poll.get(path)
    return bool(answer.status == 200 and sku.encode() in answer.body)


@dataclass
class _Trials:
    """The trials of a latency test, as they are timed."""

    took: list[float] = field(default_factory=list)  # ms (POLL_TIMEOUT_S's when late)
    polls: list[int] = field(default_factory=list)
    late: int = 0

    def until(self, seen: Callable[[], bool], arrived: float) -> None:
        """Poll `seen` until it is true, or POLL_TIMEOUT_S after `arrived`."""
        n = 0
        while True:
            shown = seen()
            n += 1
            now = time.perf_counter()
            if shown or now - arrived > POLL_TIMEOUT_S:
                self.took.append((now - arrived) * 1000 if shown else POLL_TIMEOUT_S * 1000)
                self.polls.append(n)
                self.late += not shown
                return

    def latency(self) -> Latency:
        took = self.took
        return Latency(
            len(took), _percentile(took, 0.5), _percentile(took, 0.99), max(took),
            statistics.fmean(self.polls), self.late,
        )  # fmt: skip


def segment_latency(a: Server, b: Server, trials: int, products: list[dict[str, Any]]) -> Latency:
    """Event-to-segment: a reader's third view of one product posted to A, then B's
    `GET /v1/profiles/{id}` polled until it shows the reader in `browsing_intent` (the
    default rules' "same sku viewed 3+ times in 24 h"), timed from A's 202."""
    post, poll = Client(a.port), Client(b.port)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    timed = _Trials()

    def view(user: str, sku: str, n: int) -> None:
        event = {
            "event_id": f"seg-{time.time_ns()}-{n}",
            "user_id": user,
            "type": "product_view",
            "properties": {"sku": sku},
        }
        answer = post.request(
            "POST", NATIVE_PATH, orjson.dumps(event),
            {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_KEY}"},
        )  # fmt: skip
        if answer.status != 202 or orjson.loads(answer.body).get("accepted") != 1:
            raise BenchError(f"segments: the event answered {answer.status}: {answer.body!r}")

    def entered(user: str) -> bool:
        return bool(primary(user) == "browsing_intent")

    def primary(user: str) -> Any:
        got = poll.request("GET", f"/v1/profiles/{user}", b"", auth)
        if got.status != 200:
            raise BenchError(f"segments: B's profile answered {got.status}: {got.body[:200]!r}")
        return orjson.loads(got.body)["segments"]["primary"]

    try:
        for i in range(trials):
            user = f"seg-{time.time_ns()}-{i}"
            sku = products[(i * 7 + 3) % PRODUCTS]["sku"]
            view(user, sku, 1)
            view(user, sku, 2)
            if primary(user) == "browsing_intent":
                raise BenchError("segments: browsing_intent after two views")
            view(user, sku, 3)
            arrived = time.perf_counter()
            timed.until(functools.partial(entered, user), arrived)
    finally:
        post.close()
        poll.close()
    return timed.latency()


# --- the whole bench --------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    seconds = 3.0 if args.quick else float(args.duration)
    warmup = 1.0 if args.quick else min(3.0, max(1.0, seconds / 5))
    trials = args.trials if args.trials is not None else (50 if args.quick else 300)
    rb_requests = 200_000 if args.quick else 1_000_000
    pin = pinning(not args.no_pin)
    for tool in ("wrk", "redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH")
    if pin.load is not None:
        os.sched_setaffinity(0, {pin.load})
    blocks = args.readers // PER_REQUEST
    run = Run(seconds, warmup, args.connections, blocks)

    print("Kairos events bench")
    pinned = pin.describe("wrk, redis-server and this script")
    print(f"  python {platform.python_version()}, {os.cpu_count()} cores, pinning: {pinned}")
    print(f"  {_code_state()}")
    print(
        f"  wrk -t1 -c{run.connections} -d{seconds:.0f}s (warm-up {warmup:.0f}s); requests of "
        f"{PER_REQUEST} events from {PER_REQUEST} distinct readers, {blocks * PER_REQUEST:,} "
        f"readers in {blocks} blocks; mix {', '.join(f'{n} {k}' for k, n in MIX)}"
    )
    print(flush=True)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-events-") as tmp_name:
            return _bench(args, procs, Path(tmp_name), pin, run, trials, rb_requests)
    finally:
        procs.stop_all()


def _bench(
    args: argparse.Namespace, procs: Processes, tmp: Path, pin: Pinning, run: Run,
    trials: int, rb_requests: int,
) -> int:  # fmt: skip
    redis_proc, redis_port = start_redis(procs, tmp, pin.load)
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    products = _products()
    readers = [
        (_reader_id(b, j, case.key), _profile(b * PER_REQUEST + j))
        for case in (NATIVE, SEGMENT, SEGMENT_GZ)
        for b in range(run.blocks)
        for j in range(PER_REQUEST)
    ]
    readers += [(f"lat-{i}", _profile(i)) for i in range(trials)]
    readers.append(("lat-control", _profile(0)))
    asyncio.run(_seed(redis_url, products, readers))
    print(
        f"redis-server on port {redis_port}: seeded {len(products)} products, "
        f"{len(readers):,} readers (a cart line each)",
        flush=True,
    )
    now = datetime.now(UTC)
    # Each case on readers of its own: profiles grow with the events applied, and a
    # case after another must not pay for the other's events.
    case_tpl = {
        case.key: templates(
            "segment" if case.metric == "segment" else "native", products, now, case.key
        )
        for case in (NATIVE, SEGMENT, SEGMENT_GZ)
    }
    # The sink and the in-process steps: the native case's and the Segment case's.
    tpl = {"native": case_tpl[NATIVE.key], "segment": case_tpl[SEGMENT.key]}

    outcomes: dict[str, Outcome] = {}
    sinks: list[Outcome] = []
    if not args.no_sink:
        sink = start_server(
            procs, tmp, "sink", uvicorn_argv("events:sink_app", app_dir=ROOT / "bench"),
            base_env(), pin.server, "/",
        )  # fmt: skip
        try:
            for dialect in (NATIVE, SEGMENT):
                seconds = min(run.seconds, 5.0)
                sinks.append(measure_sink(sink, dialect, tpl[dialect.name], run, pin, tmp, seconds))
        finally:
            procs.stop(sink.proc)

    env = kairos_env(redis_url, args.warm_readers, not args.no_cooccurrence)
    kairos = uvicorn_argv("app.app:factory", factory=True)
    a = start_server(procs, tmp, "kairos-a", kairos, env, pin.server, "/readyz")
    print(f"kairos-a on port {a.port} (core {pin.server})", flush=True)
    try:
        for dialect in (NATIVE, SEGMENT, SEGMENT_GZ):
            estimate = outcomes["b"].result.rps if dialect.gzip else None
            outcomes[dialect.key] = measure_kairos(
                a, redis_proc.pid, dialect, case_tpl[dialect.key], run, pin, tmp, estimate,
                args.py_spy,
            )  # fmt: skip
    finally:
        procs.stop(a.proc)

    ip_requests = 20 if args.quick else 100
    stages = in_process(env, tpl, run.blocks, ip_requests, args.profile, pin)
    print(f"in-process, {ip_requests} requests of {PER_REQUEST} events, CPU per event on core "
          f"{pin.server} (no HTTP):")  # fmt: skip
    for label, us in stages.per_event_us:
        print(f"    {us:7.1f} µs  {label}")
    if stages.profile:
        print(f"  cProfile of {ip_requests} more Ingest.ingest calls, by own time:")
        print(stages.profile)
    sys.stdout.flush()

    sizes = stored_sizes(redis_url, run.blocks)
    print(f"stored after the runs: profile {sizes[0]} bytes, history entry {sizes[1]} bytes "
          "(redis-benchmark's arguments are of these sizes)", flush=True)  # fmt: skip
    figures = redis_benchmark(
        procs, tmp, redis_port, redis_proc.pid, pin, rb_requests, run.connections, sizes
    )

    # Two servers sharing the Redis: A takes the events, B serves the feeds.
    a = start_server(procs, tmp, "kairos-a", kairos, env, pin.server, "/readyz")
    b = start_server(procs, tmp, "kairos-b", kairos, env, pin.load, "/readyz")
    print(f"kairos-a on port {a.port} (core {pin.server}), kairos-b on port {b.port} "
          f"(core {pin.load}): {trials} trials", flush=True)  # fmt: skip
    try:
        lat = latency(a, b, trials, products, redis_url)
        seg = segment_latency(a, b, trials, products)
        _alive(a)
        _alive(b)
    finally:
        procs.stop(b.proc)
        procs.stop(a.proc)
    print(
        f"[l] event-to-feed: p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, max "
        f"{lat.max_ms:.1f} ms ({lat.polls:.1f} feed requests per trial; {lat.late} late)",
        flush=True,
    )
    print(
        f"[s] event-to-segment: p50 {seg.p50_ms:.1f} ms, p99 {seg.p99_ms:.1f} ms, max "
        f"{seg.max_ms:.1f} ms ({seg.polls:.1f} profile requests per trial; {seg.late} late)",
        flush=True,
    )
    _report(outcomes, sinks, figures, lat, seg)
    return 0


def _code_state() -> str:
    """The commit measured, and whether the server's files differ from it."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False
        )
        return done.stdout.rstrip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    changed = [line[3:] for line in git("status", "--porcelain", "--", "app").splitlines()]
    if not changed:
        return f"code: commit {commit}"
    listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"code: commit {commit} + uncommitted changes to {listed}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def _report(
    outcomes: dict[str, Outcome],
    sinks: list[Outcome],
    figures: list[RedisFigure],
    lat: Latency,
    seg: Latency,
) -> None:
    print()
    print(f"{'':3}{'case':<18}{'events/s':>10}{'req/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'body KB':>8}{'server':>7}{'redis':>6}{'wrk':>5}{'other':>6}{'per core':>10}"
          f"{'µs/ev':>7}  what")  # fmt: skip
    for o in [*sinks, *outcomes.values()]:
        r = o.result
        per_core = o.events_s / o.server_cpu if o.server_cpu else 0.0
        print(f"{o.key:<3}{o.name:<18}{o.events_s:>10,.0f}{r.rps:>7,.0f}{r.p50_ms:>8.1f}"
              f"{r.p99_ms:>8.1f}{o.body_bytes / 1024:>8.1f}{o.server_cpu:>7.0%}"
              f"{o.redis_cpu:>6.0%}{o.wrk_cpu:>5.0%}{o.other_cpu:>6.0%}{per_core:>10,.0f}"
              f"{1e6 / per_core if per_core else 0:>7.1f}  {o.what}")  # fmt: skip
    for f in figures:
        per_core = f.scripts_s / f.redis_cpu if f.redis_cpu else 0.0
        print(f"{f.key:<3}{f.name:<18}{f.scripts_s:>10,.0f}{'':>7}{'':>8}{'':>8}{'':>8}{'':>7}"
              f"{f.redis_cpu:>6.0%}{'':>5}{f.other_cpu:>6.0%}{per_core:>10,.0f}"
              f"{1e6 / per_core if per_core else 0:>7.1f}  scripts/s: {f.what}")  # fmt: skip
    print(f"{'l':<3}{'event-to-feed':<18}  p50 {lat.p50_ms:.1f} ms, p99 {lat.p99_ms:.1f} ms, "
          f"max {lat.max_ms:.1f} ms, {lat.trials} trials (A's 202 -> B's feed)")  # fmt: skip
    print(f"{'s':<3}{'event-to-segment':<18}  p50 {seg.p50_ms:.1f} ms, p99 {seg.p99_ms:.1f} ms, "
          f"max {seg.max_ms:.1f} ms, {seg.trials} trials (A's 202 -> B's profile "
          "segments)")  # fmt: skip
    print("    CPU columns: share of one core each process used during the measured run (other:")
    print("    every other process on the machine, this script and py-spy included); per core:")
    print("    events (scripts) per CPU-second of the process doing the work, the server's for")
    print("    Kairos and the sink, redis-server's for redis-benchmark; µs/ev: its inverse")
    print()
    native = outcomes["a"]
    for o in outcomes.values():
        print(f"{o.key} = {o.events_s:>8,.0f} events/s  (target >= {TARGET_EVENTS_S:,.0f} per "
              f"process)  {_verdict(o.events_s >= TARGET_EVENTS_S)}   [{o.name}]")  # fmt: skip
    for f in figures:
        normal = (native.events_s / native.server_cpu) / (f.scripts_s / f.redis_cpu)
        print(f"a/{f.key} = {native.events_s / f.scripts_s:.3f}  (Kairos native events/s / "
              f"redis-benchmark scripts/s: {native.events_s:,.0f} / {f.scripts_s:,.0f}; "
              f"per CPU-second {normal:.3f})")  # fmt: skip
    for s in sinks:
        own = outcomes["a" if s.name.endswith("native") else "b"]
        print(f"{own.key}/g = {own.result.rps / s.result.rps:.3f}  (of what the generator pushes "
              f"through uvicorn with the same bodies: {s.events_s:,.0f} events/s)")  # fmt: skip
    print(f"l p99 = {lat.p99_ms:.1f} ms  (target <= {TARGET_P99_MS:.0f} ms)  "
          f"{_verdict(lat.p99_ms <= TARGET_P99_MS and not lat.late)}")  # fmt: skip
    print(f"s p99 = {seg.p99_ms:.1f} ms  (target <= {TARGET_P99_MS:.0f} ms)  "
          f"{_verdict(seg.p99_ms <= TARGET_P99_MS and not seg.late)}")  # fmt: skip
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Events/s one Kairos process accepts, beside redis-benchmark, and the "
        "event-to-feed latency across two processes.",
    )
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                        help="length of each measured run (default 10)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections, redis-benchmark clients (default 16)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="3 s runs, 50 trials: a smoke run")
    parser.add_argument("--readers", type=int, default=20_000,
                        help="readers the requests cycle through, in blocks of 100 "
                        "(default 20,000)")  # fmt: skip
    parser.add_argument("--trials", type=int, default=None,
                        help="event-to-feed trials (default 300, 50 with --quick)")  # fmt: skip
    parser.add_argument("--no-sink", action="store_true",
                        help="skip the generator's ceiling (g)")  # fmt: skip
    parser.add_argument("--py-spy", metavar="PATH", default=None,
                        help="a py-spy executable: sample the server during each measured "
                        "run and print where its time went (the sampling costs the load "
                        "core some CPU)")  # fmt: skip
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print the N functions with the most own time in a cProfile "
                        "of in-process Ingest.ingest calls (default: none)")  # fmt: skip
    parser.add_argument("--warm-readers", type=int, default=None, metavar="N",
                        help="the servers' KAIROS_EVENTS_WARM_READERS (default: the "
                        "server's default; 0: every reader read before its write)")  # fmt: skip
    parser.add_argument("--no-cooccurrence", action="store_true",
                        help="the servers' KAIROS_RECS_COOCCURRENCE off (default: on, "
                        "as the default rules are)")  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1:
        parser.error("--duration and --connections must be at least 1")
    if args.readers < PER_REQUEST * max(2 * args.connections, 4) or args.readers % PER_REQUEST:
        parser.error(f"--readers must be a multiple of {PER_REQUEST}, and at least "
                     f"{PER_REQUEST} x twice the connections")  # fmt: skip
    if args.trials is not None and args.trials < 1:
        parser.error("--trials must be at least 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
