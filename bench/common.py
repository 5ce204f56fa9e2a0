"""What the benches share: their own processes (pinned with taskset, stopped on the way
out), a keep-alive HTTP client for checks, wrk and its output, uvicorn command lines and
a clean environment, and the way a bench ends (exit 0 / 1 / 130).

Used by bench/feeds.py and bench/render.py; not a bench itself.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
# The benches import the project's `app` package: importing this module makes it found.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class BenchError(Exception):
    """Something broke: the bench cannot give a meaningful figure."""


# --- processes --------------------------------------------------------------------------


def die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the bench itself dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every long-running process the bench started, stopped in reverse order."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes], Any]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        log: Path,
        cwd: Path = ROOT,
    ) -> subprocess.Popen[bytes]:
        out = log.open("wb")
        try:
            proc = subprocess.Popen(
                list(argv),
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops them
                preexec_fn=die_with_parent,
            )
        except BaseException:
            out.close()
            raise
        self._procs.append((name, proc, out))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        for i, (_, p, out) in enumerate(self._procs):
            if p is proc:
                del self._procs[i]
                terminate(p)
                out.close()
                return

    def stop_all(self) -> None:
        while self._procs:
            _, p, out = self._procs.pop()
            terminate(p)
            out.close()


def terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Pinning:
    server: int | None  # core for the server under test
    load: int | None  # core for wrk (and helpers, and the bench script)

    def wrap(self, argv: list[str], core: int | None) -> list[str]:
        return argv if core is None else ["taskset", "-c", str(core), *argv]

    def describe(self, load_side: str = "wrk and this script") -> str:
        if self.server is None:
            return "none (taskset missing or fewer than 2 usable cores)"
        return f"server under test on core {self.server}; {load_side} on core {self.load}"


def pinning(enabled: bool) -> Pinning:
    cores = sorted(os.sched_getaffinity(0))
    if not enabled or len(cores) < 2 or shutil.which("taskset") is None:
        return Pinning(None, None)
    return Pinning(cores[0], cores[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"


# --- HTTP -------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        self._conn.request(method, path, body=body, headers=headers or {})
        r = self._conn.getresponse()
        data = r.read()
        return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, data)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def close(self) -> None:
        self._conn.close()


def wait_ready(name: str, proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name}: exited with status {proc.returncode}:\n{tail(log)}")
        client = Client(port, timeout=1.0)
        try:
            answer = client.get(path)
            if answer.status == 200:
                return
            last = f"HTTP {answer.status} {answer.body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        finally:
            client.close()
        time.sleep(0.1)
    raise BenchError(f"{name}: not ready after {START_TIMEOUT_S:.0f}s ({last}):\n{tail(log)}")


# --- wrk --------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: dict[str, int] = field(default_factory=dict)
    raw: str = ""


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M)
    total = re.search(r"^\s+(\d+) requests in ", text, re.M)
    if not (rps and p50 and p99 and total):
        raise BenchError(f"cannot parse wrk's output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    socket_errors = {}
    if errors:
        socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=_ms(*p50.groups()),
        p99_ms=_ms(*p99.groups()),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors={k: v for k, v in socket_errors.items() if v},
        raw=text,
    )


def run_wrk(
    port: int,
    script: Path,
    seconds: float,
    connections: int,
    pin: Pinning,
    *,
    timeout_s: float = 2.0,
) -> WrkResult:
    """wrk -t1 against 127.0.0.1:`port` with a Lua `script`, pinned to the load core;
    `timeout_s` is wrk's per-request timeout (a timed-out request counts as an error)."""
    argv = pin.wrap(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout", f"{max(1, round(timeout_s))}s",
            "--latency",
            "-s", str(script),
            f"http://127.0.0.1:{port}/",
        ],
        pin.load,
    )  # fmt: skip
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + timeout_s + 60,
            cwd=ROOT,
            check=False,
            preexec_fn=die_with_parent,
        )
    except subprocess.TimeoutExpired:
        raise BenchError("wrk did not finish in time") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    if done.stderr.strip():  # a Lua error: wrk goes on with its default request
        raise BenchError(f"wrk reported an error:\n{done.stderr}")
    return parse_wrk(done.stdout)


def lua_string(text: str) -> str:
    """`text` as a Lua long-bracket literal that cannot be closed early by its content."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


# --- Kairos /metrics --------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def metrics(port: int) -> Samples:
    """Every sample of a Kairos server's /metrics."""
    client = Client(port)
    try:
        answer = client.get("/metrics")
    finally:
        client.close()
    if answer.status != 200:
        raise BenchError(f"/metrics answered {answer.status}")
    samples = []
    for line in answer.body.decode().splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            samples.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    return sum(
        v for n, lab, v in samples
        if n == name and all(lab.get(k) == want for k, want in labels.items())
    )  # fmt: skip


# --- servers ----------------------------------------------------------------------------


def uvicorn_argv(app: str, *, factory: bool = False, app_dir: Path = ROOT) -> list[str]:
    """One uvicorn worker on 127.0.0.1 with uvloop and httptools, no access log (the
    caller adds --port); Kairos's own app with its protocol, as `kairos serve` runs it."""
    argv = [sys.executable, "-m", "uvicorn"]
    if factory:
        argv.append("--factory")
    http = "app.protocol:KairosProtocol" if app.startswith("app.app:") else "httptools"
    return [
        *argv,
        app,
        "--app-dir", str(app_dir),
        "--host", "127.0.0.1",
        "--loop", "uvloop",
        "--http", http,
        "--workers", "1",
        "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip


def base_env() -> dict[str, str]:
    """This environment without any Kairos or Redis setting the caller may have set."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("KAIROS_", "BENCH_")) and k not in ("REDIS_URL", "WEB_CONCURRENCY")
    }  # fmt: skip
    env["PYTHONUNBUFFERED"] = "1"
    return env


# --- data -------------------------------------------------------------------------------


def bench_products(count: int, prefix: str, step: float, width: int) -> list[dict[str, Any]]:
    """`count` catalog products `{prefix}-000`... (`width` digits), priced from 9.5 by
    `step`, the most popular first: the catalog the benches seed."""
    categories = ("lighting", "textiles", "furniture", "decor", "kitchen")
    slug = prefix.lower()
    return [
        {
            "sku": f"{prefix}-{i:0{width}d}",
            "title": f"Bench product {i}",
            "price": round(9.5 + i * step, 2),
            "currency": "EUR",
            "category": categories[i % len(categories)],
            "image_url": f"https://shop.example.com/img/{slug}-{i:0{width}d}.jpg",
            "url": f"https://shop.example.com/p/{slug}-{i:0{width}d}",
            "popularity": count - i,
        }
        for i in range(count)
    ]


# --- redis-server -----------------------------------------------------------------------


def start_redis(
    procs: Processes, tmp: Path, core: int | None
) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server of the bench's own on a free port of 127.0.0.1 (data in `tmp`, no RDB
    or AOF), pinned to `core` when given; waits until it answers PING. Its process and
    port."""
    port = free_port()
    data = tmp / f"redis-{port}"
    data.mkdir()
    argv = [
        "redis-server",
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(data),
        "--save", "",
        "--appendonly", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    if core is not None:
        argv = ["taskset", "-c", str(core), *argv]
    log = tmp / f"redis-{port}.log"
    proc = procs.start("redis-server", argv, env=dict(os.environ), log=log)
    wait_redis(proc, port, log)
    return proc, port


def wait_redis(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the redis-server `proc` on `port` answers PING (BenchError if it exits or
    takes longer than START_TIMEOUT_S; `log` is its output)."""
    import redis  # the project's client; imported here so the other benches need not

    deadline = time.monotonic() + START_TIMEOUT_S
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1.0)
    try:
        while True:
            if proc.poll() is not None:
                raise BenchError(f"redis-server exited with {proc.returncode}:\n{tail(log)}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server not ready on port {port}:\n{tail(log)}")
            time.sleep(0.05)
    finally:
        client.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (from /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the way a bench ends ---------------------------------------------------------------


def run_main(bench: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run `bench(args)`: 0 when it ran, 1 on `BenchError`, 130 on Ctrl-C; SIGTERM and
    SIGHUP unwind through the callers' finally blocks, so every process is stopped."""

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    try:
        return bench(args)
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr, flush=True)
        return 130
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"\nbench: stopped by a signal ({exc.code})", file=sys.stderr, flush=True)
        raise
