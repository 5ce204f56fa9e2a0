"""Erasure that can be proven: a reader and every id merged with it removed from every
store, suppressed so later events do not bring it back, and an audit entry that names
the reader only by a keyed hash."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from app.caching import Bounded
from app.errors import CorruptData
from app.events.model import anonymous_reader
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles
from app.settings import Secret
from app.stores.bundle import Stores
from app.stores.protocols import ReaderAsk

log = logging.getLogger("kairos.privacy")

HASH_CONTEXT = b"kairos-reader\x00"
KNOWN_READERS = 50_000


class ReaderHashes:
    """Keyed hashes of reader ids: what suppression and the audit log keep instead of the
    id. One per signing key, so rotating keys keeps earlier suppressions in force."""

    def __init__(self, keys: Sequence[Secret]) -> None:
        # Keyed BLAKE2b is a MAC in one C call (HMAC-SHA256 is two hashes and Python
        # around them): every event's reader is hashed. Its key is at most 64 bytes.
        self._keys = tuple(k.derived(HASH_CONTEXT) for k in keys)
        # A reader's events come in runs (a session): its hashes are asked again soon.
        self._known: Bounded[str, tuple[str, ...]] = Bounded(KNOWN_READERS)

    def of(self, user_id: str) -> tuple[str, ...]:
        found = self._known.get(user_id)
        if found is None:
            message = user_id.encode()
            found = tuple(
                hashlib.blake2b(message, key=k, digest_size=16).hexdigest() for k in self._keys
            )
            self._known.put(user_id, found)
        return found


class Erasure:
    """`DELETE /v1/profiles/{id}` and `kairos erase`."""

    def __init__(
        self, stores: Stores, profiles: CachedProfiles, hashes: ReaderHashes, metrics: Metrics
    ) -> None:
        self._stores = stores
        self._profiles = profiles
        self._hashes = hashes
        self._metrics = metrics

    async def identity(self, user_id: str) -> list[str]:
        """Every reader the id names: the user it resolves to and every id merged into
        that user, then the same for the anonymous reader of that id, if there is one."""
        events = self._stores.events
        ids: list[str] = []
        for reader in (user_id, anonymous_reader(user_id)):
            try:
                (state,) = await events.read([ReaderAsk(reader, (), ())])
                moved, stored = state.moved_to, state.profile is not None
            except CorruptData:  # unreadable, but there: erasure is how it goes away
                moved, stored = None, True
            user = moved or reader
            linked = sorted(await events.links(user))
            if reader != user_id and not (stored or moved or linked):
                continue  # no anonymous reader of that id
            for found in (user, *linked, reader):
                if found not in ids:
                    ids.append(found)
        return ids

    async def erase(self, user_id: str, *, suppress: bool = True) -> bool:
        """Erase the reader and every id merged with it, as a user id and as an anonymous
        id (an anonymous id erases the user it was merged into: its data lives there).
        With `suppress`, later events for any of those ids are refused until `lift`. True
        if any of them had a profile."""
        ids = await self.identity(user_id)
        existed = False
        for reader in ids:
            hashes = self._hashes.of(reader) if suppress else ()
            existed |= await self._stores.erase(reader, hashes)
            await self._stores.segments.forget(reader)
        anonymous = anonymous_reader(user_id)
        announced = list(ids)
        if suppress and anonymous not in ids:
            # No anonymous reader of that id yet: nothing to erase, but its events must
            # not start one either. Announced too: one may have been started meanwhile,
            # and copies of it elsewhere must go.
            await self._stores.erase(anonymous, self._hashes.of(anonymous))
            await self._stores.segments.forget(anonymous)
            announced.append(anonymous)
        for reader in announced:
            await self._profiles.changed(reader)
        await self._stores.backend.record_erasure(
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "reader": self._hashes.of(user_id)[0],
                "ids": str(len(ids)),
                "profile": "1" if existed else "0",
                "suppressed": "1" if suppress else "0",
            }
        )
        self._metrics.erasures.labels().inc()
        log.info("erased a reader and %d linked ids (suppressed: %s)", len(ids) - 1, suppress)
        return existed

    async def lift(self, user_id: str) -> bool:
        """Lift the suppression of an erased id, as a user id and as an anonymous id; True
        if it was suppressed."""
        lifted = False
        for reader in (user_id, anonymous_reader(user_id)):
            lifted |= await self._stores.events.unsuppress(reader, self._hashes.of(reader))
        return lifted

    async def leftovers(self, user_id: str) -> list[str]:
        """Every stored key still naming the reader or an id merged with it."""
        found = []
        # After an erasure the links are gone: the id itself, as a user and as an
        # anonymous id, is always scanned.
        readers = {user_id, anonymous_reader(user_id), *await self.identity(user_id)}
        for reader in sorted(readers):
            found += await self._stores.backend.keys_of(reader)
        return found
