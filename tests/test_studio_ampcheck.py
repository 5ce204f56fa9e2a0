"""The AMP validator service (app/studio/ampcheck.py) against the real validator: one
node process answers document after document in milliseconds, is started again when
it dies, gives up on a document past its timeout, never holds the event loop, and is
stopped with the app."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from support import AUTH, serve

from app.app import create_app
from app.studio.ampcheck import AmpCheck

VALID = (
    '<!doctype html><html ⚡4email data-css-strict><head><meta charset="utf-8">'
    '<script async src="https://cdn.ampproject.org/v0.js"></script>'
    "<style amp4email-boilerplate>body{visibility:hidden}</style></head>"
    "<body><p>Hello</p></body></html>"
)
INVALID = VALID.replace("<p>Hello</p>", '<p>Hello</p>\n<img src="https://example.com/a.png">')


@pytest.fixture
def checker(amp_validator_dir: Path):
    found = AmpCheck(amp_validator_dir)
    if not found.available():
        pytest.fail("run `bash .ci/amp-validator`")
    yield found
    found.close()


async def test_one_process_answers_every_document(checker):
    assert not checker.running
    first = await checker.check(VALID)
    assert first.status == "PASS" and first.errors == ()
    verdicts = [await checker.check(doc) for doc in (INVALID, VALID, INVALID) * 3]
    assert [v.status for v in verdicts] == ["FAIL", "PASS", "FAIL"] * 3
    assert checker.starts == 1 and checker.running
    # node and the validator load once; each verdict then takes milliseconds
    assert max(v.ms for v in verdicts) < 500
    error = verdicts[0].errors[0]
    assert set(error) == {"line", "col", "code", "message"}
    assert error["line"] == 2 and "img" in error["message"]


async def test_a_dead_validator_is_started_again(checker):
    assert (await checker.check(VALID)).status == "PASS"
    assert checker._process is not None
    os.kill(checker._process.popen.pid, signal.SIGKILL)
    checker._process.popen.wait()
    verdict = await checker.check(INVALID)
    assert verdict.status == "FAIL" and checker.starts == 2


async def test_a_document_past_the_timeout_is_unavailable(amp_validator_dir):
    slow = AmpCheck(amp_validator_dir, timeout_s=0.000001)
    try:
        verdict = await slow.check(VALID)
        assert verdict.status == "unavailable" and "in time" in verdict.reason
        assert verdict.body() == {"status": "unavailable", "errors": [], "reason": verdict.reason}
        slow.timeout_s = 10.0
        assert (await slow.check(VALID)).status == "PASS"  # started again
    finally:
        slow.close()


async def test_the_event_loop_runs_while_a_document_is_checked(checker):
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await checker.check(VALID)  # starts node: a second or more
    finally:
        ticker.cancel()
    assert ticks >= 20


async def test_closed_it_stops_node(checker):
    await checker.check(VALID)
    popen = checker._process.popen if checker._process else None
    checker.close()
    assert not checker.running and popen is not None and popen.poll() is not None


async def test_missing_validator_is_unavailable(tmp_path):
    verdict = await AmpCheck(tmp_path).check(VALID)
    assert verdict.status == "unavailable" and verdict.reason


async def test_the_app_stops_the_validator_at_shutdown(settings, amp_validator_dir):
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL="https://kairos.example.com",
            KAIROS_AMP_VALIDATOR_DIR=amp_validator_dir,
        )
    )
    checker = app.state.services.amp_check
    async with serve(app) as client:
        r = await client.post(
            "/v1/preview",
            json={"template": "welcome", "sample": "full", "validate_amp": True},
            headers=AUTH,
        )
        assert r.json()["diagnostics"]["amp"]["status"] == "PASS"
        assert checker.running
    assert not checker.running


async def test_a_validator_found_dead_mid_document_is_started_again(checker, monkeypatch):
    """Dead, though it looked alive when asked: the document is sent again to a new one."""
    assert (await checker.check(VALID)).status == "PASS"
    assert checker._process is not None
    popen = checker._process.popen
    os.kill(popen.pid, signal.SIGKILL)
    popen.wait()
    monkeypatch.setattr(popen, "poll", lambda: None)
    verdict = await checker.check(INVALID)
    assert verdict.status == "FAIL" and checker.starts == 2
