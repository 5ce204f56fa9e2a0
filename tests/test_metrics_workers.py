"""`/metrics` of `kairos serve --workers 2` answers for both workers: every scrape sums the
counters and histograms of all of them, a worker that dies keeps its counts but leaves
the live gauges, and the shared folder is private and gone after the server."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from support import PROJECT_ROOT, RedisServer, free_port, process_env, stop_process

from app.metrics import Metrics

REQUESTS = 240
HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}
SETTLE_S = 15.0


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A new connection each time: any worker may answer.
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def healthz_by_pid(folder: Path) -> dict[int, float]:
    """What each worker wrote for GET /healthz, read from its own file."""
    found = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        found[pid] = sum(
            v
            for key, v, _, _ in MmapedDict.read_all_values_from_file(str(path))
            if '"route": "/healthz"' in key and '"status": "200"' in key
        )
    return found


async def spread(base: str, count: int) -> None:
    """`count` GETs of /healthz, each on a connection of its own, eight at a time."""
    gate = asyncio.Semaphore(8)

    async def one() -> None:
        async with gate, httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).status_code == 200

    await asyncio.gather(*(one() for _ in range(count)))


def settled(base: str, want: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The first scrape that counts `want` requests of /healthz (the other worker copies
    its numbers about once a second)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        samples = scrape(base)
        if value(samples, "kairos_requests_total", **HEALTHZ) == want:
            return samples
        assert time.monotonic() < deadline, value(samples, "kairos_requests_total", **HEALTHZ)
        time.sleep(0.2)


@pytest.fixture
def server(
    tmp_path: Path, own_redis: RedisServer
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    redis = own_redis
    port = free_port()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    # The server makes its metrics folder in TMPDIR: here, where the test can see it.
    env = {**process_env(tmp_path, redis.url, "test-write-key-0123456789"), "TMPDIR": str(scratch)}
    argv = [sys.executable, "-m", "app.cli", "serve", "--workers", "2", "--port", str(port)]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                # Both workers up: each counts itself in kairos_workers.
                if value(scrape(base), "kairos_workers") == 2:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield base, proc, scratch
    finally:
        stop_process(proc)


def test_one_scrape_counts_the_requests_of_every_worker(server):
    base, proc, scratch = server
    (folder,) = scratch.glob("kairos-metrics-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    asyncio.run(spread(base, REQUESTS))
    # Each worker copies its numbers within about a second, scraped or not.
    deadline = time.monotonic() + SETTLE_S
    while sum((by_pid := healthz_by_pid(folder)).values()) != REQUESTS:
        assert time.monotonic() < deadline, by_pid
        time.sleep(0.2)
    assert len(by_pid) == 2 and all(n > 0 for n in by_pid.values()), by_pid
    assert sum(by_pid.values()) == REQUESTS
    # Every scrape, whichever worker answers it, gives the same totals.
    for _ in range(6):
        samples = scrape(base)
        assert value(samples, "kairos_requests_total", **HEALTHZ) == REQUESTS
        assert value(samples, "kairos_request_seconds_count", route="/healthz") == REQUESTS
        assert (
            value(samples, "kairos_request_seconds_bucket", route="/healthz", le="+Inf") == REQUESTS
        )
        assert value(samples, "kairos_workers") == 2
        assert value(samples, "kairos_store_up") == 1

    # A worker killed: uvicorn starts another; the dead one's requests still count, and
    # it no longer counts as a worker.
    dead = max(by_pid)
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + SETTLE_S
    while (
        not (folder / f"counter_{dead}.db").exists()
        or (folder / f"gauge_livesum_{dead}.db").exists()
    ):
        assert time.monotonic() < deadline, sorted(p.name for p in folder.iterdir())
        time.sleep(0.2)
    while value(scrape(base), "kairos_workers") != 2:
        assert time.monotonic() < deadline, "no worker took the dead one's place"
        time.sleep(0.2)
    asyncio.run(spread(base, 10))
    samples = settled(base, REQUESTS + 10)
    assert value(samples, "kairos_workers") == 2
    assert len(healthz_by_pid(folder)) == 3

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert not folder.exists()


def test_workers_of_one_folder_sum_and_one_process_keeps_its_own(tmp_path: Path):
    a, b = Metrics(tmp_path), Metrics(tmp_path)
    b._shared.pid = a._shared.pid + 1  # type: ignore[union-attr]  # two workers, in one test
    a.requests.labels("/v1/feeds/{feed}", "GET", "200").inc(3)
    b.requests.labels("/v1/feeds/{feed}", "GET", "200").inc(4)
    a.latency.labels("/v1/feeds/{feed}").observe(0.002)
    b.latency.labels("/v1/feeds/{feed}").observe(0.3)
    b.store_up.set(1)
    b.render()  # b's numbers copied at its own scrape
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(a.render().decode())
        for s in family.samples
    }
    feed = {"route": "/v1/feeds/{feed}"}
    assert value(samples, "kairos_requests_total", method="GET", status="200", **feed) == 7
    assert value(samples, "kairos_request_seconds_bucket", le="0.0025", **feed) == 1
    assert value(samples, "kairos_request_seconds_bucket", le="0.5", **feed) == 2
    assert value(samples, "kairos_request_seconds_sum", **feed) == pytest.approx(0.302)
    assert value(samples, "kairos_workers") == 2
    assert value(samples, "kairos_store_up") == 1  # livemax: a's 0 and b's 1

    # Without a folder: this process's numbers alone, nothing written.
    alone = Metrics()
    alone.requests.labels("/v1/feeds/{feed}", "GET", "200").inc()
    text = alone.render().decode()
    assert 'kairos_requests_total{method="GET",route="/v1/feeds/{feed}",status="200"} 1.0' in text
    kinds = ("counter", "histogram", "gauge_livemax", "gauge_livesum")
    pids = (a._shared.pid, b._shared.pid)  # type: ignore[union-attr]
    assert {p.name for p in tmp_path.iterdir()} == {f"{k}_{p}.db" for k in kinds for p in pids}
