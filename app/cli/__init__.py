"""The `kairos` command: serve, sign, render, check, import."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from app import images
from app.cli import importing, rendering, serving, signing
from app.errors import KairosError, StoreUnavailable
from app.feeds import FEEDS
from app.settings import ConfigError


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

    imp = sub.add_parser("import", help="load JSONL files into the store")
    imp.add_argument("kind", choices=["profiles", "catalog"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--server",
        metavar="URL",
        help="import through a running server's API (needed for the embedded store); "
        "the API key is read from KAIROS_API_KEY",
    )
    imp.set_defaults(run=importing.import_)
    return parser
