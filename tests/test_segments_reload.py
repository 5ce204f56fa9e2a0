"""The rules file is reloaded when it changes: a changed rule applies to what each reader
already did (nothing ingested again); a file that no longer loads is logged with its rule
and line, and the last good rules stay."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from test_events_api import Opener
from test_events_api import kairos as kairos  # the fixture, used by name

from app.segments.service import Segmenter, load_rules_file
from app.stores.bundle import embedded_stores

GOLD = """
[segments.gold]
priority = 20
rule = { profile = "tier", equals = "gold" }
"""
SILVER = """
[segments.silver]
priority = 10
rule = { profile = "tier", in = ["gold", "silver"] }
"""
BROKEN = """
[segments.silver]
priority = 10
rule = { profile = "tier", nearly = "gold" }
"""


def write(path: Path, text: str, *, tick: int) -> None:
    """Write `text`, its modification time moved on by `tick` seconds (a change seen
    whatever the file system's time resolution)."""
    path.write_text(text, encoding="utf-8")
    stamp = path.stat().st_mtime_ns + tick * 1_000_000_000
    os.utime(path, ns=(stamp, stamp))


async def test_a_changed_file_applies_at_once_and_a_broken_one_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "segments.toml"
    write(path, GOLD, tick=0)
    stores = embedded_stores()
    segmenter = Segmenter(load_rules_file(path), stores.events, path=path, check_every_s=0)
    reader = {"tier": "gold"}
    assert (await segmenter.of("u1", reader)).as_dict() == {"primary": "gold", "all": ["gold"]}

    write(path, GOLD + SILVER, tick=1)
    with caplog.at_level(logging.INFO, logger="kairos.segments"):
        found = (await segmenter.of("u1", reader)).as_dict()
    assert found == {"primary": "gold", "all": ["gold", "silver"]}
    assert "segment rules reloaded: 2 segments" in caplog.text

    caplog.clear()
    write(path, GOLD + BROKEN, tick=2)
    with caplog.at_level(logging.INFO, logger="kairos.segments"):
        found = (await segmenter.of("u1", reader)).as_dict()
    assert found == {"primary": "gold", "all": ["gold", "silver"]}  # the last good rules
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "segments.toml:" in record.getMessage() and "silver" in record.getMessage()

    path.unlink()  # gone: logged, the last good rules stay
    assert (await segmenter.of("u1", reader)).as_dict()["all"] == ["gold", "silver"]
    write(path, SILVER, tick=3)
    assert (await segmenter.of("u1", reader)).as_dict() == {"primary": "silver", "all": ["silver"]}


async def test_the_file_is_looked_at_no_more_than_its_interval(tmp_path: Path) -> None:
    path = tmp_path / "segments.toml"
    write(path, GOLD, tick=0)
    segmenter = Segmenter(
        load_rules_file(path), embedded_stores().events, path=path, check_every_s=3600
    )
    write(path, SILVER, tick=1)
    found = (await segmenter.of("u1", {"tier": "gold"})).as_dict()
    assert found["all"] == ["gold"]  # not looked at again within the hour


async def test_a_running_server_shows_the_new_rules(
    tmp_path: Path, kairos: Opener, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "segments.toml"
    write(path, GOLD, tick=0)
    async with kairos(KAIROS_SEGMENTS_FILE=str(path)) as k:
        await k.put_profile("ada-r", {"tier": "gold"})
        assert (await k.profile("ada-r") or {})["segments"] == {"primary": "gold", "all": ["gold"]}
        monkeypatch.setattr(k.app.state.services.segments, "_check_every_s", 0)
        write(path, SILVER, tick=1)
        assert (await k.profile("ada-r") or {})["segments"] == {
            "primary": "silver",
            "all": ["silver"],
        }
