"""Rate limits per API key and per write key, on the routes a key opens: the
server-to-server routes (`api`) and the events routes (`events`).

Each key has one bucket per family, a GCRA (generic cell rate algorithm): `N` requests
a second sustained, and up to `N` at once, so the quota reads as `N` per 1-second window.
The buckets live in the store (`app/stores/memory_rates.py`, `app/stores/redis/rates.py`:
one script a request, shared by every process on the Redis), named by a keyed hash of
the key. A store that cannot answer lets the request through (fail open): the store-backed
work behind it answers for itself, and the limit must not turn a Redis outage into 429s.

Answers carry the fields of draft-ietf-httpapi-ratelimit-headers-06: `RateLimit-Limit`,
`RateLimit-Remaining`, `RateLimit-Reset` (seconds until the bucket is full again) and
`RateLimit-Policy` (`N;w=1`); a refusal is 429 `rate_limited` with `Retry-After` too.
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType

from starlette.responses import Response

from app.caching import Bounded
from app.errors import KairosError, StoreUnavailable, TooManyRequests
from app.metrics import Metrics
from app.settings import Secret, Settings
from app.stores.protocols import RateStore
from app.stores.redis.keys import rate_key

API = "api"
EVENTS = "events"
FAMILIES = (API, EVENTS)
US = 1_000_000
HASH_CONTEXT = b"kairos rate limit buckets\x00"
# Bucket names remembered per (family, key); keys reach here only once authenticated, so
# the bound is against misuse, not real traffic.
NAMES_KEPT = 4096

RawHeaders = list[tuple[bytes, bytes]]


class Policy:
    """`per_s` requests a second for one key on one family, in bursts of as many."""

    __slots__ = ("capacity_us", "interval_us", "per_s", "_fixed")

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self.interval_us = US // per_s
        self.capacity_us = self.interval_us * per_s
        self._fixed = (
            (b"ratelimit-limit", str(per_s).encode()),
            (b"ratelimit-policy", f"{per_s};w=1".encode()),
        )

    def allowed(self, ahead_us: int) -> RawHeaders:
        """The fields of an answer counted, the bucket now `ahead_us` ahead of now."""
        remaining = (self.capacity_us - ahead_us) // self.interval_us
        return [
            *self._fixed,
            (b"ratelimit-remaining", b"%d" % remaining),
            (b"ratelimit-reset", b"%d" % _seconds(ahead_us)),
        ]

    def refused(self, ahead_us: int) -> TooManyRequests:
        """The 429 of a request that did not fit, the bucket `ahead_us` ahead of now."""
        retry = _seconds(ahead_us + self.interval_us - self.capacity_us)
        headers = {
            "Retry-After": str(retry),
            "RateLimit-Limit": str(self.per_s),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(_seconds(ahead_us)),
            "RateLimit-Policy": f"{self.per_s};w=1",
        }
        message = (
            f"this key is over its limit of {self.per_s} requests a second here; retry in {retry} s"
        )
        return TooManyRequests(message, MappingProxyType(headers))


class RateLimits:
    """Every family's policy over one store, with the counters of /metrics."""

    def __init__(self, settings: Settings, store: RateStore, metrics: Metrics) -> None:
        self._store = store
        per_s = {API: settings.rate_api, EVENTS: settings.rate_events}
        self._policies = {f: Policy(per_s[f]) if per_s[f] else None for f in FAMILIES}
        # From the signing key every process shares, so all of them name a key's bucket
        # alike; a rotation renames the buckets, which only restarts them.
        keys = settings.secret_keys
        self._hash_key = keys[0].derived(HASH_CONTEXT) if keys else Secret("").derived(HASH_CONTEXT)
        self._names: Bounded[tuple[str, bytes], str] = Bounded(NAMES_KEPT)
        self._limited = {f: metrics.rate_limited.labels(f) for f in FAMILIES}
        self._failed_open = {f: metrics.rate_limit_fail_open.labels(f) for f in FAMILIES}

    async def take(self, family: str, key: bytes) -> RawHeaders | None:
        """Count a request of `key` (authenticated) on `family`: the fields to add to
        its answer (None when the family has no limit, or the store did not answer),
        or `TooManyRequests` raised when it is over."""
        policy = self._policies[family]
        if policy is None:
            return None
        try:
            fits, ahead = await self._store.take(
                self.bucket(family, key), policy.interval_us, policy.capacity_us
            )
        except StoreUnavailable:
            self._failed_open[family].inc()
            return None
        if fits:
            return policy.allowed(ahead)
        self._limited[family].inc()
        raise policy.refused(ahead)

    def bucket(self, family: str, key: bytes) -> str:
        """The store's name of `key`'s bucket on `family`: a keyed hash, never the key."""
        name = self._names.get((family, key))
        if name is None:
            digest = hashlib.blake2b(key, key=self._hash_key, digest_size=16).hexdigest()
            name = rate_key(family, digest)
            self._names.put((family, key), name)
        return name


def stamp(response: Response, fields: RawHeaders | None) -> Response:
    """`response` with the rate limit fields of its request, if any."""
    if fields:
        response.raw_headers.extend(fields)
    return response


def attach(error: KairosError, fields: RawHeaders | None) -> None:
    """Give an error raised after its request was counted the fields of that count."""
    if fields:
        named = {name.decode(): value.decode() for name, value in fields}
        error.headers = {**(error.headers or {}), **named}


def _seconds(us: int) -> int:
    """Whole seconds, rounded up: a client waiting that long is never early."""
    return max(1, -(-us // US))

