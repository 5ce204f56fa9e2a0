"""Live images benchmark: render times and sizes in-process, then cached countdowns over
HTTP against a bare Starlette endpoint serving the same bytes.

    .venv/bin/python bench/images.py [--duration 10] [--connections 64]
    .venv/bin/python bench/images.py --quick        # 3 s runs, fewer renders: a smoke run

Part 1, in-process (Kairos's own app and services, the embedded store with the demo
data, this process pinned to one core): for the countdown GIF (600x120, 60 frames), the
banner PNG (600x200) and the product card PNG (300x400, product image from local
catalog assets), the time of
  - the first render of a fresh app (fonts opened, layout and glyphs drawn),
  - a cold render: the rendered-bytes cache emptied before each one (for the countdown,
    a new second each time), through the data step and the worker pool,
  - the drawing alone (the pure render function, no pool hop; countdown only),
  - a cached serve: the whole route (token, parameters, cache hit, response), called as
    an ASGI app with no network,
and the size in bytes of each image. Every image is decoded with Pillow and checked.

Part 2, over HTTP with wrk (-t1, its own core), each server a uvicorn process (uvloop,
httptools, 1 worker, no access log) pinned to the other core:
  a  kairos-countdown   GET /v1/img/countdown.gif?t=... for 1000 readers round-robin,
                        all with the same deadline and style: every second one render,
                        every other open of that second a cache hit
  b  bare-static        bench/bare_images.py: bare Starlette answering the bytes Kairos
                        served in (a), same size, same headers
and the ratio a/b (target >= 0.6). Before measuring, every URL must answer 200, a GIF,
no fallback; after, Kairos's /metrics must show no fallback and a cache hit rate near 1.

Targets: a cold 600x120, 60-frame countdown (drawn at 2x density by default: 1200x240
pixels) in <= 10 ms and <= 80 KB; a/b >= 0.6. The same countdown at 1x is measured beside
it, as the figures before the 2x default were.
Exit status: 0 when the bench ran (whatever the figures), 1 when something broke,
130 on Ctrl-C. Every process it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import PIL
from common import (
    BENCH_DIR,
    BenchError,
    Client,
    Pinning,
    Processes,
    WrkResult,
    base_env,
    free_port,
    metrics,
    pinning,
    run_main,
    run_wrk,
    tail,
    total,
    uvicorn_argv,
    wait_ready,
)
from PIL import Image
from starlette.applications import Starlette

from app.app import create_app
from app.images.countdown import Countdown
from app.images.countdown_words import drawn
from app.settings import Secret, Settings
from app.tokens import Tokens

SECRET_KEY = "kairos-bench-images-0123456789abcdefghij"  # fixed, 40 characters
DEADLINE = "2026-12-24T23:59:59Z"
DEADLINE_S = 1798156799
LEFT = 3 * 86400 + 5 * 3600 + 7 * 60 + 12
TARGET_MS, TARGET_BYTES, TARGET_RATIO = 10.0, 80 * 1024, 0.6


# --- part 1: in-process ---------------------------------------------------------------


@dataclass
class Figure:
    name: str
    first_ms: float
    cold_ms: float
    cold_p95_ms: float
    draw_ms: float | None
    cached_ms: float
    size: tuple[int, int]
    frames: int
    nbytes: int


def _product_photo(path: Path) -> None:
    """A 1000x1000 JPEG with some detail (a gradient and rings), like a product photo."""
    image = Image.radial_gradient("L").resize((1000, 1000))
    colour = Image.merge(
        "RGB", (image, image.rotate(90), Image.linear_gradient("L").resize((1000, 1000)))
    )
    colour.save(path, "JPEG", quality=85)


def _settings(tmp: Path) -> Settings:
    assets = tmp / "catalog-assets"
    assets.mkdir()
    _product_photo(assets / "lamp.jpg")
    return Settings.from_env(
        {
            "KAIROS_ENV": "test",
            "KAIROS_SECRET_KEYS": SECRET_KEY,
            "KAIROS_API_KEYS": "bench-api-key-0123456789",
            "KAIROS_DEMO_DATA": "true",
            "KAIROS_LOG_LEVEL": "WARNING",
            "KAIROS_BUDGET_MS": "2000",
            "KAIROS_CATALOG_ASSETS_DIR": str(assets),
            "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
        }
    )


async def _asgi_get(app: Starlette, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET through the ASGI app, in-process (no network, no client library)."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def _check_image(
    name: str,
    status: int,
    headers: dict[str, str],
    body: bytes,
    fmt: str,
    size: tuple[int, int],
    frames: int,
) -> None:
    if status != 200 or "x-kairos-fallback" in headers:
        raise BenchError(f"{name}: HTTP {status}, fallback {headers.get('x-kairos-fallback')}")
    image = Image.open(io.BytesIO(body))
    got = (image.format, image.size, getattr(image, "n_frames", 1))
    if got != (fmt.upper(), size, frames):
        raise BenchError(f"{name}: expected {(fmt.upper(), size, frames)}, decoded {got}")


async def _timed(fn: Callable[[], Awaitable[Any]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


async def _in_process(tmp: Path, cold_runs: int, cached_runs: int) -> list[Figure]:
    app = create_app(_settings(tmp))
    services = app.state.services
    tokens = Tokens((Secret(SECRET_KEY),))
    await services.stores.catalog.put_products(
        [
            {
                "sku": "BENCH-1",
                "title": "Brass desk lamp with linen shade",
                "price": 129.0,
                "currency": "EUR",
                "image": "lamp.jpg",
                "url": "https://shop.example.com/p/b1",
            }
        ]
    )
    await services.stores.profiles.put(
        "reader",
        {
            "first_name": "Ada",
            "loyalty_points": 1234,
            "recommendations": [{"sku": "BENCH-1", "score": 1.0}],
        },
    )
    cases = [
        # Drawn at 2x density by default: twice the pixels of the display size each way.
        ("countdown GIF", "countdown", {"deadline": DEADLINE}, "gif", (1200, 240), 60),
        ("countdown GIF 1x", "countdown", {"deadline": DEADLINE, "density": 1}, "gif",
         (600, 120), 60),
        ("banner PNG", "banner", None, "png", (1200, 400), 1),
        ("product card PNG", "product", {"slot": 0}, "png", (600, 800), 1),
    ]
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        return [await _measure(app, tokens, case, cold_runs, cached_runs) for case in cases]
    finally:
        await lifespan.__aexit__(None, None, None)


async def _measure(
    app: Starlette,
    tokens: Tokens,
    case: tuple[str, str, dict[str, Any] | None, str, tuple[int, int], int],
    cold_runs: int,
    cached_runs: int,
) -> Figure:
    label, name, params, fmt, size, frames = case
    images = app.state.services.images
    token = tokens.sign("image", "reader", name, params=params)
    path = f"/v1/img/{name}.{fmt}?{urlencode({'t': token})}"
    kind = images.kinds[name]
    grant = tokens.verify("image", token)
    spec = images.spec(kind, token, grant)
    clock = [DEADLINE_S - LEFT + 0.5]
    images.clock = lambda: clock[0]

    async def cold() -> bytes:
        images.cache.clear()
        clock[0] += 1  # a countdown's next second; the others don't care
        deadline = asyncio.get_running_loop().time() + 2
        body: bytes = await images.image(kind, spec, grant, deadline)
        return body

    async def cached() -> None:
        await _asgi_get(app, path)

    first = (await _timed(cold, 1))[0]
    colds = await _timed(cold, cold_runs)
    status, headers, body = await _asgi_get(app, path)
    _check_image(label, status, headers, body, fmt, size, frames)
    hits = await _timed(cached, cached_runs)
    draw_ms = None
    if name == "countdown":
        art = kind.art  # type: ignore[attr-defined]
        # The parameters as drawn: with the words in the reader's language filled in.
        shown = drawn(spec.params, kind._words_of(spec.params))  # type: ignore[attr-defined]
        draws = []
        for i in range(cold_runs):
            start = time.perf_counter()
            art.gif(shown, LEFT - i)
            draws.append((time.perf_counter() - start) * 1000)
        draw_ms = statistics.median(draws)
    p95 = statistics.quantiles(colds, n=20)[-1] if len(colds) >= 20 else max(colds)
    return Figure(
        label,
        first,
        statistics.median(colds),
        p95,
        draw_ms,
        statistics.median(hits),
        size,
        frames,
        len(body),
    )


def _print_figures(figures: list[Figure]) -> None:
    print(
        f"{'image':<18} {'size':>9} {'frames':>6} {'bytes':>8} {'first ms':>9} "
        f"{'cold ms':>8} {'cold p95':>9} {'draw ms':>8} {'cached ms':>10}"
    )
    for f in figures:
        draw = f"{f.draw_ms:8.2f}" if f.draw_ms is not None else f"{'-':>8}"
        print(
            f"{f.name:<18} {f.size[0]:>4}x{f.size[1]:<4} {f.frames:>6} {f.nbytes:>8,} "
            f"{f.first_ms:>9.2f} {f.cold_ms:>8.2f} {f.cold_p95_ms:>9.2f} {draw} "
            f"{f.cached_ms:>10.3f}"
        )
    countdown = figures[0]
    ok_ms = countdown.cold_ms <= TARGET_MS
    ok_bytes = countdown.nbytes <= TARGET_BYTES
    print(
        f"\ncold countdown {countdown.cold_ms:.2f} ms (target <= {TARGET_MS:.0f} ms) "
        f"{'PASS' if ok_ms else 'ABOVE'}; {countdown.nbytes / 1024:.1f} KB "
        f"(target <= {TARGET_BYTES // 1024} KB) {'PASS' if ok_bytes else 'ABOVE'}",
        flush=True,
    )


# --- part 2: HTTP ---------------------------------------------------------------------


def _lua_script(paths: Sequence[str], path: Path) -> Path:
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


def _verify(name: str, port: int, paths: Sequence[str], decode_first: int) -> bytes:
    client = Client(port)
    first = b""
    try:
        for i, path in enumerate(paths):
            answer = client.get(path)
            media = answer.headers.get("content-type")
            if answer.status != 200 or media != "image/gif":
                raise BenchError(f"{name}: HTTP {answer.status} {media} for {path[:60]}")
            if "x-kairos-fallback" in answer.headers:
                raise BenchError(f"{name}: fallback {answer.headers['x-kairos-fallback']}")
            if i < decode_first:
                image = Image.open(io.BytesIO(answer.body))
                if (image.format, image.size, image.n_frames) != ("GIF", (1200, 240), 60):
                    raise BenchError(f"{name}: not a 1200x240 (600x120 at 2x), 60-frame GIF")
            first = first or answer.body
    finally:
        client.close()
    return first


@dataclass
class Run:
    name: str
    result: WrkResult
    body: bytes
    notes: str = ""


def _run(
    name: str,
    argv: list[str],
    env: dict[str, str],
    ready: str,
    paths: list[str],
    procs: Processes,
    tmp: Path,
    pin: Pinning,
    seconds: float,
    warmup: float,
    connections: int,
    kairos: bool,
) -> Run:
    port = free_port()
    log = tmp / f"{name}.log"
    proc = procs.start(name, pin.wrap([*argv, "--port", str(port)], pin.server), env=env, log=log)
    try:
        wait_ready(name, proc, port, ready, log)
        body = _verify(name, port, paths, decode_first=5)
        script = _lua_script(paths, tmp / f"wrk-{name}.lua")
        run_wrk(port, script, warmup, connections, pin)
        before = metrics(port) if kairos else []
        result = run_wrk(port, script, seconds, connections, pin)
        if result.non_2xx:
            raise BenchError(f"{name}: {result.non_2xx} non-2xx answers:\n{result.raw}")
        if proc.poll() is not None:
            raise BenchError(f"{name}: died during the run:\n{tail(log)}")
        notes = ""
        if kairos:
            after = metrics(port)

            def delta(metric: str, **labels: str) -> float:
                return total(after, metric, **labels) - total(before, metric, **labels)

            fallbacks = delta("kairos_fallbacks_total")
            renders = delta("kairos_image_renders_total", image="countdown")
            hits = delta("kairos_image_cache_total", image="countdown", result="hit")
            misses = delta("kairos_image_cache_total", image="countdown", result="miss")
            if fallbacks:
                raise BenchError(f"{name}: {fallbacks:.0f} fallbacks under load")
            if hits < 0.99 * (hits + misses):
                raise BenchError(f"{name}: cache hits {hits:.0f}, misses {misses:.0f}")
            notes = (
                f"/metrics during the run: {renders:.0f} renders (one per second), "
                f"{hits:,.0f} cache hits, {misses:.0f} misses, no fallback"
            )
        _verify(name, port, paths[:5], decode_first=0)
        print(
            f"[{name}] {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms, {len(body):,} bytes a response",
            flush=True,
        )
        if notes:
            print(f"[{name}] {notes}", flush=True)
        return Run(name, result, body, notes)
    finally:
        procs.stop(proc)


def _http(args: argparse.Namespace, procs: Processes, tmp: Path, pin: Pinning) -> None:
    seconds = 3.0 if args.quick else float(args.duration)
    warmup = 1.0 if args.quick else 2.0
    tokens = Tokens((Secret(SECRET_KEY),))
    paths = [
        "/v1/img/countdown.gif?"
        + urlencode(
            {
                "t": tokens.sign(
                    "image", f"reader-{i:05d}", "countdown", params={"deadline": DEADLINE}
                )
            }
        )
        for i in range(args.readers)
    ]
    env = {
        **base_env(),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET_KEY,
        "KAIROS_DEMO_DATA": "false",
        "KAIROS_LOG_LEVEL": "WARNING",
    }
    common = {
        "procs": procs,
        "tmp": tmp,
        "pin": pin,
        "seconds": seconds,
        "warmup": warmup,
        "connections": args.connections,
    }
    a = _run(
        "kairos-countdown",
        uvicorn_argv("app.app:factory", factory=True),
        env,
        "/healthz",
        paths,
        kairos=True,
        **common,
    )
    body_file = tmp / "countdown.gif"
    body_file.write_bytes(a.body)
    b = _run(
        "bare-static",
        uvicorn_argv("bare_images:static_app", app_dir=BENCH_DIR),
        {**base_env(), "BENCH_IMAGE_BODY": str(body_file)},
        "/healthz",
        paths,
        kairos=False,
        **common,
    )
    if len(b.body) != len(a.body):
        raise BenchError("the bare server answered another size than Kairos")
    ratio = a.result.rps / b.result.rps
    print()
    print(f"{'':2} {'server':<17} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'bytes':>8}")
    for key, run in (("a", a), ("b", b)):
        r = run.result
        print(
            f"{key:2} {run.name:<17} {r.rps:>9,.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{len(run.body):>8,}"
        )
    print(
        f"\na/b = {ratio:.2f}  (target >= {TARGET_RATIO})  "
        f"{'PASS' if ratio >= TARGET_RATIO else 'BELOW'}",
        flush=True,
    )


# --- the whole bench ------------------------------------------------------------------


def bench(args: argparse.Namespace) -> int:
    pin = pinning(not args.no_pin)
    if not args.no_http and shutil.which("wrk") is None:
        raise BenchError("wrk is not on PATH (or pass --no-http)")
    if pin.load is not None:
        os.sched_setaffinity(0, {pin.load})
    cold_runs = 20 if args.quick else 100
    cached_runs = 200 if args.quick else 2000
    print("Kairos live images bench")
    print(
        f"  python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"{os.cpu_count()} cores, pinning: {pin.describe()}"
    )
    print(f"  in-process: {cold_runs} cold renders and {cached_runs} cached serves per image")
    if not args.no_http:
        seconds = 3 if args.quick else args.duration
        print(
            f"  HTTP: wrk -t1 -c{args.connections} -d{seconds:.0f}s, "
            f"{args.readers} readers' countdown URLs round-robin"
        )
    print(flush=True)
    procs = Processes()
    try:
        with tempfile.TemporaryDirectory(prefix="kairos-bench-images-") as tmp_name:
            tmp = Path(tmp_name)
            figures = asyncio.run(_in_process(tmp, cold_runs, cached_runs))
            _print_figures(figures)
            Countdown.parse({"deadline": DEADLINE})  # the URLs below are valid
            if not args.no_http:
                print()
                _http(args, procs, tmp, pin)
    finally:
        procs.stop_all()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="length of each measured wrk run (default 10)",
    )
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument(
        "--readers", type=int, default=1000, help="readers' URLs cycled through (default 1000)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs: a smoke run")
    parser.add_argument("--no-http", action="store_true", help="only the in-process part")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.readers < 1:
        parser.error("--duration, --connections and --readers must be at least 1")
    return run_main(bench, args)


if __name__ == "__main__":
    sys.exit(main())
