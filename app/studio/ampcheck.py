"""The official AMP validator as a service: one long-lived node process per server,
started on first use, fed one document a line (JSON) on its stdin and answering one
verdict a line, restarted when it dies. Loading the validator takes node a second or
two; a verdict then costs milliseconds. Documents are checked in one worker thread of
its own, so the event loop never waits on node, and one at a time, in order."""

from __future__ import annotations

import asyncio
import logging
import os
import select
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.render import ampvalidate

log = logging.getLogger("kairos.studio")

# Reads JSON lines {"id", "html"}, answers {"id", "status", "errors"}; "ready" first.
RUNNER = """
const v = require(process.argv[1]); const readline = require('readline');
v.getInstance(process.argv[2]).then(inst => {
  process.stdout.write('{"ready":true}\\n');
  const lines = readline.createInterface({input: process.stdin, crlfDelay: Infinity});
  lines.on('line', line => {
    let out;
    try {
      const doc = JSON.parse(line);
      const r = inst.validateString(doc.html, 'AMP4EMAIL');
      out = {id: doc.id, status: r.status, errors: r.errors
        .filter(e => e.severity === 'ERROR')
        .map(e => ({line: e.line, col: e.col, code: e.code, message: e.message || ''}))};
    } catch (e) { out = {id: null, status: 'unavailable', errors: [], reason: String(e)}; }
    process.stdout.write(JSON.stringify(out) + '\\n');
  });
  lines.on('close', () => process.exit(0));
}, e => { console.error(String(e)); process.exit(2); });
"""
START_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 10.0


class ValidatorGone(Exception):
    """The node process died, timed out, or answered what is not a verdict."""


@dataclass(frozen=True)
class AmpVerdict:
    """`PASS`, `FAIL` (with `errors`: line, col, code, message), `unavailable` (no
    validator here, or it failed: `reason`) or `skipped` (not asked, or no AMP part)."""

    status: str
    errors: tuple[dict[str, Any], ...] = ()
    reason: str = ""
    ms: float = 0.0

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "errors": list(self.errors)}
        if self.reason:
            body["reason"] = self.reason
        return body


SKIPPED = AmpVerdict("skipped")


@dataclass
class _Process:
    popen: subprocess.Popen[bytes]
    buffer: bytearray = field(default_factory=bytearray)


class AmpCheck:
    """The validator installed in `folder` (`bash .ci/amp-validator`), kept running."""

    def __init__(
        self,
        folder: Path,
        *,
        timeout_s: float = CHECK_TIMEOUT_S,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.folder = folder
        self.timeout_s, self.start_timeout_s = timeout_s, start_timeout_s
        self.starts = 0  # how many node processes were started (a restart counts)
        self._process: _Process | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._next_id = 0

    @property
    def running(self) -> bool:
        """Whether a node process is up."""
        return self._process is not None and self._process.popen.poll() is None

    def available(self) -> bool:
        """Whether node and the validator are installed."""
        return ampvalidate.available(self.folder)

    async def check(self, html: str) -> AmpVerdict:
        """The validator's verdict on the AMP document `html`, from its worker thread."""
        if not self.available():
            return AmpVerdict("unavailable", reason="the AMP validator is not installed")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="kairos-amp")
        return await asyncio.wrap_future(self._pool.submit(self.check_now, html))

    def check_now(self, html: str) -> AmpVerdict:
        """As `check`, in the calling thread (only ever one at a time)."""
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                found = self._ask(html)
                break
            except ValidatorGone as exc:
                self._stop()
                if attempt == 2:
                    log.warning("the AMP validator failed: %s", exc)
                    return AmpVerdict("unavailable", reason=f"the AMP validator failed: {exc}")
        ms = (time.perf_counter() - started) * 1000
        status = found.get("status")
        if status not in ("PASS", "FAIL"):
            return AmpVerdict("unavailable", reason=str(found.get("reason", "")), ms=ms)
        return AmpVerdict(status, tuple(found.get("errors") or ()), ms=ms)

    def close(self) -> None:
        """Stop the node process and the worker thread (both made again when needed)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self._stop()

    def _ask(self, html: str) -> dict[str, Any]:
        process = self._running()
        self._next_id += 1
        ask = self._next_id
        try:
            assert process.popen.stdin is not None
            process.popen.stdin.write(orjson.dumps({"id": ask, "html": html}) + b"\n")
            process.popen.stdin.flush()
        except OSError as exc:
            raise ValidatorGone(f"it exited ({exc})") from None
        deadline = time.monotonic() + self.timeout_s
        while True:
            answer = self._line(process, deadline)
            if answer.get("id") in (ask, None):
                return answer

    def _running(self) -> _Process:
        if self._process is not None and self.running:
            return self._process
        self._stop()
        package = self.folder / "node_modules" / "amphtml-validator"
        # The runner requires the validator by its path: node needs no NODE_PATH.
        popen = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            ["node", "-e", RUNNER, str(package), str(self.folder / "validator_wasm.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.starts += 1
        process = _Process(popen)
        self._process = process
        if not self._line(process, time.monotonic() + self.start_timeout_s).get("ready"):
            raise ValidatorGone("it did not start")
        return process

    def _line(self, process: _Process, deadline: float) -> dict[str, Any]:
        """The next line node writes, as JSON, waiting until `deadline` at most."""
        out = process.popen.stdout
        assert out is not None
        while b"\n" not in process.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ValidatorGone("no answer in time")
            ready, _, _ = select.select([out], [], [], left)
            if ready:
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    raise ValidatorGone("it exited")
                process.buffer += chunk
        end = process.buffer.index(b"\n")
        line = bytes(process.buffer[:end])
        del process.buffer[: end + 1]
        try:
            found = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValidatorGone("it answered what is not JSON") from None
        if not isinstance(found, dict):
            raise ValidatorGone("it answered what is not a verdict")
        return found

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        popen = process.popen
        try:
            if popen.stdin is not None:
                popen.stdin.close()
            popen.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            popen.kill()
            popen.wait()
        finally:
            if popen.stdout is not None:
                popen.stdout.close()
