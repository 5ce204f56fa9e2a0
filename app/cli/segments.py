"""`kairos segments explain USER`: rule by rule, why a stored reader is or is not in each
segment, with the values and thresholds."""

from __future__ import annotations

import argparse
import asyncio
import sys

from app.cli.common import settings as cli_settings
from app.cli.events import NO_REDIS
from app.profiles.schema import check_user_id
from app.segments.service import Segmenter, load_rules_file
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
