"""`kairos segments explain USER`: rule by rule, why a stored reader is or is not in each
segment, with the values and thresholds. `kairos worker`: the segment sweep on its own."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from app.cli.common import settings as cli_settings
from app.cli.events import NO_REDIS
from app.events.privacy import ReaderHashes
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles
from app.profiles.schema import check_user_id
from app.segments.service import Segmenter, load_rules_file
from app.segments.sweep import Sweep
from app.settings import Settings
from app.stores.bundle import build_stores


def explain(args: argparse.Namespace) -> int:
    user = check_user_id(args.user)
    settings = cli_settings()
    if settings.redis_url is None:
        print(
            f"{NO_REDIS} (or read GET /v1/profiles/{{id}}: it shows the segments)", file=sys.stderr
        )
        return 2
    return asyncio.run(_explain(user, settings))


async def _explain(user: str, settings: Settings) -> int:
    rules = load_rules_file(settings.segments_file)
    stores = build_stores(settings)
    try:
        profile = await stores.profiles.get(user)
        found = await Segmenter(rules, stores.events).explain(user, profile)
    finally:
        await stores.close()
    if profile is None:
        print(f"({user} has no stored profile: only its events count)")
    inside = [e.segment for e in found if e.matched]
    print(f"{user}: {', '.join(str(s) for s in inside) if inside else 'in no segment'}")
    for explanation in found:
        for line in explanation.lines():
            print(line)
    return 0


DEFAULT_EVERY_S = 10.0


def worker(args: argparse.Namespace) -> int:
    settings = cli_settings()
    if settings.redis_url is None:
        print(f"{NO_REDIS} (without it, the server sweeps its own store)", file=sys.stderr)
        return 2
    every = args.every if args.every is not None else settings.segments_sweep_s
    if every is not None and every <= 0:
        every = DEFAULT_EVERY_S
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(_work(settings, float(every)))


async def _work(settings: Settings, every_s: float) -> int:
    stores = build_stores(settings)
    metrics = Metrics()
    profiles = CachedProfiles(
        stores.profiles, stores.bus, metrics, erase=stores.erase, ttl_s=0, size=1, retry_s=1.0
    )
    path = settings.segments_file
    segments = Segmenter(load_rules_file(path), stores.events, path=path)
    hashes = ReaderHashes(settings.secret_keys)
    sweep = Sweep(
        segments, stores.events, stores.segments, profiles, hashes, metrics, every_s=every_s
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    print(f"kairos worker: sweeping segments every {every_s:g} s", file=sys.stderr)
    try:
        await sweep.run(stop)
    finally:
        await stores.close()
    return 0
