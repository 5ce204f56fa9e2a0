"""`kairos import`: profiles and the catalog from JSONL, into Redis or through a
running server's API."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from app.cli.common import retry_after
from app.importer import BadImportLine, product_row, profile_row, read_jsonl
from app.progress import Progress
from app.settings import Secret, Settings
from app.stores.bundle import Stores, redis_stores

BATCH = 1000
MAX_REPORTED_ERRORS = 20
RATE_LIMITED_TRIES = 20  # a 429 answered with Retry-After, then tried again


def import_(args: argparse.Namespace) -> int:
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
                for _ in range(RATE_LIMITED_TRIES):
                    response = await client.put(f"/v1/profiles/{user_id}", json=profile)
                    if response.status_code != 429:
                        break
                    # The key is over its rate limit (KAIROS_RATE_API): wait as told.
                    await asyncio.sleep(retry_after(response, 1.0))
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
