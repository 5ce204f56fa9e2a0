"""`kairos render` (one reader) and `kairos check` (every block and template)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from app.cli.common import settings as load_settings
from app.demo import load_demo
from app.profiles.schema import check_user_id, inline_profile
from app.render.check import check_all
from app.render.mime import mime_message
from app.services import build_services


def render(args: argparse.Namespace) -> int:
    check_user_id(args.user)
    profile = None
    if args.profile is not None:
        try:
            profile = inline_profile(orjson.loads(args.profile.read_bytes()), render=True)
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"kairos: cannot read {args.profile}: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(_render_async(args, profile))


async def _render_async(args: argparse.Namespace, profile: dict[str, Any] | None) -> int:
    services = build_services(load_settings())
    try:
        if services.settings.demo_data:
            await load_demo(services.stores)
        formats = ("html", "amp", "text") if args.format in ("mime", "json") else (args.format,)
        result = await services.renderer.render(
            args.template, args.user, profile=profile, campaign=args.campaign, formats=formats
        )
    finally:
        await services.stores.close()
    if args.format == "mime":
        sys.stdout.buffer.write(mime_message(result))
    elif args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(result.body(), option=orjson.OPT_INDENT_2) + b"\n")
    else:
        output = getattr(result, args.format)
        if output is None:
            print(f"kairos: no {args.format} part: {'; '.join(result.warnings)}", file=sys.stderr)
            return 1
        sys.stdout.write(output)
    for fallback in result.fallbacks:
        print(f"fallback: {fallback['block']}: {fallback['reason']}", file=sys.stderr)
    return 0


def check(args: argparse.Namespace) -> int:
    settings = load_settings()
    problems = check_all(settings, amp=not args.no_amp)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("kairos check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0
