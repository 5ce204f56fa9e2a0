"""Render benchmark: Kairos's send-time renders against MJML compiled per render.

    .venv/bin/python bench/render.py [--duration 10] [--template NAME]
    .venv/bin/python bench/render.py --quick        # 3 s runs, small batch: a smoke test

Every case renders one template (default weekly_picks, the heaviest) as HTML + AMP + text
for 1000 distinct readers, whose profiles travel inline in each request, and answers
Kairos's JSON. Each server is its own process pinned to core 0 with taskset; wrk (one
thread, pinned to core 1) POSTs the readers' JSON bodies round-robin from a Lua script:

  a  kairos          Kairos (uvicorn --factory app.app:factory, uvloop, httptools, 1
                     worker): POST /v1/render through the compiled path (MJML compiled
                     once per template version, Jinja per reader)
  b  naive-python    bench/bare_render.py: the same render with Jinja over the MJML
                     source, mjml.mjml2html and css_inline on every render
  c  node-mjml       bench/node_mjml_server.js: Node and the `mjml` npm package compiling
                     the reader's MJML on every render
  d  kairos-batch    Kairos, POST /v1/render/batch: N NDJSON lines with inline profiles in
                     one request, read while it is written, timed end to end from this
                     process; d' the same N readers through httpx streaming, one request
                     (or requests of --batch-request-lines lines): httpx sends a whole
                     request before it reads the answer, which works because Kairos
                     reads a batch ahead of its renders (see docs/benchmarks.md)
  e  bare-static     bench/bare_render.py:static_app: the same stack answering Kairos's
                     answer for one reader (orjson.dumps per request), no render: the
                     ceiling for an answer of this size

Kairos runs on the embedded store with the demo catalog (KAIROS_DEMO_DATA=true),
KAIROS_PUBLIC_URL=https://kairos.bench.invalid (so AMP is produced), an API key, and a
snapshot of blocks/ and templates/ taken at start (designers' edits during the run do not
change what is measured; KAIROS_RELOAD_TEMPLATES=false as in production).

Before measuring, each server must answer the readers 200 with a non-empty subject, the
reader's name in the HTML, an AMP and a text part and no fallback; a wrong answer aborts
the bench. After each run it checks again, that wrk saw no error, and for Kairos through
/metrics that the renders were answered 200 and no fallback was served.

Prints an in-process breakdown of one render, then renders/s with p50/p99 per case, the
batch's readers/s, and a/b, a/c, a/e against the targets (a >= 3,000 renders/s on one core,
a/c >= 20x, batch >= 5,000 readers/s per core). Exit status: 0 when the bench ran
(whatever the figures), 1 when something broke, 130 on Ctrl-C. Every process it starts
is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import orjson
from bare_render import expanded_mjml
from common import (
    BENCH_DIR,
    ROOT,
    BenchError,
    Client,
    Pinning,
    Processes,
    WrkResult,
    base_env,
    free_port,
    lua_string,
    metrics,
    pinning,
    run_main,
    run_wrk,
    tail,
    total,
    uvicorn_argv,
    wait_ready,
)

from app.demo import CATALOG, load_demo
from app.errors import KairosError
from app.profiles.schema import validate_profile
from app.render.renderer import Renderer
from app.render.request import RenderRequest
from app.render.result import FORMATS
from app.services import Services, build_services
from app.settings import Settings

SECRET_KEY = "kairos-bench-render-0123456789abcdefghij"  # fixed, 40 characters
API_KEY = "kairos-bench-render-api-key-0123"
PUBLIC_URL = "https://kairos.bench.invalid"
CAMPAIGN = "bench-render"
DEFAULT_TEMPLATE = "weekly_picks"
NODE_MJML_VERSION = "5.4.1"
NODE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kairos-bench-node"
SENTINELS = {"first_name": "Kxfirstkx", "tier": "Kxtierkx"}
TARGET_RPS = 3000.0
TARGET_A_OVER_C = 20.0
TARGET_BATCH = 5000.0
VERIFY_SAMPLE = 100  # readers checked before measuring (b) and (c); (a) checks them all
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


# --- readers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    user_id: str
    name: str
    profile: dict[str, Any]
    body: bytes  # the POST /v1/render body
    line: bytes  # the same request as one NDJSON batch line
    formats: tuple[str, ...] = FORMATS


def _skus() -> list[str]:
    return [orjson.loads(line)["sku"] for line in CATALOG.read_bytes().splitlines() if line]


def make_readers(count: int, template: str, formats: tuple[str, ...] = FORMATS) -> list[Reader]:
    """`count` distinct readers with full profiles: each shows the personal blocks (cart,
    picks, and loyalty for the 'vip' half) and none needs a fallback."""
    skus = _skus()
    readers = []
    for i in range(count):
        profile = {
            "first_name": f"Reader{i:05d}",
            "last_name": "Bench",
            "locale": "en-GB",
            "tier": ("gold", "silver", "bronze")[i % 3],
            "loyalty_points": (i * 37) % 2500,
            "cart": [{"sku": skus[i % len(skus)], "qty": 1 + i % 2}],
            "recommendations": [
                {"sku": skus[(i * 3 + k + 1) % len(skus)], "score": round(0.9 - k / 10, 2)}
                for k in range(4)
            ],
            "consent": {"personalization": True, "tracking": True},
            "attributes": {"favourite_category": ("lighting", "textiles", "decor")[i % 3]},
        }
        validate_profile(profile)  # the bench's own data must be valid
        profile["segments"] = ["vip", "newsletter"] if i % 2 == 0 else ["newsletter"]
        user_id = f"bench-{i:05d}"
        doc = {
            "template": template,
            "user_id": user_id,
            "campaign": CAMPAIGN,
            "formats": list(formats),
            "profile": profile,
        }
        body = orjson.dumps(doc)
        name = profile["first_name"]
        readers.append(Reader(user_id, name, profile, body, body + b"\n", formats))
    return readers


def check_answer(where: str, reader: Reader, doc: Any) -> dict[str, int]:
    """Raise unless `doc` is a full render for `reader` (the formats it asked for);
    returns the parts' sizes."""
    problem = None
    want = reader.formats
    if not isinstance(doc, dict):
        problem = "not a JSON object"
    elif "error" in doc:
        problem = f"error {doc['error']}"
    elif not isinstance(doc.get("subject"), str) or not doc["subject"].strip():
        problem = "empty subject"
    elif not isinstance(doc.get("html"), str) or reader.name not in doc["html"]:
        problem = f"the HTML does not contain the reader's name {reader.name!r}"
    elif "amp" in want and (not isinstance(doc.get("amp"), str) or "⚡4email" not in doc["amp"]):
        problem = "no AMP part"
    elif "text" in want and (not isinstance(doc.get("text"), str) or not doc["text"].strip()):
        problem = "no text part"
    elif doc.get("fallbacks"):
        problem = f"fallbacks {doc['fallbacks']}"
    elif doc.get("warnings"):
        problem = f"warnings {doc['warnings']}"
    if problem:
        raise BenchError(f"{where}: wrong answer for {reader.user_id}: {problem}")
    return {k: len(doc[k].encode()) if isinstance(doc.get(k), str) else 0 for k in FORMATS}


# --- the in-process view ----------------------------------------------------------------


def kairos_env(blocks: Path, templates: Path) -> dict[str, str]:
    return {
        **base_env(),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_PUBLIC_URL": PUBLIC_URL,
        "KAIROS_DEMO_DATA": "true",
        "KAIROS_LOG_LEVEL": "WARNING",
        "KAIROS_RELOAD_TEMPLATES": "false",
        "KAIROS_BLOCKS_DIR": str(blocks),
        "KAIROS_TEMPLATES_DIR": str(templates),
    }


async def _services(env: dict[str, str]) -> Services:
    services = build_services(Settings.from_env(env))
    await load_demo(services.stores)
    return services


def _pick_template(renderer: Renderer, wanted: str | None, probe: dict[str, Any]) -> str:
    names = renderer.names()
    if wanted is not None:
        if wanted not in names:
            raise BenchError(f"no template {wanted!r}; there are {names}")
        renderer.compiled(wanted)  # 422 error if it does not compile
        return wanted
    if DEFAULT_TEMPLATE in names:
        renderer.compiled(DEFAULT_TEMPLATE)
        return DEFAULT_TEMPLATE
    # The heaviest template that compiles: the most bytes rendered for one reader.
    sizes = {}
    for name in names:
        try:
            compiled = renderer.compiled(name)
        except KairosError:  # a broken template is just not a candidate
            continue
        r = renderer.render_data(compiled, "bench-probe", probe, _probe_data(), None, CAMPAIGN)
        sizes[name] = sum(len(p or "") for p in (r.html, r.amp, r.text))
    if not sizes:
        raise BenchError(f"no template compiles among {names}")
    return max(sizes, key=lambda n: sizes[n])


def _probe_data() -> dict[str, Any]:
    return {"cart": [], "recommendations": []}


@dataclass
class Breakdown:
    rows: list[tuple[str, float]]  # (step, µs per reader)
    profile: str = ""


async def in_process(
    services: Services, template: str, readers: Sequence[Reader], n: int, profile: bool
) -> Breakdown:
    """Where one render's time goes, on this core, without HTTP."""
    renderer = services.renderer
    compiled = renderer.compiled(template)
    loop = asyncio.get_running_loop()
    reqs = [RenderRequest(orjson.loads(r.body)) for r in readers]
    datas = [await renderer.data(q.profile or {}, loop.time() + 60) for q in reqs]
    results = [
        renderer.render_data(compiled, q.user_id, q.profile, d, None, CAMPAIGN, q.formats)
        for q, d in zip(reqs, datas, strict=True)
    ]
    m = len(readers)

    def per(fn: Callable[[int], object]) -> float:
        for i in range(min(n, 50)):  # warm
            fn(i % m)
        gc.collect()  # so that a full collection owed by an earlier row does not land here
        start = time.perf_counter()
        for i in range(n):
            fn(i % m)
        return (time.perf_counter() - start) / n * 1e6

    async def aper(fn: Callable[[int], Any]) -> float:
        for i in range(min(n, 50)):
            await fn(i % m)
        gc.collect()
        start = time.perf_counter()
        for i in range(n):
            await fn(i % m)
        return (time.perf_counter() - start) / n * 1e6

    def render(fmts: tuple[str, ...]) -> Callable[[int], object]:
        return lambda i: renderer.render_data(
            compiled, reqs[i].user_id, reqs[i].profile, datas[i], None, CAMPAIGN, fmts
        )

    rows = [
        ("parse + validate the request (orjson, RenderRequest)",
         per(lambda i: RenderRequest(orjson.loads(readers[i].body)))),
        ("data: cart + recommendations from the catalog",
         await aper(lambda i: renderer.data(reqs[i].profile or {}, loop.time() + 60))),
        ("render_data, html only", per(render(("html",)))),
        ("render_data, amp only", per(render(("amp",)))),
        ("render_data, text only", per(render(("text",)))),
        ("render_data, html + amp + text", per(render(FORMATS))),
        ("the JSON answer (RenderResult.json, shared text encoded once)",
         per(lambda i: results[i].json())),
        (f"Renderer.render (data + render_data), {' + '.join(readers[0].formats)}",
         await aper(lambda i: renderer.render(
             template, reqs[i].user_id, profile=reqs[i].profile, campaign=CAMPAIGN,
             formats=reqs[i].formats))),
    ]  # fmt: skip
    text = ""
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            q = reqs[i % m]
            result = await renderer.render(
                template, q.user_id, profile=q.profile, campaign=CAMPAIGN, formats=q.formats
            )
            result.json()
        prof.disable()
        out = io.StringIO()
        stats = pstats.Stats(prof, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    return Breakdown(rows, text)


async def node_skeleton(services: Services, template: str) -> tuple[bytes, str]:
    """The reference render the Node baseline fills in (JSON), and its variant."""
    renderer = services.renderer
    compiled = renderer.compiled(template)
    first = next(iter(compiled.source.variants))
    probe = make_readers(1, template)[0].profile
    profile = {**probe, **SENTINELS}
    # A reference reader in the first variant, the one most readers of an A/B test see.
    for k in range(1000):
        result = await expanded_mjml(renderer, template, f"bench-ref-{k}", profile, CAMPAIGN)
        if result.variant == first:
            break
    if result.html is None or SENTINELS["first_name"] not in result.html:
        raise BenchError(f"the reference MJML of {template} does not show the first name")
    return (
        orjson.dumps(
            {
                "template": template,
                "sentinels": SENTINELS,
                "mjml": result.html,
                "amp": result.amp,
                "text": result.text,
                "subject": result.subject,
                "preheader": result.preheader,
                "variant": result.variant,
            }
        ),
        result.variant,
    )


# --- Node -------------------------------------------------------------------------------


def ensure_node_mjml(node_dir: Path) -> Path:
    """node_modules holding mjml@NODE_MJML_VERSION, installed with npm when missing."""
    modules = node_dir / "node_modules"
    package = modules / "mjml" / "package.json"
    if package.is_file() and json.loads(package.read_text())["version"] == NODE_MJML_VERSION:
        return modules
    if shutil.which("npm") is None:
        raise BenchError("npm is not on PATH (needed once, to install mjml for Node)")
    node_dir.mkdir(parents=True, exist_ok=True)
    print(f"installing mjml@{NODE_MJML_VERSION} into {node_dir} with npm", flush=True)
    argv = [
        "npm", "install", "--prefix", str(node_dir), "--no-audit", "--no-fund",
        "--loglevel=error", f"mjml@{NODE_MJML_VERSION}",
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError("npm install mjml did not finish in 10 minutes") from None
    if done.returncode != 0 or not package.is_file():
        raise BenchError(f"npm install mjml failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return modules


# --- one server under wrk ---------------------------------------------------------------


@dataclass
class Case:
    key: str
    name: str
    what: str
    argv: list[str]
    env: dict[str, str]
    verify: int  # how many readers to check before measuring
    kairos: bool = False
    same_answer: bool = False  # one fixed answer for everyone: check it against reader 0
    cwd: Path = ROOT


@dataclass
class Outcome:
    case: Case
    result: WrkResult
    sizes: dict[str, int]  # mean bytes of html, amp, text in the checked answers
    notes: list[str] = field(default_factory=list)


def _spread(readers: Sequence[Reader], count: int) -> list[Reader]:
    if count >= len(readers):
        return list(readers)
    step = len(readers) / count
    return [readers[int(i * step)] for i in range(count)]


def verify(case: Case, port: int, readers: Sequence[Reader]) -> dict[str, int]:
    """POST each reader's body; every answer must be a full render for that reader."""
    client = Client(port, timeout=30.0)
    sums = {"html": 0, "amp": 0, "text": 0}
    try:
        for reader in readers:
            answer = client.request("POST", "/v1/render", reader.body, HEADERS)
            if answer.status != 200:
                raise BenchError(
                    f"{case.name}: HTTP {answer.status} for {reader.user_id}: {answer.body[:300]!r}"
                )
            if answer.headers.get("content-type", "").split(";")[0] != "application/json":
                raise BenchError(f"{case.name}: content-type {answer.headers.get('content-type')}")
            expected = readers[0] if case.same_answer else reader
            for k, v in check_answer(case.name, expected, orjson.loads(answer.body)).items():
                sums[k] += v
    finally:
        client.close()
    return {k: v // len(readers) for k, v in sums.items()}


def lua_script(readers: Sequence[Reader], path: Path) -> Path:
    """A wrk script POSTing the readers' bodies round-robin, requests formatted once."""
    bodies = ",\n".join("  " + lua_string(r.body.decode()) for r in readers)
    headers = ", ".join(f"[ {lua_string(k)} ] = {lua_string(v)}" for k, v in HEADERS.items())
    path.write_text(
        f"local bodies = {{\n{bodies}\n}}\n"
        f"local headers = {{ {headers} }}\n"
        "local requests = {}\n"
        "local n = #bodies\n"
        "local i = 0\n"
        "function init(args)\n"
        "  for k, b in ipairs(bodies) do\n"
        "    requests[k] = wrk.format('POST', '/v1/render', headers, b)\n"
        "  end\n"
        "end\n"
        "function request()\n"
        "  i = i % n + 1\n"
        "  return requests[i]\n"
        "end\n",
        encoding="utf-8",
    )
    return path


@dataclass
class Run:
    seconds: float
    warmup: float
    connections: int
    wrk_timeout_s: float


def _render_counters(port: int) -> tuple[float, float, float]:
    """(render 200s, render non-200s, fallbacks served) from Kairos's /metrics."""
    samples = metrics(port)
    ok = total(samples, "kairos_requests_total", route="/v1/render", status="200")
    every = total(samples, "kairos_requests_total", route="/v1/render")
    return ok, every - ok, total(samples, "kairos_fallbacks_total")


def measure(
    case: Case, port: int, readers: Sequence[Reader], script: Path, run: Run, pin: Pinning
) -> Outcome:
    sizes = verify(case, port, _spread(readers, case.verify))
    print(f"[{case.key}] {case.name}: {min(case.verify, len(readers))} readers answered as "
          f"expected (html {sizes['html']:,} B, amp {sizes['amp']:,} B, text "
          f"{sizes['text']:,} B)", flush=True)  # fmt: skip
    warm = run_wrk(port, script, run.warmup, run.connections, pin, timeout_s=run.wrk_timeout_s)
    if warm.non_2xx:
        raise BenchError(f"{case.name}: {warm.non_2xx} non-2xx answers during warm-up")
    before = _render_counters(port) if case.kairos else None
    result = run_wrk(port, script, run.seconds, run.connections, pin, timeout_s=run.wrk_timeout_s)
    outcome = Outcome(case, result, sizes)
    if result.non_2xx:
        raise BenchError(f"{case.name}: {result.non_2xx} non-2xx answers:\n{result.raw}")
    if result.socket_errors:
        raise BenchError(f"{case.name}: wrk socket errors {result.socket_errors}:\n{result.raw}")
    if before is not None:
        after = _render_counters(port)
        ok, bad, fallbacks = (a - b for a, b in zip(after, before, strict=True))
        if bad or fallbacks or ok < result.requests:
            raise BenchError(
                f"{case.name}: /metrics during the run: {ok:.0f} renders answered 200 "
                f"(wrk counted {result.requests}), {bad:.0f} other, {fallbacks:.0f} fallbacks"
            )
        outcome.notes.append(f"/metrics: +{ok:.0f} renders 200, 0 fallbacks")
    verify(case, port, readers[:5])  # still right after the load?
    print(
        f"[{case.key}] {case.name}: {result.rps:,.0f} renders/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms" + (f"; {'; '.join(outcome.notes)}" if outcome.notes else ""),
        flush=True,
    )
    return outcome


# --- the batch endpoint -----------------------------------------------------------------


@dataclass
class BatchOutcome:
    key: str
    name: str
    what: str
    readers: int
    seconds: float
    first_line_ms: float
    requests: int

    @property
    def rate(self) -> float:
        return self.readers / self.seconds


class LineChecker:
    """Checks the NDJSON answer lines as they arrive: in order, one full render each."""

    def __init__(self, name: str, readers: Sequence[Reader]) -> None:
        self.name, self.readers = name, readers
        self.count = 0
        self._buffer = bytearray()
        self.first_at: float | None = None

    def feed(self, data: bytes) -> None:
        if self.first_at is None and data:
            self.first_at = time.perf_counter()
        self._buffer += data
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            self.line(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]

    def line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        if self.count >= len(self.readers):
            raise BenchError(f"{self.name}: more answer lines than readers sent")
        reader = self.readers[self.count]
        doc = orjson.loads(raw)
        if doc.get("user_id") != reader.user_id:
            raise BenchError(
                f"{self.name}: line {self.count + 1} is for {doc.get('user_id')!r}, "
                f"expected {reader.user_id!r}: {raw[:300]!r}"
            )
        check_answer(self.name, reader, doc)
        self.count += 1

    def done(self) -> None:
        if self._buffer.strip():
            self.line(bytes(self._buffer))
            self._buffer.clear()
        if self.count != len(self.readers):
            raise BenchError(f"{self.name}: {self.count} answer lines for {len(self.readers)}")


async def _batch_duplex(port: int, readers: Sequence[Reader], timeout_s: float) -> LineChecker:
    """One POST /v1/render/batch of every reader, chunked, answered lines read while the
    request is still being written (h11, the HTTP/1.1 engine under httpx)."""
    checker = LineChecker("kairos-batch", readers)
    reader_stream, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("Content-Type", "application/x-ndjson"),
        ("Authorization", f"Bearer {API_KEY}"),
        ("Transfer-Encoding", "chunked"),
    ]

    async def upload() -> None:
        writer.write(conn.send(h11.Request(method="POST", target="/v1/render/batch",
                                           headers=headers)))  # fmt: skip
        for start in range(0, len(readers), 100):
            piece = b"".join(r.line for r in readers[start : start + 100])
            writer.write(conn.send(h11.Data(data=piece)))
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def download() -> None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader_stream.read(1 << 18))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise BenchError(f"kairos-batch: HTTP {event.status_code}")
            elif isinstance(event, h11.Data):
                checker.feed(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return
            elif isinstance(event, h11.ConnectionClosed):
                raise BenchError("kairos-batch: the server closed the connection early")

    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(upload(), download())
    except TimeoutError:
        raise BenchError(f"kairos-batch: not done after {timeout_s:.0f}s") from None
    finally:
        writer.close()
    checker.done()
    return checker


def batch_duplex(port: int, readers: Sequence[Reader], timeout_s: float) -> BatchOutcome:
    start = time.perf_counter()
    checker = asyncio.run(_batch_duplex(port, readers, timeout_s))
    seconds = time.perf_counter() - start
    assert checker.first_at is not None
    return BatchOutcome(
        "d", "kairos-batch", "Kairos POST /v1/render/batch, 1 request, read while written",
        len(readers), seconds, (checker.first_at - start) * 1000, 1,
    )  # fmt: skip


def batch_httpx(port: int, readers: Sequence[Reader], per_request: int) -> BatchOutcome:
    """The same readers through httpx streaming: the NDJSON body from a generator, the
    answer read with iter_bytes, `per_request` readers a request on one connection."""
    checker = LineChecker("kairos-batch-httpx", readers)
    timeout = httpx.Timeout(30.0)  # a write that stalls 30 s: see the message below
    headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {API_KEY}"}
    requests = 0

    def lines(part: Sequence[Reader]) -> Iterator[bytes]:
        for start in range(0, len(part), 100):
            yield b"".join(r.line for r in part[start : start + 100])

    start = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=timeout) as client:
        for first in range(0, len(readers), per_request):
            part = readers[first : first + per_request]
            try:
                with client.stream(
                    "POST", "/v1/render/batch", content=lines(part), headers=headers
                ) as response:
                    if response.status_code != 200:
                        raise BenchError(f"kairos-batch-httpx: HTTP {response.status_code}")
                    for data in response.iter_bytes():
                        checker.feed(data)
            except httpx.WriteTimeout:
                raise BenchError(
                    f"kairos-batch-httpx: the upload of {len(part)} lines stalled: httpx "
                    "writes the whole request before reading the answer; Kairos reads a "
                    "batch ahead up to 32 MB, so a larger request fills the socket "
                    "buffers; use a smaller --batch-request-lines"
                ) from None
            requests += 1
    checker.done()
    seconds = time.perf_counter() - start
    assert checker.first_at is not None
    how = "in one request" if requests == 1 else f"{per_request} lines a request"
    return BatchOutcome(
        "d'", "kairos-batch-httpx", f"the same readers with httpx streaming, {how}",
        len(readers), seconds, (checker.first_at - start) * 1000, requests,
    )  # fmt: skip


# --- the whole bench --------------------------------------------------------------------


def _start(
    case: Case, procs: Processes, tmp: Path, pin: Pinning, ready_path: str
) -> tuple[int, Any, Path]:
    port = free_port()
    argv = pin.wrap([*case.argv, "--port", str(port)], pin.server)
    log = tmp / f"server-{case.key}.log"
    print(f"[{case.key}] {case.name}: starting on port {port}", flush=True)
    proc = procs.start(case.name, argv, env=case.env, log=log, cwd=case.cwd)
    wait_ready(case.name, proc, port, ready_path, log)
    return port, proc, log


def _alive(case: Case, proc: Any, log: Path) -> None:
    if proc.poll() is not None:
        raise BenchError(f"{case.name}: died during the run:\n{tail(log)}")


def bench(args: argparse.Namespace) -> int:
    seconds = 3.0 if args.quick else float(args.duration)
    warmup = 1.0 if args.quick else min(3.0, max(1.0, seconds / 5))
    batch_n = args.batch if args.batch is not None else (2000 if args.quick else 10_000)
    pin = pinning(not args.no_pin)
    for tool in ("wrk", "node"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is not on PATH")
    if pin.load is not None:
        os.sched_setaffinity(0, {pin.load})
    run = Run(seconds, warmup, args.connections, wrk_timeout_s=30.0)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-render-") as tmp_name:
            return _bench(args, procs, Path(tmp_name), pin, run, batch_n)
    finally:
        procs.stop_all()


def _bench(
    args: argparse.Namespace, procs: Processes, tmp: Path, pin: Pinning, run: Run, batch_n: int
) -> int:
    # A snapshot of the designers' files: every case renders exactly the same sources.
    blocks, templates = tmp / "blocks", tmp / "templates"
    shutil.copytree(ROOT / "blocks", blocks)
    shutil.copytree(ROOT / "templates", templates)
    env = kairos_env(blocks, templates)
    services = asyncio.run(_services(env))
    template = _pick_template(services.renderer, args.template, make_readers(1, "")[0].profile)
    formats = tuple(f for f in FORMATS if f in args.formats.split(","))
    readers = make_readers(args.readers, template, formats)
    modules = ensure_node_mjml(Path(args.node_dir))
    node_version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()

    print("Kairos render bench")
    pinned = pin.describe("wrk, the batch client and this script")
    print(f"  python {platform.python_version()}, node {node_version}, mjml (npm) "
          f"{NODE_MJML_VERSION}, {os.cpu_count()} cores, pinning: {pinned}")  # fmt: skip
    print(f"  template '{template}' (snapshot of blocks/ and templates/), {len(readers)} "
          f"readers with inline profiles cycled round-robin, campaign '{CAMPAIGN}', "
          f"formats {'+'.join(formats)}")  # fmt: skip
    print(f"  wrk -t1 -c{run.connections} -d{run.seconds:.0f}s --latency (warm-up "
          f"{run.warmup:.0f}s); batch: {batch_n} readers")  # fmt: skip
    print(f"  code: {_code_state()}")
    print(flush=True)

    n = 300 if args.quick else 1000
    breakdown = asyncio.run(in_process(services, template, readers, n, args.profile))
    print(f"In-process, one core, no HTTP ({n} renders of {template}, µs per reader):")
    for step, us in breakdown.rows:
        print(f"  {us:>8,.0f} µs  {step}")
    full = breakdown.rows[-1][1] + breakdown.rows[0][1] + breakdown.rows[-2][1]
    print(f"  => at most {1e6 / full:,.0f} renders/s on one core before any HTTP work "
          "(parse + render + encode)")  # fmt: skip
    print(flush=True)

    skeleton = tmp / "node-skeleton.json"
    skeleton_json, variant = asyncio.run(node_skeleton(services, template))
    skeleton.write_bytes(skeleton_json)
    script = lua_script(readers, tmp / "wrk-render.lua")
    outcomes: dict[str, Outcome] = {}
    batches: list[BatchOutcome] = []

    # (a) Kairos, then (d) the batch endpoint on the same server.
    case_a = Case(
        "a", "kairos", "Kairos POST /v1/render, MJML compiled once per template",
        uvicorn_argv("app.app:factory", factory=True), env, len(readers), kairos=True,
    )  # fmt: skip
    port, proc, log = _start(case_a, procs, tmp, pin, "/readyz")
    try:
        outcomes["a"] = measure(case_a, port, readers, script, run, pin)
        _alive(case_a, proc, log)
        _, _, fallbacks_before = _render_counters(port)
        batch_readers = [readers[i % len(readers)] for i in range(batch_n)]
        timeout_s = max(120.0, batch_n / 50)
        for attempt in (
            lambda: batch_duplex(port, batch_readers, timeout_s),
            lambda: batch_httpx(port, batch_readers, args.batch_request_lines or batch_n),
        ):
            b = attempt()
            batches.append(b)
            print(f"[{b.key}] {b.name}: {b.readers:,} readers in {b.seconds:.2f} s = "
                  f"{b.rate:,.0f} readers/s ({b.requests} request(s), first line after "
                  f"{b.first_line_ms:.0f} ms), every line checked", flush=True)  # fmt: skip
        _, _, fallbacks_after = _render_counters(port)
        if fallbacks_after != fallbacks_before:
            raise BenchError(f"kairos-batch: {fallbacks_after - fallbacks_before:.0f} fallbacks")
        _alive(case_a, proc, log)
    finally:
        procs.stop(proc)

    # (b) MJML compiled per render in Python.
    case_b = Case(
        "b", "naive-python", "Starlette, Jinja over MJML + mjml2html + css_inline per render",
        uvicorn_argv("bare_render:naive_app", app_dir=BENCH_DIR), env, VERIFY_SAMPLE,
    )  # fmt: skip
    port, proc, log = _start(case_b, procs, tmp, pin, "/healthz")
    try:
        outcomes["b"] = measure(case_b, port, readers, script, run, pin)
        _alive(case_b, proc, log)
    finally:
        procs.stop(proc)
    a_html, b_html = outcomes["a"].sizes["html"], outcomes["b"].sizes["html"]
    if abs(a_html - b_html) > 0.2 * a_html:
        raise BenchError(
            f"naive-python's HTML ({b_html} B) is far from Kairos's ({a_html} B): "
            "bench/bare_render.py no longer assembles the document as the compiler does"
        )

    # (c) Node + mjml compiling per render.
    case_c = Case(
        "c", "node-mjml", f"Node + mjml {NODE_MJML_VERSION}, compiled per render (variant "
        f"{variant} for all)",
        ["node", str(BENCH_DIR / "node_mjml_server.js"), "--skeleton", str(skeleton),
         "--modules", str(modules)],
        base_env(), VERIFY_SAMPLE, cwd=BENCH_DIR,
    )  # fmt: skip
    port, proc, log = _start(case_c, procs, tmp, pin, "/healthz")
    try:
        outcomes["c"] = measure(case_c, port, readers, script, run, pin)
        _alive(case_c, proc, log)
    finally:
        procs.stop(proc)

    # (e) The ceiling: the same stack answering Kairos's answer for reader 0, no render.
    answer = tmp / "answer.json"
    answer.write_bytes(asyncio.run(_one_answer(services, template, readers[0])))
    case_e = Case(
        "e", "bare-static", "ceiling: Starlette answering one fixed render, orjson per request",
        uvicorn_argv("bare_render:static_app", app_dir=BENCH_DIR),
        {**base_env(), "BENCH_RENDER_ANSWER": str(answer)}, VERIFY_SAMPLE, same_answer=True,
    )  # fmt: skip
    port, proc, log = _start(case_e, procs, tmp, pin, "/healthz")
    try:
        outcomes["e"] = measure(case_e, port, readers, script, run, pin)
        _alive(case_e, proc, log)
    finally:
        procs.stop(proc)

    _report(outcomes, batches)
    if breakdown.profile:
        print("cProfile of the in-process loop (Renderer.render + orjson.dumps), by own time:")
        print(breakdown.profile)
    return 0


async def _one_answer(services: Services, template: str, reader: Reader) -> bytes:
    req = RenderRequest(orjson.loads(reader.body))
    result = await services.renderer.render(
        template, req.user_id, profile=req.profile, campaign=req.campaign, formats=req.formats
    )
    return orjson.dumps(result.body())


def _code_state() -> str:
    """The commit measured, and whether the server's files differ from it."""

    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "app", "blocks", "templates").splitlines()
    changed = [line[3:] for line in dirty]
    if not changed:
        return f"commit {commit}"
    listed = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return f"commit {commit} + uncommitted changes to {listed}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "BELOW"


def _report(outcomes: dict[str, Outcome], batches: list[BatchOutcome]) -> None:
    print()
    print(f"{'':3}{'case':<19}{'renders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'HTML KB':>9}  what")
    for key, o in outcomes.items():
        r = o.result
        print(f"{key:<3}{o.case.name:<19}{r.rps:>10,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
              f"{o.sizes['html'] / 1024:>9.1f}  {o.case.what}")  # fmt: skip
    for b in batches:
        print(f"{b.key:<3}{b.name:<19}{b.rate:>10,.0f}{'-':>9}{'-':>9}{'':>9}  "
              f"{b.what} ({b.readers:,} readers, {b.seconds:.1f} s; readers/s)")  # fmt: skip
    print()
    a, b, c = (outcomes[k].result.rps for k in ("a", "b", "c"))
    batch = batches[0].rate
    print(f"a   = {a:>7,.0f} renders/s      (target >= {TARGET_RPS:,.0f} on one core)  "
          f"{_verdict(a >= TARGET_RPS)}")  # fmt: skip
    print(f"a/b = {a / b:>7.1f}x              (MJML compiled per render in Python; no target)")
    print(f"a/c = {a / c:>7.1f}x              (target >= {TARGET_A_OVER_C:.0f}x)  "
          f"{_verdict(a / c >= TARGET_A_OVER_C)}")  # fmt: skip
    print(f"d   = {batch:>7,.0f} readers/s      (target >= {TARGET_BATCH:,.0f} per core)  "
          f"{_verdict(batch >= TARGET_BATCH)}")  # fmt: skip
    if "e" in outcomes:
        e = outcomes["e"].result.rps
        print(f"a/e = {a / e:>7.2f}               (of the stack's ceiling for this answer: "
              f"HTTP + JSON take {1e6 / e:,.0f} µs of the {1e6 / a:,.0f} µs a render "
              "request costs)")  # fmt: skip
    print(flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Kairos render throughput against MJML compiled per render (wrk).",
    )
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS",
                        help="length of each measured wrk run (default 10)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="3 s runs and a 2,000-reader batch: a smoke run")  # fmt: skip
    parser.add_argument("--template", default=None,
                        help=f"template to render (default {DEFAULT_TEMPLATE}, else the "
                             "heaviest one that compiles)")  # fmt: skip
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk connections (default 32)")  # fmt: skip
    parser.add_argument("--readers", type=int, default=1000,
                        help="distinct readers cycled through (default 1000)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=None, metavar="N",
                        help="readers in the batch (default 10000, 2000 with --quick)")  # fmt: skip
    parser.add_argument("--batch-request-lines", type=int, default=None, metavar="N",
                        help="lines a request for the httpx client (default: the whole "
                             "batch in one request)")  # fmt: skip
    parser.add_argument("--node-dir", default=str(NODE_DIR),
                        help=f"where mjml for Node is installed (default {NODE_DIR})")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="also print a cProfile of the in-process render loop")  # fmt: skip
    parser.add_argument("--formats", default="html,amp,text",
                        help="parts to render, html included (default html,amp,text)")  # fmt: skip
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = parser.parse_args(argv)
    asked = args.formats.split(",")
    if "html" not in asked or any(f not in FORMATS for f in asked):
        parser.error(f"--formats: a comma list drawn from {','.join(FORMATS)}, with html")
    if min(args.duration, args.connections, args.readers, args.batch_request_lines or 1) < 1:
        parser.error("--duration, --connections, --readers, --batch-request-lines must be >= 1")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be at least 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
