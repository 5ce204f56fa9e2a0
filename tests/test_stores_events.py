"""The event store contract (app/stores/protocols.py: EventStore) and the erasure parts
of Backend, run against both backends: the embedded one and Redis on a real
redis-server. Writes take their time (`now_ms`): retention is tested with times in the
past rather than by sleeping. The Redis-only tests at the end check the key layout and
the channels the write script publishes on."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio
from redis.crc import key_slot
from support import redis_of

from app.stores.bundle import Stores, embedded_stores, redis_stores
from app.stores.protocols import (
    Profile,
    ReaderAsk,
    ReaderDump,
    ReaderState,
    ReaderWrite,
    Retention,
    Written,
)
from app.stores.redis.backend import RedisBackend
from app.stores.redis.events import suppression_key
from app.stores.redis.keys import CHANGES_CHANNEL, EVENTS_CHANNEL, profile_key, reader_keys

EMPTY_DUMP = ReaderDump(profile=None, history=(), links=frozenset())


def now_ms() -> int:
    return int(time.time() * 1000)


def event(ts_ms: int, name: str, user_id: str = "u1") -> tuple[int, bytes]:
    """A history entry: the event's time (ms) and its JSON, which names the reader."""
    return ts_ms, orjson.dumps({"event_id": name, "user_id": user_id, "ts": ts_ms})


def change(
    user_id: str,
    version: bytes,
    profile: Profile,
    *,
    ids: Iterable[str] = (),
    history: Iterable[tuple[int, bytes]] = (),
    hashes: Iterable[str] = (),
    links: Iterable[str] = (),
) -> ReaderWrite:
    return ReaderWrite(
        user_id=user_id,
        version=version,
        hashes=tuple(hashes),
        profile=profile,
        event_ids=tuple(ids),
        history=tuple(history),
        links=tuple(links),
    )


async def state(
    stores: Stores, user_id: str, ids: Iterable[str] = (), hashes: Iterable[str] = ()
) -> ReaderState:
    [found] = await stores.events.read([ReaderAsk(user_id, tuple(ids), tuple(hashes))])
    return found


async def stored_ids(stores: Stores, user_id: str) -> list[str]:
    """The event ids the store still holds for the reader (not only those it counts)."""
    client = redis_of(stores)
    if client is None:
        return sorted(stores.events._seen.get(user_id, {}))
    return sorted(i.decode() for i in await client.zrange(f"kairos:{{{user_id}}}:seen", 0, -1))


async def write(stores: Stores, w: ReaderWrite, at_ms: int | None = None) -> Written:
    [result] = await stores.events.write([w], now_ms() if at_ms is None else at_ms)
    return result


async def apply(
    stores: Stores,
    user_id: str,
    profile: Profile,
    *,
    at_ms: int | None = None,
    **data: Any,
) -> Written:
    """Read the reader's version and write on it, as ingest does."""
    current = await state(stores, user_id)
    return await write(stores, change(user_id, current.version, profile, **data), at_ms)


async def snapshot(stores: Stores, user_id: str, ids: Iterable[str] = ()) -> tuple[Any, ...]:
    """Everything the stores say about a reader, to compare before and after."""
    events = stores.events
    return (
        await state(stores, user_id, ids),
        await events.dump(user_id),
        await events.history(user_id),
        await events.links(user_id),
        await stores.profiles.get(user_id),
        await stores.backend.keys_of(user_id),
    )


async def _until(check: Callable[[], bool], within_s: float = 3.0) -> None:
    deadline = time.monotonic() + within_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


StoresFactory = Callable[[Retention], Stores]


@pytest.fixture
async def retained(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[StoresFactory]:
    """`retained(Retention(...))` -> this backend's stores, keeping event data that long."""
    url = request.getfixturevalue("redis_url") if backend != "embedded" else None
    made: list[Stores] = []

    def make(retention: Retention) -> Stores:
        bundle = (
            embedded_stores(retention) if url is None else redis_stores(url, retention=retention)
        )
        made.append(bundle)
        return bundle

    try:
        yield make
    finally:
        for bundle in made:
            await bundle.close()


# --- read and write ------------------------------------------------------------------


async def test_an_unknown_reader_reads_as_nothing(stores: Stores) -> None:
    assert await state(stores, "nobody", ids=("e1",), hashes=("h1",)) == ReaderState(
        profile=None, seen=frozenset(), moved_to=None, suppressed=False, version=b""
    )
    events = stores.events
    assert await events.history("nobody") == []
    assert await events.links("nobody") == frozenset()
    assert await events.dump("nobody") == EMPTY_DUMP
    assert await events.resolve(["nobody"]) == {}
    assert await events.suppressed("nobody", ["h1"]) is False
    assert await stores.backend.keys_of("nobody") == []


async def test_a_write_is_read_back(stores: Stores) -> None:
    t = now_ms()
    a, b, c, d = event(t - 4000, "a"), event(t - 3000, "b"), event(t - 2000, "c"), event(t, "d")
    before = await state(stores, "u1")
    # history given out of time order is kept in time order
    assert await write(stores, change("u1", b"", {"n": 1}, ids=("e1", "e2"), history=(c, a))) == (
        Written.WRITTEN
    )
    first = await state(stores, "u1", ids=("e1", "e2", "e3"))
    assert first.profile == {"n": 1} == await stores.profiles.get("u1")
    assert first.seen == {"e1", "e2"}
    assert (first.moved_to, first.suppressed) == (None, False)
    assert first.version not in ("", before.version)

    assert await apply(stores, "u1", {"n": 2}, ids=("e3",), history=(d, b)) == Written.WRITTEN
    second = await state(stores, "u1", ids=("e1", "e2", "e3", "e4"))
    assert second.profile == {"n": 2}
    assert second.seen == {"e1", "e2", "e3"}
    assert second.version not in ("", first.version)

    events = stores.events
    assert await events.history("u1") == [a[1], b[1], c[1], d[1]]  # oldest first
    assert await events.history("u1", since_ms=t - 3000) == [b[1], c[1], d[1]]  # inclusive
    assert await events.history("u1", since_ms=t - 2999) == [c[1], d[1]]
    assert await events.history("u1", since_ms=t + 1) == []
    assert await events.history("u2") == []  # other readers have their own


async def test_the_writes_of_a_batch_are_each_their_own(stores: Stores) -> None:
    await apply(stores, "u2", {"n": 1})
    results = await stores.events.write(
        [
            change("u1", b"", {"who": "u1"}, ids=("e1",)),
            change("u2", b"stale", {"who": "u2"}, ids=("e2",)),
            change("u3", b"", {"who": "u3"}, ids=("e3",)),
        ],
        now_ms(),
    )
    assert results == [Written.WRITTEN, Written.CONFLICT, Written.WRITTEN]
    assert await stores.profiles.get("u1") == {"who": "u1"}
    assert await stores.profiles.get("u2") == {"n": 1}
    assert (await state(stores, "u2", ids=("e2",))).seen == frozenset()
    assert (await state(stores, "u3", ids=("e3",))).seen == {"e3"}


# --- compare-and-set and refusals ----------------------------------------------------


async def _stale(stores: Stores, user_id: str) -> ReaderWrite:
    old = await state(stores, user_id)
    await apply(stores, user_id, {"n": 2})  # someone else wrote since
    return change(user_id, old.version, {"n": 99}, ids=("e9",), history=(event(1, "z"),))


async def _never_a_version(stores: Stores, user_id: str) -> ReaderWrite:
    return change(user_id, "not-a-version", {"n": 99}, ids=("e9",), links=("x",))


async def _empty_version(stores: Stores, user_id: str) -> ReaderWrite:
    # "" means "there is no profile": wrong once there is one
    return change(user_id, "", {"n": 99}, ids=("e9",), history=(event(1, "z"),))


async def _moved(stores: Stores, user_id: str) -> ReaderWrite:
    assert await stores.events.link(user_id, "elsewhere") == "elsewhere"
    current = await state(stores, user_id)
    return change(user_id, current.version, {"n": 99}, ids=("e9",), history=(event(1, "z"),))


async def _suppressed(stores: Stores, user_id: str) -> ReaderWrite:
    await stores.erase(user_id, ("h1",))
    return change(user_id, "", {"n": 99}, ids=("e9",), history=(event(1, "z"),), hashes=("h1",))


REFUSALS = [
    ("stale version", _stale, Written.CONFLICT),
    ("never a version", _never_a_version, Written.CONFLICT),
    ("empty version on a profile", _empty_version, Written.CONFLICT),
    ("moved reader", _moved, Written.MOVED),
    ("suppressed reader", _suppressed, Written.SUPPRESSED),
]


@pytest.mark.parametrize(
    ("prepare", "refused"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
async def test_a_refused_write_changes_nothing(
    stores: Stores, prepare: Callable[[Stores, str], Any], refused: Written
) -> None:
    t = now_ms()
    w = await apply(
        stores, "u1", {"n": 1}, ids=("e1",), history=(event(t - 1000, "a"),), links=("anon-1",)
    )
    assert w == Written.WRITTEN
    await stores.picks.remember_pick("u1", "c", 0, "SKU-1")
    write_ = await prepare(stores, "u1")
    before = await snapshot(stores, "u1", ("e1", "e9"))

    assert await write(stores, write_) == refused
    assert await snapshot(stores, "u1", ("e1", "e9")) == before


async def test_of_two_writers_on_one_version_exactly_one_wins(stores: Stores) -> None:
    await apply(stores, "u1", {"n": 0})
    version = (await state(stores, "u1")).version
    t = now_ms()
    a = change("u1", version, {"by": "a"}, ids=("ea",), history=(event(t - 1, "a"),))
    b = change("u1", version, {"by": "b"}, ids=("eb",), history=(event(t - 2, "b"),))
    results = await asyncio.gather(write(stores, a), write(stores, b))
    assert sorted(results) == [Written.CONFLICT, Written.WRITTEN]
    winner = a if results[0] == Written.WRITTEN else b
    after = await state(stores, "u1", ids=("ea", "eb"))
    assert after.profile == winner.profile
    assert after.seen == set(winner.event_ids)
    assert await stores.events.history("u1") == [raw for _, raw in winner.history]

    # within one batch too: the second sees the version the first made
    version = after.version
    c = change("u1", version, {"by": "c"}, ids=("ec",))
    d = change("u1", version, {"by": "d"}, ids=("ed",))
    assert await stores.events.write([c, d], now_ms()) == [Written.WRITTEN, Written.CONFLICT]
    assert (await state(stores, "u1", ids=("ec", "ed"))).seen == {"ec"}
    assert await stores.profiles.get("u1") == {"by": "c"}


async def test_concurrent_read_modify_writes_lose_and_double_nothing(stores: Stores) -> None:
    n, t = 20, now_ms()
    all_read = asyncio.Barrier(n)  # every poster reads the same version first
    conflicts = 0

    async def post(i: int) -> None:
        nonlocal conflicts
        first = True
        while True:
            current = await state(stores, "counted")
            if first:
                await all_read.wait()
                first = False
            count = (current.profile or {}).get("count", 0)
            new = change(
                "counted",
                current.version,
                {"count": count + 1},
                ids=(f"e{i}",),
                history=(event(t - 1000 + i, f"e{i}", "counted"),),
            )
            result = await write(stores, new, t)
            if result == Written.WRITTEN:
                return
            assert result == Written.CONFLICT
            conflicts += 1

    await asyncio.wait_for(asyncio.gather(*(post(i) for i in range(n))), 20)
    ids = [f"e{i}" for i in range(n)]
    final = await state(stores, "counted", ids=ids)
    assert final.profile == {"count": n}
    assert final.seen == set(ids)
    assert len(await stores.events.history("counted")) == n
    assert conflicts >= n - 1  # the first round: one winner, everyone else read again


# --- identity links --------------------------------------------------------------------


async def test_link_is_first_wins(stores: Stores) -> None:
    events = stores.events
    assert await events.link("anon-1", "ada") == "ada"
    assert await events.link("anon-1", "grace") == "ada"  # the earlier target stays
    assert await events.link("anon-2", "grace") == "grace"
    assert await events.resolve(["anon-1", "ada", "anon-2", "nobody"]) == {
        "anon-1": "ada",
        "anon-2": "grace",
    }
    assert (await state(stores, "anon-1")).moved_to == "ada"
    assert (await state(stores, "ada")).moved_to is None


async def test_relink_moves_only_ids_already_linked(stores: Stores) -> None:
    events = stores.events
    await events.link("anon-1", "ada")
    await events.link("anon-2", "ada")
    await events.relink(["anon-1", "never-linked"], "grace")
    assert await events.resolve(["anon-1", "anon-2", "never-linked"]) == {
        "anon-1": "grace",
        "anon-2": "ada",
    }
    assert (await state(stores, "never-linked")).moved_to is None
    await events.relink([], "grace")  # nothing to do: fine


async def test_links_gather_the_ids_merged_into_a_reader(stores: Stores) -> None:
    await apply(stores, "ada", {"n": 1}, links=("anon-1", "anon-2"))
    await apply(stores, "ada", {"n": 2}, links=("anon-2", "anon-3"))
    await apply(stores, "ada", {"n": 3})  # no links: the earlier ones stay
    assert await stores.events.links("ada") == {"anon-1", "anon-2", "anon-3"}
    assert await stores.events.links("anon-1") == frozenset()


async def test_dump_holds_all_a_readers_event_data(stores: Stores) -> None:
    t = now_ms()
    a, b, c = event(t - 3000, "a"), event(t - 2000, "b"), event(t - 1000, "c")
    await apply(stores, "u1", {"n": 1}, ids=("e1", "e2"), history=(a, c), links=("anon-1",))
    await apply(stores, "u1", {"n": 2}, ids=("e3",), history=(b,), links=("anon-2",))
    dumped = await stores.events.dump("u1")
    assert dumped.profile == {"n": 2}
    assert dumped.history == (a, b, c)  # (ms, bytes), oldest first
    assert dumped.links == {"anon-1", "anon-2"}


async def test_drop_merged_deletes_the_data_and_keeps_the_link(stores: Stores) -> None:
    t = now_ms()
    await apply(stores, "anon-1", {"n": 1}, ids=("e1",), history=(event(t, "a"),), links=("x",))
    await stores.picks.remember_pick("anon-1", "c", 0, "SKU-1")
    await apply(stores, "ada", {"n": 5}, ids=("e5",))
    assert await stores.events.link("anon-1", "ada") == "ada"

    await stores.events.drop_merged("anon-1")
    assert await stores.events.dump("anon-1") == EMPTY_DUMP
    assert await stores.events.history("anon-1") == []
    assert await stores.profiles.get("anon-1") is None
    assert await stores.picks.get_pick("anon-1", "c", 0) is None
    # its event ids stay until the window ends them: a retried event of it is found
    after = await state(stores, "anon-1", ids=("e1",))
    assert (after.profile, after.seen, after.moved_to) == (None, {"e1"}, "ada")
    assert await stores.events.resolve(["anon-1"]) == {"anon-1": "ada"}
    left = await stores.backend.keys_of("anon-1")  # the link and the ids, nothing else
    assert sorted(key.rsplit(":", 1)[1] for key in left) == ["alias", "seen"]
    assert await apply(stores, "anon-1", {"n": 2}) == Written.MOVED  # events go to ada
    # the user merged into is untouched
    assert (await state(stores, "ada", ids=("e5",))).seen == {"e5"}


async def test_forget_drops_the_event_data_only(stores: Stores) -> None:
    await apply(stores, "u1", {"n": 1}, ids=("e1",), history=(event(now_ms(), "a"),), links=("x",))
    await stores.picks.remember_pick("u1", "c", 0, "SKU-1")
    await stores.events.link("u1", "elsewhere")
    await stores.events.forget("u1")
    dumped = await stores.events.dump("u1")
    assert (dumped.history, dumped.links) == ((), frozenset())
    assert await stored_ids(stores, "u1") == []
    assert (await state(stores, "u1", ids=("e1",))).moved_to is None
    assert await stores.events.history("u1") == []
    # the profile and the picks are other stores' (erasure forgets them all)
    assert dumped.profile == {"n": 1}
    assert await stores.picks.get_pick("u1", "c", 0) == "SKU-1"


# --- suppression -----------------------------------------------------------------------


async def test_an_erased_reader_is_suppressed_until_lifted(stores: Stores) -> None:
    await apply(stores, "u1", {"n": 1}, hashes=("h1", "h2"))
    assert await stores.erase("u1", ("h1",)) is True

    assert await stores.events.suppressed("u1", ["h1"]) is True
    assert await stores.events.suppressed("u1", ["h0", "h1"]) is True
    assert await stores.events.suppressed("u1", ["h2"]) is False
    assert await stores.events.suppressed("u1", []) is False
    assert (await state(stores, "u1", hashes=("h2", "h1"))).suppressed is True
    assert (await state(stores, "u1", hashes=("h2",))).suppressed is False
    assert await write(stores, change("u1", b"", {"n": 2}, hashes=("h2", "h1"))) == (
        Written.SUPPRESSED
    )
    assert await stores.profiles.get("u1") is None

    # a write that does not carry the hash is not suppressed
    assert await write(stores, change("u1", b"", {"n": 3}, hashes=("h2",))) == Written.WRITTEN
    assert await stores.profiles.get("u1") == {"n": 3}

    assert await stores.events.unsuppress("u1", ["h1"]) is True
    assert await stores.events.unsuppress("u1", ["h1"]) is False
    assert await stores.events.unsuppress("u1", []) is False
    assert await stores.events.suppressed("u1", ["h1"]) is False
    assert (await state(stores, "u1", hashes=("h1",))).suppressed is False
    assert await apply(stores, "u1", {"n": 4}, hashes=("h1",)) == Written.WRITTEN
    assert await stores.profiles.get("u1") == {"n": 4}


# --- retention -------------------------------------------------------------------------


async def test_ids_older_than_the_dedupe_window_are_not_seen(retained: StoresFactory) -> None:
    stores = retained(Retention(dedupe_s=1))
    t = now_ms()
    await apply(stores, "u1", {"n": 1}, ids=("old",), at_ms=t - 5000)
    assert (await state(stores, "u1", ids=("old",))).seen == frozenset()
    await apply(stores, "u1", {"n": 2}, ids=("older",), at_ms=t - 1500)
    await apply(stores, "u1", {"n": 3}, ids=("recent",), at_ms=t - 500)
    # read now: "older" was applied 1.5 s ago, beyond the 1 s window (though it was
    # within the window of the last write)
    assert (await state(stores, "u1", ids=("old", "older", "recent"))).seen == {"recent"}

    # a write trims them: the data is gone, not only hidden
    await apply(stores, "u1", {"n": 4}, ids=("new",), at_ms=t)
    assert await stored_ids(stores, "u1") == ["new", "recent"]
    await apply(stores, "u1", {"n": 5}, at_ms=t + 1000)  # "recent" is 1.5 s old by then
    assert await stored_ids(stores, "u1") == ["new"]

    # an id out of the window can be applied again
    assert await apply(stores, "u1", {"n": 6}, ids=("old",)) == Written.WRITTEN
    assert (await state(stores, "u1", ids=("old",))).seen == {"old"}


async def test_ids_within_the_dedupe_window_are_seen(retained: StoresFactory) -> None:
    stores = retained(Retention(dedupe_s=3600))
    t = now_ms()
    await apply(stores, "u1", {"n": 1}, ids=("e1",), at_ms=t - 3_500_000)
    await apply(stores, "u1", {"n": 2}, ids=("e2",), at_ms=t)
    assert (await state(stores, "u1", ids=("e1", "e2", "e3"))).seen == {"e1", "e2"}


async def test_history_keeps_the_newest_events_within_its_age(retained: StoresFactory) -> None:
    stores = retained(Retention(history_events=3, history_s=60))
    t = now_ms() - 600_000  # all in the past
    events = [event(t - 5000 + 1000 * i, f"e{i}") for i in range(5)]  # t-5000 .. t-1000
    assert await apply(stores, "u1", {"n": 1}, history=events, at_ms=t) == Written.WRITTEN
    assert await stores.events.history("u1") == [raw for _, raw in events[2:]]  # newest 3

    # an event older than the history's age is not kept
    late = event(t - 61_000, "late")
    await apply(stores, "u1", {"n": 2}, history=(late,), at_ms=t)
    assert await stores.events.history("u1") == [raw for _, raw in events[2:]]

    # as time passes, events age out: 58.5 s on, only those of the last 60 s stay
    fresh = event(t + 58_000, "fresh")
    await apply(stores, "u1", {"n": 3}, history=(fresh,), at_ms=t + 58_500)
    assert await stores.events.history("u1") == [events[4][1], fresh[1]]
    assert (await stores.events.dump("u1")).history == (events[4], fresh)


# --- erasure ---------------------------------------------------------------------------

ERASED = "erase-me-7f3c"  # occurs nowhere else, so any trace of it is found


async def test_erasure_leaves_nothing_of_the_reader(stores: Stores) -> None:
    t, hashes = now_ms(), ("h-erase-1", "h-erase-2")
    for n in range(2):
        w = await apply(
            stores,
            ERASED,
            {"first_name": "Ada", "n": n},
            ids=(f"e-{n}",),
            history=(event(t - 1000 + n, f"a{n}", ERASED),),
            hashes=hashes,
            links=(f"anon-{n}",),
        )
        assert w == Written.WRITTEN
    await stores.picks.remember_pick(ERASED, "spring", 0, "SKU-1")
    assert await stores.events.link(ERASED, "keeper-1") == "keeper-1"
    await apply(stores, "bystander", {"n": 1}, ids=("e-9",), history=(event(t, "z", "b"),))
    await stores.picks.remember_pick("bystander", "spring", 0, "SKU-2")
    assert len(await stores.backend.keys_of(ERASED)) == 6

    assert await stores.erase(ERASED, hashes) is True
    await stores.backend.record_erasure({"reader": hashes[0], "at": str(t)})

    assert await stores.backend.keys_of(ERASED) == []
    assert await stores.events.dump(ERASED) == EMPTY_DUMP
    assert await stores.events.history(ERASED) == []
    assert await stores.events.links(ERASED) == frozenset()
    assert await stores.events.resolve([ERASED]) == {}
    assert await stores.picks.get_pick(ERASED, "spring", 0) is None
    assert await state(stores, ERASED, ids=("e-0", "e-1"), hashes=hashes) == ReaderState(
        profile=None, seen=frozenset(), moved_to=None, suppressed=True, version=b""
    )
    # the other reader is untouched
    assert (await state(stores, "bystander", ids=("e-9",))).seen == {"e-9"}
    assert await stores.picks.get_pick("bystander", "spring", 0) == "SKU-2"
    assert len(await stores.events.history("bystander")) == 1

    client = redis_of(stores)
    if client is not None:
        assert [k async for k in client.scan_iter(match=f"*{ERASED}*")] == []
        await _assert_nowhere(client, ERASED.encode())


async def _assert_nowhere(client: redis.asyncio.Redis, needle: bytes) -> None:
    """No key name, nor any value, member, field or stream entry of any key holds it."""
    keys: list[bytes] = [k async for k in client.scan_iter(match="*")]
    assert keys  # the bystander's, the suppression set, the audit log
    for key in keys:
        assert needle not in key
        kind: Any = await client.type(key)
        found: Any
        if kind == b"string":
            found = [await client.get(key)]
        elif kind == b"hash":
            found = [b for kv in (await client.hgetall(key)).items() for b in kv]
        elif kind == b"set":
            found = await client.smembers(key)
        elif kind == b"zset":
            found = await client.zrange(key, 0, -1)
        elif kind == b"list":
            found = await client.lrange(key, 0, -1)
        elif kind == b"stream":
            entries: Any = await client.xrange(key)
            found = [b for _, fields in entries for kv in fields.items() for b in kv]
        else:
            raise AssertionError(f"{key!r}: a {kind!r} the check does not know")
        assert found, key
        assert all(needle not in value for value in found), (key, kind)


async def test_erase_of_a_reader_with_event_data_only(stores: Stores) -> None:
    # no profile: erasure still removes the rest, and says there was no profile
    await stores.events.write([change("u1", b"", {"n": 1}, ids=("e1",))], now_ms())
    await stores.profiles.delete("u1")
    assert await stores.backend.keys_of("u1") != []
    assert await stores.erase("u1") is False
    assert await stores.backend.keys_of("u1") == []


async def test_the_erasure_log_is_newest_first(stores: Stores) -> None:
    backend = stores.backend
    assert await backend.erasures(5) == []
    entries = [{"reader": f"h{i}", "at": str(1000 + i)} for i in range(3)]
    for entry in entries:
        await backend.record_erasure(entry)
    assert await backend.erasures(2) == [entries[2], entries[1]]
    assert await backend.erasures(10) == entries[::-1]


# --- tail ----------------------------------------------------------------------------


async def _following(stores: Stores, within_s: float = 3.0) -> None:
    """Until a `tail` started just before follows: on Redis, until its subscription is
    active (a message published before that is lost)."""
    client = redis_of(stores)
    if client is None:
        for _ in range(3):
            await asyncio.sleep(0)  # the follower's first step registers it
        return
    deadline = time.monotonic() + within_s
    while True:
        [(_channel, count)] = await client.pubsub_numsub(EVENTS_CHANNEL)
        if count == 1:
            return
        assert time.monotonic() < deadline, "never subscribed"
        await asyncio.sleep(0.005)


async def test_tail_follows_the_applied_events_until_stopped(stores: Stores) -> None:
    stop = asyncio.Event()
    received: list[bytes] = []

    async def follow() -> None:
        async for raw in stores.events.tail(stop):
            received.append(raw)

    follower = asyncio.create_task(follow())
    try:
        await _following(stores)
        t = now_ms()
        a, b, c = event(t - 3, "a"), event(t - 2, "b", "u2"), event(t - 1, "c", "u2")
        await apply(stores, "u1", {"n": 1}, history=(a,))
        await apply(stores, "u2", {"n": 1}, history=(b, c))  # two events, one write
        # refused and event-less writes tell followers nothing
        refused = change("u1", b"stale", {"n": 9}, history=(event(t, "refused"),))
        assert await write(stores, refused) == Written.CONFLICT
        await apply(stores, "u1", {"n": 2})
        # a merge's history was announced when first applied: not again
        current = await state(stores, "u1")
        merged = change("u1", current.version, {"n": 3}, history=(event(t, "merged"),))
        assert await write(stores, dataclasses.replace(merged, announce=False)) == Written.WRITTEN
        await _until(lambda: len(received) >= 3)

        stop.set()
        wake = event(t, "after-stop")  # the follower sees the flag after its next event
        await apply(stores, "u3", {"n": 1}, history=(wake,))
        await asyncio.wait_for(follower, 3.0)
        assert received == [a[1], b[1], c[1], wake[1]]
    finally:
        # the flag too: on Python 3.11 a cancellation can be lost in `asyncio.wait_for`
        stop.set()
        follower.cancel()
        await asyncio.wait({follower}, timeout=3.0)


# --- Redis only: the key layout and the channels ---------------------------------------


@pytest.fixture
async def on_redis(redis_url: str) -> AsyncIterator[Stores]:
    bundle = redis_stores(redis_url)
    try:
        yield bundle
    finally:
        await bundle.close()


@pytest.mark.parametrize("user_id", ["u123", "ada.lovelace", "crm:42", "A-b_c.9", "x" * 128])
async def test_a_readers_keys_and_its_suppression_set_share_its_slot(
    on_redis: Stores, redis_client: redis.Redis, user_id: str
) -> None:
    assert isinstance(on_redis.backend, RedisBackend)
    connection = on_redis.backend.connection
    w = await apply(
        on_redis, user_id, {"n": 1}, ids=("e1",), history=(event(now_ms(), "a"),), links=("x",)
    )
    assert w == Written.WRITTEN
    await on_redis.picks.remember_pick(user_id, "c", 0, "SKU-1")
    await on_redis.events.link(user_id, "elsewhere")
    written = {k.decode() for k in redis_client.scan_iter(match=f"*{{{user_id}}}*")}
    assert written == set(reader_keys(user_id))  # every one of them, and no other

    suppression = suppression_key(connection, user_id)
    assert user_id not in suppression  # the set is the slot's, not the reader's
    slots = {key_slot(k.encode()) for k in (*written, suppression)}
    assert slots == {key_slot(user_id.encode())}

    # erasure fills the very set the write script checks
    await on_redis.erase(user_id, ("h1",))
    assert redis_client.smembers(suppression) == {b"h1"}
    assert await write(on_redis, change(user_id, "", {}, hashes=("h1",))) == Written.SUPPRESSED


async def test_the_write_script_tells_the_servers_which_reader_changed(
    on_redis: Stores, redis_client: redis.Redis
) -> None:
    await apply(on_redis, "stale", {"n": 1})
    await on_redis.events.link("moved", "elsewhere")
    await on_redis.erase("suppressed", ("h1",))
    with redis_client.pubsub() as pubsub:
        pubsub.subscribe(CHANGES_CHANNEL)
        subscribed = pubsub.get_message(timeout=2.0)
        assert subscribed is not None and subscribed["type"] == "subscribe"  # active now
        answers = await on_redis.events.write(
            [
                change("stale", b"stale", {"n": 2}),
                change("moved", b"", {"n": 2}),
                change("ada", b"", {"n": 1}),
                change("suppressed", b"", {"n": 2}, hashes=("h1",)),
            ],
            now_ms(),
        )
        assert answers == [Written.CONFLICT, Written.MOVED, Written.WRITTEN, Written.SUPPRESSED]
        message = pubsub.get_message(timeout=2.0)
        assert message is not None and message["type"] == "message"
        # One message for the whole write, sent after the writes: a server that reloads
        # on it reads the new profile. (A refused reader is named too: a reload, no harm.)
        origin, *readers = message["data"].split(b"\n")
        assert origin.startswith(b"@") and readers == [b"stale", b"moved", b"ada", b"suppressed"]
        assert orjson.loads(redis_client.get(profile_key("ada"))) == {"n": 1}
        assert pubsub.get_message(timeout=0.05) is None


async def test_add_history_adds_once_and_keeps_the_retention(stores: Stores) -> None:
    t = now_ms()
    a, b = event(t - 2000, "a"), event(t - 1000, "b")
    await apply(stores, "u1", {"n": 1}, history=(a,))
    many = tuple(event(t - 100 + i, f"m{i}") for i in range(250))
    await stores.events.add_history("u1", (b, *many))
    await stores.events.add_history("u1", (b,))  # again: nothing changes
    kept = await stores.events.history("u1")
    assert kept[:2] == [a[1], b[1]] and len(kept) == 252
    old = (t - 200 * 86_400_000, b'{"old":1}')  # past the 90 days kept
    await stores.events.add_history("u1", (old,))
    assert len(await stores.events.history("u1")) == 252


async def test_a_write_not_read_first_is_refused_when_an_id_was_applied(stores: Stores) -> None:
    """`checked=False` (ingest wrote from its own last write, not a read): the store checks
    the ids itself. One applied within the window refuses the write and changes nothing;
    new ids land, and the version after is what a read then shows."""
    t = now_ms()
    first = change("w1", b"", {"n": 1}, ids=("e1",), history=(event(t, "e1", "w1"),))
    assert await write(stores, first, t) == Written.WRITTEN
    assert first.version_after == (await state(stores, "w1")).version != b""

    again = change("w1", first.version_after, {"n": 2}, ids=("e2", "e1"))
    again.checked = False
    assert await write(stores, again, t + 10) == Written.CONFLICT
    assert again.version_after == b""
    after = await state(stores, "w1", ("e1", "e2"))
    assert after.profile == {"n": 1} and after.seen == {"e1"}
    assert after.version == first.version_after
    assert await stores.events.history("w1") == [event(t, "e1", "w1")[1]]

    fresh = change("w1", first.version_after, {"n": 2}, ids=("e2",))
    fresh.checked = False
    assert await write(stores, fresh, t + 20) == Written.WRITTEN
    read = await state(stores, "w1", ("e2",))
    assert read.profile == {"n": 2} and read.seen == {"e2"}
    assert fresh.version_after == read.version != first.version_after

    # Past the window an applied id no longer refuses it, as a read would not count it.
    late = change("w1", fresh.version_after, {"n": 3}, ids=("e1",))
    late.checked = False
    window_ms = stores.events.retention.dedupe_s * 1000
    assert await write(stores, late, t + window_ms + 1) == Written.WRITTEN


async def test_a_checked_write_does_not_look_at_the_ids_again(stores: Stores) -> None:
    # The read before it did (and counted duplicates); the write only applies.
    assert await apply(stores, "w2", {"n": 1}, ids=("e1",)) == Written.WRITTEN
    assert await apply(stores, "w2", {"n": 2}, ids=("e1",)) == Written.WRITTEN
