"""The `kairos` command: serve, sign, render, check, import, events, erase, segments,
worker, stats."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app import images
from app.cli import events, importing, rendering, segments, serving, signing, stats
from app.errors import KairosError, StoreUnavailable
from app.feeds import FEEDS
from app.settings import ConfigError

IMPORT_HELP = """events: one event a line, native (with event_id) or a Segment message (with
messageId and no event_id: track, identify, page, screen or alias). Prints the counts of
accepted, duplicates, dropped (consent) and rejected lines, then each rejected line as
FILE:LINE: code: message. Exit 0 when no line was rejected (all duplicates included), 1
when some were (the others are applied), 2 on a usage or store error. Importing a file
again is safe: the events already applied count as duplicates."""
TAIL_HELP = """print each event as any server sharing REDIS_URL applies it, until Ctrl-C (exit 130).
Reader ids are printed on purpose: this is an operator's debugging tool."""
ERASE_HELP = """Erase USER and every id merged with it from the Redis store (REDIS_URL), as
DELETE /v1/profiles/{id} does: profile, history, dedupe ids, links, picks, and the copies
cached by running servers. Later events for USER are refused unless --no-suppress. Exit 0
when done (also when no profile was stored), 1 when --verify finds a key, 2 on a usage or
store error."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
        return result
    except ConfigError as exc:
        print(f"kairos: configuration error: {exc}", file=sys.stderr)
        return 2
    except KairosError as exc:
        print(f"kairos: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"kairos: the store is unavailable: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kairos", description=__doc__)
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="default: the HOST setting")
    serve.add_argument("--port", type=int, help="default: the PORT setting")
    serve.add_argument("--workers", type=int, help="default: the WEB_CONCURRENCY setting")
    serve.set_defaults(run=serving.serve)

    sign = sub.add_parser("sign", help="print a signed open-time URL")
    sign_sub = sign.add_subparsers(required=True, metavar="KIND")
    feed = sign_sub.add_parser("feed", help="a feed URL for <amp-list>")
    feed.add_argument("name", choices=sorted(FEEDS))
    feed.add_argument("--user", required=True, help="the reader's opaque user id")
    feed.add_argument("--campaign")
    feed.add_argument("--ttl", type=int, metavar="SECONDS", help="expire after this long")
    feed.set_defaults(run=signing.sign_feed)
    pixel = sign_sub.add_parser("pixel", help="an open-pixel URL")
    pixel.add_argument("--user", required=True)
    pixel.add_argument("--campaign")
    pixel.set_defaults(run=signing.sign_pixel)
    click = sign_sub.add_parser("click", help="a click URL that redirects to --url")
    click.add_argument("--user", required=True)
    click.add_argument("--campaign")
    click.add_argument("--url", required=True, help="absolute http(s) target")
    click.add_argument(
        "--slot",
        type=int,
        metavar="K",
        help="the link of recommendation slot K: it goes to the product the reader saw in "
        "that slot's live image, else to --url",
    )
    click.set_defaults(run=signing.sign_click)
    image = sign_sub.add_parser("image", help="a live image URL for <img src>")
    image.add_argument("name", choices=sorted(images.KINDS))
    image.add_argument("--user", required=True)
    image.add_argument("--campaign")
    image.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an image parameter, e.g. deadline=2026-12-24T23:59:59Z (repeatable)",
    )
    image.set_defaults(run=signing.sign_image)

    render = sub.add_parser("render", help="render a template for one reader")
    render.add_argument("template")
    render.add_argument("--user", required=True)
    render.add_argument("--profile", type=Path, help="a JSON profile instead of the store's")
    render.add_argument("--campaign")
    render.add_argument("--format", choices=["html", "amp", "text", "mime", "json"], default="html")
    render.set_defaults(run=rendering.render)

    check = sub.add_parser("check", help="compile and validate every block and template")
    check.add_argument("--no-amp", action="store_true", help="skip the AMP validator")
    check.set_defaults(run=rendering.check)

    imp = sub.add_parser(
        "import",
        help="load JSONL files into the store",
        epilog=IMPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("kind", choices=["profiles", "catalog", "events"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--server",
        metavar="URL",
        help="import through a running server's API (needed for the embedded store); "
        "the API key is read from KAIROS_API_KEY",
    )
    imp.set_defaults(run=_import)

    follow = sub.add_parser("events", help="follow the events the servers apply")
    follow_sub = follow.add_subparsers(required=True, metavar="ACTION")
    tail = follow_sub.add_parser("tail", help=TAIL_HELP, description=TAIL_HELP)
    tail.add_argument("--json", action="store_true", help="print each event's stored JSON")
    tail.set_defaults(run=events.tail)

    erase = sub.add_parser(
        "erase",
        help="erase a reader from the store, prove it, or lift a suppression",
        description=ERASE_HELP,
    )
    erase.add_argument("user", metavar="USER")
    mode = erase.add_mutually_exclusive_group()
    mode.add_argument(
        "--verify",
        action="store_true",
        help="scan the store and print every key still naming USER or an id merged with it "
        "(exit 1 if any)",
    )
    mode.add_argument("--lift", action="store_true", help="lift USER's suppression")
    mode.add_argument(
        "--no-suppress",
        action="store_true",
        help="erase without suppressing: a later event for USER creates a new profile",
    )
    erase.set_defaults(run=events.erase)

    segments_cmd = sub.add_parser("segments", help="the readers' segments")
    segments_sub = segments_cmd.add_subparsers(required=True, metavar="ACTION")
    why = segments_sub.add_parser(
        "explain",
        help="rule by rule, why USER is or is not in each segment (needs REDIS_URL)",
    )
    why.add_argument("user", metavar="USER")
    why.set_defaults(run=segments.explain)

    worker = sub.add_parser(
        "worker",
        help="sweep the segments due on time alone (a cart idle 15 minutes) and record "
        "their entries and exits, until interrupted (needs REDIS_URL)",
    )
    worker.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how often to sweep (default: KAIROS_SEGMENTS_SWEEP_S, or 10 when it is 0)",
    )
    worker.set_defaults(run=segments.worker)

    figures = sub.add_parser(
        "stats",
        help="a campaign's A/B figures per variant, from a running server (KAIROS_API_KEY)",
    )
    figures.add_argument("campaign", metavar="CAMPAIGN")
    figures.add_argument("--server", metavar="URL", help="default: KAIROS_PUBLIC_URL")
    figures.add_argument("--json", action="store_true", help="print the server's JSON")
    figures.add_argument(
        "--min-sample", type=int, metavar="N", help="sends a side needs to be tested (100)"
    )
    figures.set_defaults(run=stats.stats)
    return parser


def _import(args: argparse.Namespace) -> int:
    run = events.import_events if args.kind == "events" else importing.import_
    return run(args)
