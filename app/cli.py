"""The `kairos` command: serve, sign, import."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson

from app import images
from app.demo import load_demo
from app.errors import KairosError, StoreUnavailable
from app.feeds import FEEDS
from app.importer import BadImportLine, product_row, profile_row, read_jsonl
from app.links import Links, LinkSigner
from app.profiles.schema import check_user_id, inline_profile
from app.progress import Progress
from app.render.check import check_all
from app.render.mime import mime_message
from app.services import build_services
from app.settings import ConfigError, Secret, Settings
from app.stores.bundle import Stores, redis_stores
from app.targets import UnsafeTarget, check_target
from app.tokens import Tokens

BATCH = 1000
MAX_REPORTED_ERRORS = 20


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
    serve.set_defaults(run=_serve)

    sign = sub.add_parser("sign", help="print a signed open-time URL")
    sign_sub = sign.add_subparsers(required=True, metavar="KIND")
    feed = sign_sub.add_parser("feed", help="a feed URL for <amp-list>")
    feed.add_argument("name", choices=sorted(FEEDS))
    feed.add_argument("--user", required=True, help="the reader's opaque user id")
    feed.add_argument("--campaign")
    feed.add_argument("--ttl", type=int, metavar="SECONDS", help="expire after this long")
    feed.set_defaults(run=_sign_feed)
    pixel = sign_sub.add_parser("pixel", help="an open-pixel URL")
    pixel.add_argument("--user", required=True)
    pixel.add_argument("--campaign")
    pixel.set_defaults(run=_sign_pixel)
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
    click.set_defaults(run=_sign_click)
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
    image.set_defaults(run=_sign_image)

    render = sub.add_parser("render", help="render a template for one reader")
    render.add_argument("template")
    render.add_argument("--user", required=True)
    render.add_argument("--profile", type=Path, help="a JSON profile instead of the store's")
    render.add_argument("--campaign")
    render.add_argument("--format", choices=["html", "amp", "text", "mime", "json"], default="html")
    render.set_defaults(run=_render)

    check = sub.add_parser("check", help="compile and validate every block and template")
    check.add_argument("--no-amp", action="store_true", help="skip the AMP validator")
    check.set_defaults(run=_check)

    imp = sub.add_parser("import", help="load JSONL files into the store")
    imp.add_argument("kind", choices=["profiles", "catalog"])
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--server",
        metavar="URL",
        help="import through a running server's API (needed for the embedded store); "
        "the API key is read from KAIROS_API_KEY",
    )
    imp.set_defaults(run=_import)
    return parser


def _settings() -> Settings:
    """The settings, signing with the development key when no KAIROS_SECRET_KEYS is set."""
    return Settings.from_env().with_development_key()


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Fail fast, before any worker starts; and make the development key file now, so
    # that the workers read it rather than race to create it.
    settings = _settings()
    host = settings.host if args.host is None else args.host
    port = settings.port if args.port is None else args.port
    workers = settings.workers if args.workers is None else args.workers
    if workers > 1 and settings.redis_url is None:
        raise ConfigError(
            "the embedded store lives inside one process: set REDIS_URL to run "
            f"{workers} workers, or use --workers 1"
        )
    uvicorn.run(
        "app.app:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        # Our own access log leaves out query strings, where tokens travel.
        access_log=False,
        proxy_headers=True,
        log_level=settings.log_level.lower(),
    )
    return 0


def _links(settings: Settings, args: argparse.Namespace) -> Links:
    """The signed URLs of `args.user` (and `args.campaign`) under the public URL."""
    signer = LinkSigner(Tokens(settings.secret_keys), settings.public_url, images.ImageChecks())
    return Links(signer, settings.public_url, args.user, args.campaign, "")


def _sign_feed(args: argparse.Namespace) -> int:
    settings = _settings()
    check_user_id(args.user)
    if args.ttl is not None and args.ttl <= 0:
        raise ConfigError("--ttl must be a positive number of seconds")
    token = Tokens(settings.secret_keys).sign(
        "feed", args.user, args.name, campaign=args.campaign, ttl_s=args.ttl
    )
    print(f"{settings.public_url}/v1/feeds/{args.name}?{urlencode({'t': token})}")
    return 0


def _sign_pixel(args: argparse.Namespace) -> int:
    settings = _settings()
    check_user_id(args.user)
    links = _links(settings, args)
    print(links.pixel())
    return 0


def _sign_click(args: argparse.Namespace) -> int:
    settings = _settings()
    check_user_id(args.user)
    try:
        check_target(args.url)
    except UnsafeTarget as exc:
        print(f"kairos: {exc}", file=sys.stderr)
        return 2
    links = _links(settings, args)
    if args.slot is None:
        print(links.click(args.url))
        return 0
    try:
        print(links.product_click(args.slot, args.url))
    except ValueError as exc:
        print(f"kairos: --slot: {exc}", file=sys.stderr)
        return 2
    return 0


def _sign_image(args: argparse.Namespace) -> int:
    settings = _settings()
    check_user_id(args.user)
    params: dict[str, str] = {}
    for pair in args.param:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"kairos: --param must be KEY=VALUE, not {pair!r}", file=sys.stderr)
            return 2
        params[key.strip()] = value
    links = _links(settings, args)
    try:
        print(links.image(args.name, **params))
    except images.ParamError as exc:
        print(f"kairos: {args.name}: {exc}", file=sys.stderr)
        return 2
    return 0


def _render(args: argparse.Namespace) -> int:
    check_user_id(args.user)
    profile = None
    if args.profile is not None:
        try:
            profile = inline_profile(orjson.loads(args.profile.read_bytes()))
        except (OSError, orjson.JSONDecodeError) as exc:
            print(f"kairos: cannot read {args.profile}: {exc}", file=sys.stderr)
            return 2
    return asyncio.run(_render_async(args, profile))


async def _render_async(args: argparse.Namespace, profile: dict[str, Any] | None) -> int:
    services = build_services(_settings())
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


def _check(args: argparse.Namespace) -> int:
    settings = _settings()
    problems = check_all(settings, amp=not args.no_amp)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("kairos check: " + ("ok" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0


def _import(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"kairos: no such file: {path}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    if args.server:
        return asyncio.run(_import_http(args.kind, path, args.server, settings.client_api_key))
    if settings.redis_url is None:
        print(
            "kairos: the embedded store lives inside the server process: set REDIS_URL, "
            "or pass --server URL to import through a running server",
            file=sys.stderr,
        )
        return 2
    stores = redis_stores(settings.redis_url.reveal(), timeout_s=5.0)
    return asyncio.run(_import_redis(args.kind, path, stores))


def _rows(kind: str, path: Path, errors: list[str]) -> Iterable[Any]:
    for number, row in read_jsonl(path, errors):
        try:
            yield (
                profile_row(path, number, row)
                if kind == "profiles"
                else product_row(path, number, row)
            )
        except BadImportLine as exc:
            errors.append(str(exc))


async def _import_redis(kind: str, path: Path, stores: Stores) -> int:
    errors: list[str] = []
    progress = Progress(_count_lines(path), f"import {kind}")
    imported = 0
    try:
        batch: list[Any] = []
        for row in _rows(kind, path, errors):
            batch.append(row)
            if len(batch) >= BATCH:
                imported += await _write(stores, kind, batch)
                progress.advance(len(batch))
                batch = []
        if batch:
            imported += await _write(stores, kind, batch)
            progress.advance(len(batch))
        if kind == "profiles" and imported:
            await stores.bus.publish_change("*")  # running servers drop their cached copies
    finally:
        progress.close()
        await stores.close()
    return _report(imported, errors)


async def _write(stores: Stores, kind: str, batch: list[Any]) -> int:
    if kind == "profiles":
        return await stores.profiles.put_many(batch)
    return await stores.catalog.put_products(batch)


async def _import_http(kind: str, path: Path, server: str, api_key: Secret | None) -> int:
    if kind != "profiles":
        print("kairos: only profiles can be imported through the API", file=sys.stderr)
        return 2
    if api_key is None:
        print("kairos: set KAIROS_API_KEY to import through the API", file=sys.stderr)
        return 2
    errors: list[str] = []
    progress = Progress(_count_lines(path), "import profiles")
    imported = 0
    headers = {"Authorization": f"Bearer {api_key.reveal()}"}
    limit = asyncio.Semaphore(32)

    async def put(client: httpx.AsyncClient, user_id: str, profile: dict[str, Any]) -> None:
        nonlocal imported
        try:
            async with limit:
                response = await client.put(f"/v1/profiles/{user_id}", json=profile)
        except httpx.HTTPError as exc:
            errors.append(f"{user_id}: {type(exc).__name__}: {exc}")
        else:
            if response.status_code in (200, 201):
                imported += 1
            else:
                errors.append(f"{user_id}: HTTP {response.status_code} {response.text[:200]}")
        progress.advance()

    async with httpx.AsyncClient(base_url=server.rstrip("/"), headers=headers) as client:
        pending: set[asyncio.Task[None]] = set()
        for user_id, profile in _rows(kind, path, errors):
            pending.add(asyncio.create_task(put(client, user_id, profile)))
            if len(pending) >= 256:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if pending:
            await asyncio.wait(pending)
    progress.close()
    return _report(imported, errors)


def _report(imported: int, errors: list[str]) -> int:
    for message in errors[:MAX_REPORTED_ERRORS]:
        print(message, file=sys.stderr)
    if len(errors) > MAX_REPORTED_ERRORS:
        print(f"... and {len(errors) - MAX_REPORTED_ERRORS} more errors", file=sys.stderr)
    print(f"imported {imported}, rejected {len(errors)}")
    return 1 if errors else 0


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


if __name__ == "__main__":
    sys.exit(main())
