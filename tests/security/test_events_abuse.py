"""The events routes as an abusive client sends to them, through the real app: requests
and events just under and just over each size cap, clock abuse in both dialects, one
event id reused across readers, gzip bombs inflating to gigabytes, and encodings other
than gzip. Complements tests/test_events_hostile.py (keys, shapes, merges, storms)."""

from __future__ import annotations

import contextlib
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import orjson
import pytest
from support import AUTH, profile_counters, serve

from app.app import create_app
from app.settings import Settings

WRITE_KEY = "abuse-write-key-0123456789"
WRITE = {"Authorization": f"Bearer {WRITE_KEY}", "Content-Type": "application/json"}
MB = 1024 * 1024
# The smallest caps the settings allow, so that "just over" is cheap to send.
CAPS = {"KAIROS_EVENTS_MAX_BODY_MB": "1", "KAIROS_EVENTS_MAX_COUNT": "1000"}
CAPS |= {"KAIROS_EVENT_MAX_KB": "1"}
NATIVE, BATCH = "/v1/events", "/segment/v1/batch"
Json = dict[str, Any]
Open = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def open_app(settings: Callable[..., Settings], request: pytest.FixtureRequest) -> Open:
    @contextlib.asynccontextmanager
    async def running(backend: str = "embedded", **env: Any) -> AsyncIterator[httpx.AsyncClient]:
        redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
        base = {"KAIROS_WRITE_KEYS": WRITE_KEY, "REDIS_URL": redis_url, **CAPS}
        async with serve(cast(Any, create_app(settings(**{**base, **env})))) as client:
            yield client

    return running


@pytest.fixture
async def c(open_app: Open) -> AsyncIterator[httpx.AsyncClient]:
    async with open_app() as client:
        yield client


def native(n: int, user: str = "size", pad: int = 0) -> bytes:
    events = [{"event_id": f"e{i}", "user_id": user, "type": "page_view"} for i in range(n)]
    return orjson.dumps({"events": events}) + b" " * pad


def segment(n: int, user: str = "size") -> bytes:
    batch = [
        {"type": "track", "messageId": f"m{i}", "userId": user, "event": "Viewed"} for i in range(n)
    ]
    return orjson.dumps({"batch": batch})


def sized(body: bytes, size: int) -> bytes:
    """`body` padded with JSON whitespace to exactly `size` bytes."""
    assert len(body) <= size
    return body + b" " * (size - len(body))


# --- sizes: just under and just over each cap ------------------------------------------------


async def _trickle(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):  # chunked: no Content-Length to trust
        yield body[start : start + 64 * 1024]


SIZES = [
    ("body at the cap", NATIVE, lambda: sized(native(3), MB), None, 202),
    ("body one byte over", NATIVE, lambda: sized(native(3), MB + 1), None, 413),
    ("segment body at the cap", BATCH, lambda: sized(segment(3), MB), None, 200),
    ("segment body one byte over", BATCH, lambda: sized(segment(3), MB + 1), None, 413),
    ("chunked at the cap", NATIVE, lambda: sized(native(3), MB), "chunked", 202),
    ("chunked one byte over", BATCH, lambda: sized(segment(3), MB + 1), "chunked", 413),
    ("gzip inflating to the cap", NATIVE, lambda: sized(native(3), MB), "gzip", 202),
    ("gzip inflating one byte over", BATCH, lambda: sized(segment(3), MB + 1), "gzip", 413),
    ("1000 events, the most", NATIVE, lambda: native(1000), None, 202),
    ("1001 events", NATIVE, lambda: native(1001), None, 413),
    ("1000 messages, the most", BATCH, lambda: segment(1000), None, 200),
    ("1001 messages", BATCH, lambda: segment(1001), None, 413),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "make", "how", "status"), [case[1:] for case in SIZES], ids=[s[0] for s in SIZES]
)
async def test_each_cap_holds_to_the_byte(
    c: httpx.AsyncClient, path: str, make: Callable[[], bytes], how: str | None, status: int
) -> None:
    body = make()
    headers = dict(WRITE)
    content: Any = body
    if how == "gzip":
        content, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif how == "chunked":
        content = _trickle(body)
    r = await c.post(path, content=content, headers=headers)
    assert r.status_code == status, r.text
    if status == 413:
        code = "too_many_events" if len(body) < MB else "payload_too_large"
        assert r.json()["error"]["code"] == code
        assert await profile_counters(c, "size") == {}  # nothing of a refused request applied
    else:
        accepted = r.json()["accepted"]
        assert sum((await profile_counters(c, "size")).values()) == accepted > 0


def one_event(size: int) -> Json:
    """An event whose JSON (as the server measures it: compact) is exactly `size` bytes."""
    doc: Json = {"event_id": f"big-{size}", "user_id": "big", "type": "custom:x"}
    doc["properties"] = {"pad": ""}
    doc["properties"]["pad"] = "p" * (size - len(orjson.dumps(doc)))
    assert len(orjson.dumps(doc)) == size
    return doc


async def test_one_event_at_and_over_its_cap(c: httpx.AsyncClient) -> None:
    # In a request of several events, so the request itself is over the event cap.
    body = {"events": [one_event(1024), one_event(1025), one_event(50_000)]}
    r = await c.post(NATIVE, content=orjson.dumps(body), headers=WRITE)
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["code"]) for x in r.json()["rejected"]] == [
        (1, "event_too_large"),
        (2, "event_too_large"),
    ]
    alone = await c.post(NATIVE, content=orjson.dumps(one_event(1025)), headers=WRITE)
    assert alone.status_code == 422
    assert alone.json()["rejected"][0]["code"] == "event_too_large"
    assert await profile_counters(c, "big") == {"custom:x": 1}


# --- clock abuse -----------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


NOW = datetime.now(UTC)
# (the native `ts`, accepted?) — "ts: an ISO 8601 string, not before 2000-01-01, nor more
# than 24 hours ahead of the server's clock; absent or null: the time Kairos received it".
NATIVE_TIMES: list[tuple[str, Any, bool]] = [
    ("now", iso(NOW), True),
    ("null", None, True),
    ("23 h ahead", iso(NOW + timedelta(hours=23)), True),
    ("25 h ahead", iso(NOW + timedelta(hours=25)), False),
    ("year 9999", "9999-12-31T23:59:59.999Z", False),
    ("year 9999 with an offset past the end", "9999-12-31T23:59:59-23:59", False),
    ("year 1 with an offset before the start", "0001-01-01T00:00:00+23:59", False),
    ("2000 exactly", "2000-01-01T00:00:00Z", True),
    ("a millisecond before 2000", "1999-12-31T23:59:59.999Z", False),
    ("the epoch", "1970-01-01T00:00:00Z", False),
    ("year 1", "0001-01-01T00:00:00Z", False),
    ("not a date", "yesterday", False),
    ("month 13", "2026-13-01T00:00:00Z", False),
    ("February 30", "2026-02-30T00:00:00Z", False),
    ("hour 25", "2026-12-06T25:00:00Z", False),
    ("fullwidth digits", "２０２６-12-06T10:00:00Z", False),
    ("over 40 characters", iso(NOW) + " " * 40, False),
    ("empty", "", False),
    ("epoch milliseconds as a number", int(NOW.timestamp() * 1000), False),
    ("epoch seconds as a float", NOW.timestamp(), False),
    ("a huge integer", 10**30, False),
    ("negative", -1, False),
    ("true", True, False),
    ("an object", {"$date": iso(NOW)}, False),
    ("a list", [iso(NOW)], False),
]


async def test_native_clock_abuse(c: httpx.AsyncClient) -> None:
    events = [
        {"event_id": f"t{i}", "user_id": "clock", "type": "page_view", "ts": ts}
        for i, (_, ts, _) in enumerate(NATIVE_TIMES)
    ]
    body = json.dumps({"events": events}).encode()  # orjson writes no 100-bit integers
    r = await c.post(NATIVE, content=body, headers=WRITE)
    assert r.status_code == 202, r.text
    rejected = {x["index"]: (x["code"], x.get("field")) for x in r.json()["rejected"]}
    for i, (name, _, ok) in enumerate(NATIVE_TIMES):
        assert (i not in rejected) is ok, name
        if not ok:
            assert rejected[i] == ("invalid_ts", "ts"), name
    kept = await c.get("/v1/profiles/clock", headers=AUTH)
    first, last = kept.json()["first_seen"], kept.json()["last_seen"]
    assert first == "2000-01-01T00:00:00.000Z" and last < iso(NOW + timedelta(hours=24))


# What JSON cannot carry is refused as a body, never read as a time.
NOT_JSON = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]


@pytest.mark.parametrize("literal", NOT_JSON)
@pytest.mark.parametrize("path", [NATIVE, BATCH])
async def test_non_finite_epochs_are_refused_as_json(
    c: httpx.AsyncClient, path: str, literal: str
) -> None:
    if path == NATIVE:
        raw = f'{{"event_id":"nan","user_id":"clock2","type":"page_view","ts":{literal}}}'
    else:
        message = '{"type":"track","messageId":"nan","userId":"clock2","event":"x","timestamp":'
        raw = f'{{"batch":[{message}{literal}}}]}}'
    r = await c.post(path, content=raw.encode(), headers=WRITE)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "invalid_json"), r.text
    assert await profile_counters(c, "clock2") == {}


FAR_PAST, FAR_FUTURE = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z"
Y2001 = "2001-01-01T00:00:00Z"
# (a Segment message's times, accepted?) — ts = receivedAt − (sentAt − originalTimestamp).
SEGMENT_TIMES: list[tuple[str, Json, bool]] = [
    ("a future timestamp alone", {"timestamp": FAR_FUTURE}, False),
    ("a past timestamp alone", {"timestamp": FAR_PAST}, False),
    # A client whose clock is off by millennia, consistently: corrected to now.
    ("both far in the future", {"originalTimestamp": FAR_FUTURE, "sentAt": FAR_FUTURE}, True),
    ("both far in the past", {"originalTimestamp": "1971-01-01T00:00:00Z",
                              "sentAt": "1971-01-01T00:00:05Z"}, True),
    ("sent long before it happened", {"originalTimestamp": iso(NOW), "sentAt": Y2001}, False),
    ("sent long after it happened", {"originalTimestamp": Y2001, "sentAt": iso(NOW)}, True),
    ("a skew past the calendar", {"originalTimestamp": FAR_FUTURE, "sentAt": FAR_PAST}, False),
    ("a skew before the calendar", {"originalTimestamp": FAR_PAST, "sentAt": FAR_FUTURE}, False),
    ("a numeric timestamp", {"timestamp": int(NOW.timestamp() * 1000)}, False),
    ("a numeric sentAt", {"timestamp": iso(NOW), "sentAt": 1e18}, False),
    ("a huge integer", {"timestamp": 10**30}, False),
    ("not a date", {"originalTimestamp": "soon"}, False),
    ("an object", {"timestamp": {"$date": 0}}, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("times", "ok"), [t[1:] for t in SEGMENT_TIMES], ids=[t[0] for t in SEGMENT_TIMES]
)
async def test_segment_clock_abuse(c: httpx.AsyncClient, times: Json, ok: bool) -> None:
    message = {"type": "track", "messageId": "skew", "userId": "clock3", "event": "x", **times}
    r = await c.post(BATCH, content=json.dumps({"batch": [message]}).encode(), headers=WRITE)
    if ok:
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
        seen = (await c.get("/v1/profiles/clock3", headers=AUTH)).json()["last_seen"]
        assert "2000-01-01T00:00:00.000Z" <= seen <= iso(NOW + timedelta(hours=24))
    else:
        assert r.status_code == 400, r.text
        assert r.json()["rejected"][0]["code"] == "invalid_ts"
        assert await profile_counters(c, "clock3") == {}


# --- one event id, two readers ---------------------------------------------------------------


@pytest.mark.parametrize("backend", ["embedded", "redis"])
async def test_an_event_id_is_deduplicated_per_reader_only(open_app: Open, backend: str) -> None:
    """Documented: dedupe is per reader, so a client who knows (or guesses) another
    reader's event ids cannot make that reader's events vanish as duplicates."""
    async with open_app(backend) as client:
        shared = "same-id-everywhere"
        first = [{"event_id": shared, "user_id": "victim", "type": "page_view"}]
        assert (await client.post(NATIVE, json={"events": first}, headers=WRITE)).json()[
            "accepted"
        ] == 1
        # Planted for other readers: a user, an anonymous id, the victim's own id spelled
        # as an anonymous id (another reader), in the native and the Segment dialect.
        planted = [
            {"event_id": shared, "user_id": "mallory", "type": "page_view"},
            {"event_id": shared, "anonymous_id": "victim", "type": "page_view"},
            {"event_id": shared, "user_id": "victim", "type": "page_view"},  # a real repeat
        ]
        r = await client.post(NATIVE, json={"events": planted}, headers=WRITE)
        assert (r.json()["accepted"], r.json()["duplicates"]) == (2, 1)
        message = {"type": "track", "messageId": shared, "userId": "eve", "event": "x"}
        r = await client.post(BATCH, json={"batch": [message, message]}, headers=WRITE)
        assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 1)
        for user in ("victim", "mallory", "eve"):
            assert sum((await profile_counters(client, user)).values()) == 1, user
        anonymous = await client.get("/v1/profiles/victim?anonymous=true", headers=AUTH)
        assert anonymous.json()["counters"] == {"page_view": 1}


# --- gzip bombs and encodings ----------------------------------------------------------------


def gzip_bomb(gib: int, prefix: bytes = b"") -> bytes:
    """A well-formed gzip member of `prefix` then `gib` GiB of zeros, built without the
    zeros in memory: after a full flush, deflate encodes each identical MiB alike."""
    chunk = b"\0" * MB
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = deflate.compress(prefix + chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    unit = deflate.compress(chunk) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(prefix + chunk)
    for _ in range(gib * 1024 - 1):
        crc = zlib.crc32(chunk, crc)
    size = (len(prefix) + gib * 1024 * MB) & 0xFFFFFFFF
    tail = deflate.flush()
    # The tail's own trailer is for one MiB: put the real one after the repeated units.
    return (
        head
        + unit * (gib * 1024 - 1)
        + tail[:-8]
        + crc.to_bytes(4, "little")
        + size.to_bytes(4, "little")
    )


def test_the_bomb_is_real() -> None:
    bomb = gzip_bomb(1, prefix=b'{"batch": [')
    assert len(bomb) < 1.1 * MB
    inflate, total = zlib.decompressobj(47), 0
    data = bomb
    while data:
        total += len(inflate.decompress(data, 64 * MB))
        data = inflate.unconsumed_tail
    assert inflate.eof and total == 1024 * MB + len(b'{"batch": [')


BOMBS = [
    ("1 GiB of zeros", lambda: gzip_bomb(1)),
    ("3 GiB of zeros", lambda: gzip_bomb(3)),
    ("1 GiB inside a JSON string", lambda: gzip_bomb(1, prefix=b'{"batch": [{"x": "')),
    ("a bomb inside a gzip", lambda: gzip.compress(gzip_bomb(1))),
    ("a small member, then a bomb", lambda: gzip.compress(segment(1)) + gzip_bomb(1)),
]  # fmt: skip


@pytest.mark.parametrize("make", [b[1] for b in BOMBS], ids=[b[0] for b in BOMBS])
@pytest.mark.parametrize("path", [BATCH, "/segment/v1/track", "/segment/v1/identify", NATIVE])
async def test_a_gzip_bomb_is_refused_in_bounded_memory(
    open_app: Open, path: str, make: Callable[[], bytes]
) -> None:
    bomb = make()
    async with open_app(KAIROS_EVENTS_MAX_BODY_MB="4") as client:
        tracemalloc.start()
        try:
            r = await client.post(path, content=bomb, headers={**WRITE, "Content-Encoding": "gzip"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert r.status_code in (400, 413), r.text
        assert r.json()["error"]["code"] in ("payload_too_large", "invalid_gzip", "invalid_json")
        assert peak < 24 * MB, peak  # the 4 MiB cap, a copy or two; never gigabytes
        assert await profile_counters(client, "size") == {}


GZIPPED = gzip.compress(segment(1))
ENCODINGS = [
    ("deflate", zlib.compress(segment(1)), 415), ("br", b"\x8b\x02\x80{}\x03", 415),
    ("zstd", b"\x28\xb5\x2f\xfd", 415), ("compress", b"\x1f\x9d", 415), ("bogus", segment(1), 415),
    ("gzip;q=1", GZIPPED, 415), ("identity, gzip", GZIPPED, 415),
    ("gzip, identity", GZIPPED, 415), ("", segment(1), 415),
    ("GZIP", GZIPPED, 200), (" x-gzip ", GZIPPED, 200),
    ("identity", segment(1), 200), ("gzip", segment(1), 400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("encoding", "body", "status"), ENCODINGS, ids=[e[0] or "empty" for e in ENCODINGS]
)
async def test_only_gzip_or_identity_is_read(
    c: httpx.AsyncClient, encoding: str, body: bytes, status: int
) -> None:
    r = await c.post(BATCH, content=body, headers={**WRITE, "Content-Encoding": encoding})
    assert r.status_code == status, r.text
    if status == 415:
        assert r.json()["error"]["code"] == "unsupported_encoding"
    elif status == 400:
        assert r.json()["error"]["code"] == "invalid_gzip"
    else:
        assert r.json()["accepted"] == 1
