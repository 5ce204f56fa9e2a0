"""`kairos import events`, `kairos events tail`, `kairos erase`: events from JSONL into
Redis or through a running server, the events every server applies, and erasure."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from app.cli.common import retry_after
from app.cli.common import settings as cli_settings
from app.errors import KairosError, StoreUnavailable
from app.events.clock import format_ms, parse_ms
from app.events.ingest import Ingest
from app.events.model import EventRejected
from app.events.privacy import Erasure, ReaderHashes
from app.events.segment import SegmentError, translate
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles
from app.profiles.schema import check_user_id
from app.progress import Progress
from app.segments.service import Segmenter, load_rules_file
from app.settings import Secret, Settings
from app.stores.bundle import Stores, build_stores, redis_stores

BATCH = 500
BATCH_BYTES = 900_000  # under the smallest body limit a server may declare (1 MB)
MAX_SHOWN = 20
RETRIES = 8
NO_REDIS = "kairos: the embedded store lives inside the server process: set REDIS_URL"
Send = Callable[[list[Any]], Awaitable[dict[str, Any]]]


class Tally:
    """What became of a file's lines; the first rejected ones kept to be shown."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts = {"accepted": 0, "duplicates": 0, "dropped": 0, "rejected": 0}
        self.shown: list[tuple[int, str]] = []
        self.line = 0  # the last line of the batches done

    def reject(self, number: int, code: str, message: str) -> None:
        self.counts["rejected"] += 1
        self.shown.append((number, f"{self.path}:{number}: {code}: {message}"))

    def add(self, numbers: list[int], body: dict[str, Any], last: int) -> None:
        for key in ("accepted", "duplicates", "dropped"):
            self.counts[key] += int(body.get(key, 0))
        for entry in body.get("rejected", []):
            self.reject(numbers[entry["index"]], entry["code"], entry["message"])
        # A batch's rejected entries interleave with the lines rejected as it was read.
        self.shown = sorted(self.shown)[:MAX_SHOWN]
        self.line = last

    def report(self) -> int:
        print(", ".join(f"{key} {n}" for key, n in self.counts.items()))
        for _, text in sorted(self.shown)[:MAX_SHOWN]:
            print(text)
        if self.counts["rejected"] > MAX_SHOWN:
            print(f"… and {self.counts['rejected'] - MAX_SHOWN} more")
        return 1 if self.counts["rejected"] else 0


def import_events(args: argparse.Namespace) -> int:
    path: Path = args.file
    if not path.is_file():
        print(f"kairos: no such file: {path}", file=sys.stderr)
        return 2
    settings = cli_settings()
    if args.server:
        if settings.client_api_key is None:
            print("kairos: set KAIROS_API_KEY to import through the API", file=sys.stderr)
            return 2
        return asyncio.run(_via_server(path, args.server, settings.client_api_key))
    if settings.redis_url is None:
        print(f"{NO_REDIS}, or pass --server URL to import through a server", file=sys.stderr)
        return 2
    return asyncio.run(_into_redis(path, settings))


def _services(settings: Settings) -> tuple[Stores, Ingest, Erasure]:
    """The stores, Ingest and Erasure as the server builds them (app/services.py), with a
    longer timeout (no reader waits on this) and no cache: writes are still announced,
    so running servers drop their cached copies."""
    timeout_ms = max(settings.redis_timeout_ms, 5000)
    stores = build_stores(dataclasses.replace(settings, redis_timeout_ms=timeout_ms))
    metrics, hashes = Metrics(), ReaderHashes(settings.secret_keys)
    profiles = CachedProfiles(
        stores.profiles,
        stores.bus,
        metrics,
        erase=stores.erase,
        ttl_s=0,
        size=1,
        retry_s=1.0,
        written_size=settings.events_warm_readers,
    )
    limit = settings.event_max_bytes
    segments = Segmenter(load_rules_file(settings.segments_file), stores.events)
    ingest = Ingest(
        stores.events,
        profiles,
        hashes,
        metrics,
        max_event_bytes=limit,
        segments=segments,
        segment_store=stores.segments,
    )
    return stores, ingest, Erasure(stores, profiles, hashes, metrics)


async def _into_redis(path: Path, settings: Settings) -> int:
    stores, ingest, _ = _services(settings)

    async def send(docs: list[Any]) -> dict[str, Any]:
        # Straight into the store: an operator holding its credentials, trusted as an
        # API key is (a write key's limits are for public pages).
        return (await ingest.ingest(docs, trusted=True)).body()

    try:
        return await _run(path, send)
    finally:
        await stores.close()


async def _via_server(path: Path, server: str, api_key: Secret) -> int:
    async with _client(server, api_key) as client:
        return await _run(path, functools.partial(_post, client, server))


def _client(server: str, api_key: Secret) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {api_key.reveal()}"}
    return httpx.AsyncClient(base_url=server.rstrip("/"), headers=headers, timeout=30.0)


async def _post(client: httpx.AsyncClient, server: str, docs: list[Any]) -> dict[str, Any]:
    """The server's answer to one batch. A 503, a 429 (the key over its rate limit) or a
    lost answer is retried: the server dedupes, so a retried event is applied once."""
    body, headers = orjson.dumps({"events": docs}), {"Content-Type": "application/json"}
    last = "nothing"
    for attempt in range(RETRIES):
        wait = min(0.25 * 2**attempt, 8.0)
        try:
            response = await client.post("/v1/events", content=body, headers=headers)
        except httpx.ConnectError as exc:
            raise KairosError(f"cannot reach {server}: {exc}") from None
        except httpx.TransportError:
            last = "nothing"
            await asyncio.sleep(wait)
            continue
        if response.status_code in (202, 422):  # 422: nothing valid, each entry says why
            answer: dict[str, Any] = response.json()
            return answer
        if response.status_code not in (429, 503):
            raise KairosError(f"{server} answered {response.status_code}: {response.text[:300]}")
        last = str(response.status_code)
        await asyncio.sleep(retry_after(response, wait))
    raise StoreUnavailable(f"{server} still answered {last} after {RETRIES} attempts")


def _doc(line: bytes) -> Any:
    """A line as a native event, or the `EventRejected` it is."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return EventRejected("invalid_json", f"not valid JSON: {exc}")
    # A Segment message of any type (an unsupported call is then named as such).
    if not isinstance(doc, dict) or "event_id" in doc or "messageId" not in doc:
        return doc
    try:
        return translate(doc, call=None, received_at=datetime.now(UTC))
    except SegmentError as exc:
        return EventRejected(exc.code, exc.message, exc.field)


def _batches(path: Path, tally: Tally) -> Iterator[tuple[list[int], list[Any], int]]:
    """(line numbers, events, last line read) per batch; bad lines go to `tally`."""
    numbers: list[int] = []
    docs: list[Any] = []
    size = number = done = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                doc = _doc(line)
                if isinstance(doc, EventRejected):
                    tally.reject(number, doc.code, doc.message)
                else:
                    numbers.append(number)
                    docs.append(doc)
                    size += len(line)
            if len(docs) >= BATCH or size >= BATCH_BYTES:
                yield numbers, docs, number
                numbers, docs, size, done = [], [], 0, number
    if number > done:
        yield numbers, docs, number


async def _run(path: Path, send: Send) -> int:
    tally = Tally(path)
    with path.open("rb") as f:
        total = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    progress = Progress(total, "import events", sys.stderr)  # as redirected now
    try:
        for numbers, docs, last in _batches(path, tally):
            body = await send(docs) if docs else {}
            progress.advance(last - tally.line)
            tally.add(numbers, body, last)
    except BaseException:
        progress.close()
        tally.report()
        # Safe to run again: the events already applied are then duplicates.
        print(f"kairos: stopped after line {tally.line}; re-running is safe", file=sys.stderr)
        raise
    progress.close()
    return tally.report()


def tail(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.redis_url is None:
        print(f"{NO_REDIS} shared by the servers to follow their events", file=sys.stderr)
        return 2
    return asyncio.run(_tail(settings.redis_url.reveal(), raw=args.json))


async def _tail(url: str, *, raw: bool) -> int:
    stores = redis_stores(url, timeout_s=5.0)
    print("kairos: following the events applied on REDIS_URL (Ctrl-C to stop)", file=sys.stderr)
    try:
        async for line in stores.events.tail(asyncio.Event()):
            print(line.decode(errors="replace") if raw else _human(line), flush=True)
    finally:
        await stores.close()
    return 0


def _human(line: bytes) -> str:
    """`ts type user=ID anon=ID event_id {properties}`, ts in UTC, properties cut short."""
    try:
        event = orjson.loads(line)
        ts = format_ms(parse_ms(event["ts"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return line.decode(errors="replace")
    ids = (("user_id", "user"), ("anonymous_id", "anon"))
    who = " ".join(f"{label}={event[key]}" for key, label in ids if event.get(key))
    props = orjson.dumps(event.get("properties") or {}).decode()
    props = props if len(props) <= 160 else props[:159] + "…"
    return f"{ts} {event.get('type')} {who} {event.get('event_id')} {props}"


def erase(args: argparse.Namespace) -> int:
    user = check_user_id(args.user)
    settings = cli_settings()  # the server's keys: suppression keeps keyed hashes
    if settings.redis_url is None:
        print(f"{NO_REDIS} (or erase through the API: DELETE /v1/profiles/{{id}})", file=sys.stderr)
        return 2
    return asyncio.run(_erase(args, user, settings))


async def _erase(args: argparse.Namespace, user: str, settings: Settings) -> int:
    stores, _, erasure = _services(settings)
    try:
        if args.verify:
            left = await erasure.leftovers(user)
            for key in left:
                print(key)
            if left:
                print(f"kairos: {len(left)} keys still name {user}", file=sys.stderr)
                return 1
            print(f"no key names {user}")
        elif args.lift:
            lifted = await erasure.lift(user)
            print(f"lifted the suppression of {user}" if lifted else f"{user} was not suppressed")
        else:
            ids = await erasure.identity(user)
            existed = await erasure.erase(user, suppress=not args.no_suppress)
            merged = f" and {len(ids) - 1} merged id(s)" if len(ids) > 1 else ""
            print(f"erased {user}{merged}" + ("" if existed else " (no profile was stored)"))
            if args.no_suppress:
                print(f"not suppressed: a later event for {user} creates a new profile")
            else:
                print(f"suppressed: its events are refused until `kairos erase --lift {user}`")
        return 0
    finally:
        await stores.close()
