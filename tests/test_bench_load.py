"""bench/load.py --short, run for real: `kairos serve --workers 2` on its own Redis, under
a mixed load, healthy, with Redis killed, black-holed and a hanging upstream. Its own
targets must hold: no 5xx, no request unanswered, no accepted event lost."""

from __future__ import annotations

import json
import subprocess
import sys

from support import PROJECT_ROOT

PHASES = ["baseline", "redis-kill", "blackhole", "upstream"]
ROUTES = {"feed", "image", "pixel", "click", "events", "render"}


def test_the_short_load_loses_nothing_and_answers_no_5xx():
    done = subprocess.run(
        [sys.executable, "bench/load.py", "--short", "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    text = done.stderr
    assert [phase["phase"] for phase in report["phases"]] == PHASES
    for phase in report["phases"]:
        name = phase["phase"]
        assert set(phase["routes"]) == ROUTES, name
        # Every events request was stored in the end, some after retries.
        assert phase["events_requests_sent"] > 0, name
        assert phase["events_requests_accepted"] == phase["events_requests_sent"], name
        assert phase["events_requests_unanswered"] == 0, name
        assert phase["server_errors"] == 0, (name, phase["routes"])
        assert phase["failed"] == 0, name
        assert phase["lost_events"] == 0, name
    # What it printed says the same, target by target.
    for label in ("5xx", "failed", "lost events"):
        lines = [line for line in text.splitlines() if line.strip().startswith(f"target {label} ")]
        assert len(lines) == len(PHASES), text
        assert all(line.split()[-1] == "PASS" for line in lines), lines
    # The faults happened: Redis's death and black hole made ingest refuse for a while
    # (retried until accepted), and the hanging model was waited for within the budget.
    faults = {phase["phase"]: phase for phase in report["phases"]}
    assert faults["redis-kill"]["events_retried"] > 0
    assert faults["blackhole"]["events_retried"] > 0
    assert faults["baseline"]["events_retried"] == 0
    assert faults["upstream"]["upstream_calls"].get("timeout", 0) > 0
    assert faults["baseline"]["upstream_calls"].get("ok", 0) > 0
