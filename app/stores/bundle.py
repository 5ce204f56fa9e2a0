"""All the stores of one backend, chosen by the settings, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import Settings
from app.stores import memory
from app.stores.memory_campaigns import MemoryCampaigns
from app.stores.memory_events import MemoryEvents
from app.stores.memory_rates import MemoryRates
from app.stores.memory_recs import MemoryRecs
from app.stores.memory_segments import MemorySegments
from app.stores.protocols import (
    Backend,
    CampaignStore,
    CatalogStore,
    ChangeBus,
    EventStore,
    PickStore,
    ProfileStore,
    RateStore,
    RecsStore,
    Retention,
    SegmentStore,
)
from app.stores.redis.backend import RedisBackend
from app.stores.redis.bus import RedisBus
from app.stores.redis.campaigns import RedisCampaigns
from app.stores.redis.catalog import RedisCatalog
from app.stores.redis.connection import NAME as REDIS
from app.stores.redis.connection import RedisConnection
from app.stores.redis.events import RedisEvents
from app.stores.redis.picks import RedisPicks
from app.stores.redis.profiles import RedisProfiles
from app.stores.redis.rates import RedisRates
from app.stores.redis.recs import RedisRecs
from app.stores.redis.segments import RedisSegments

SEGMENTS_CAP = 100_000


@dataclass(frozen=True, slots=True)
class Stores:
    """One store per concern, all on one backend (`name`: "embedded" or "redis")."""

    name: str
    profiles: ProfileStore
    catalog: CatalogStore
    picks: PickStore
    events: EventStore
    bus: ChangeBus
    backend: Backend
    segments: SegmentStore
    campaigns: CampaignStore
    recs: RecsStore
    rates: RateStore

    async def erase(self, user_id: str, suppress: tuple[str, ...] = ()) -> bool:
        """Remove the reader from every store holding reader data (profile, picks, event
        data) and suppress `suppress`, at once: one MULTI on Redis, one event-loop step
        embedded. True if a profile existed. The reader leaves the campaign counts
        first (their keys are in the campaigns' slots, not the reader's): an erasure
        that fails there is retried whole."""
        await self.campaigns.forget(user_id)
        return await self.backend.erase(user_id, suppress)

    async def ping(self) -> None:
        await self.backend.ping()

    async def close(self) -> None:
        await self.backend.close()


def embedded_stores(
    retention: Retention | None = None, segments_cap: int = SEGMENTS_CAP
) -> Stores:
    profiles, picks = memory.MemoryProfiles(), memory.MemoryPicks()
    events = MemoryEvents(profiles, picks, retention)
    return Stores(
        name=memory.NAME,
        profiles=profiles,
        catalog=memory.MemoryCatalog(),
        picks=picks,
        events=events,
        bus=memory.LocalBus(),
        backend=memory.MemoryBackend(profiles, events, picks),
        segments=MemorySegments(segments_cap),
        campaigns=MemoryCampaigns(),
        recs=MemoryRecs(),
        rates=MemoryRates(),
    )


def redis_stores(
    url: str,
    *,
    timeout_s: float = 0.5,
    pool_size: int = 64,
    retention: Retention | None = None,
    segments_cap: int = SEGMENTS_CAP,
) -> Stores:
    """The Redis stores, sharing one pool of `pool_size` connections."""
    connection = RedisConnection(url, timeout_s=timeout_s, pool_size=pool_size)
    return Stores(
        name=REDIS,
        profiles=RedisProfiles(connection),
        catalog=RedisCatalog(connection),
        picks=RedisPicks(connection),
        events=RedisEvents(connection, retention),
        bus=RedisBus(connection),
        backend=RedisBackend(connection),
        segments=RedisSegments(connection, segments_cap),
        campaigns=RedisCampaigns(connection),
        recs=RedisRecs(connection),
        rates=RedisRates(connection),
    )


def build_stores(settings: Settings) -> Stores:
    """The Redis stores when REDIS_URL is set, else the embedded ones."""
    retention = Retention(
        dedupe_s=settings.dedupe_window_s,
        history_events=settings.history_events,
        history_s=settings.history_days * 86_400,
    )
    if settings.redis_url is not None:
        return redis_stores(
            settings.redis_url.reveal(),
            timeout_s=settings.redis_timeout_ms / 1000,
            pool_size=settings.redis_pool_size,
            retention=retention,
            segments_cap=settings.segments_stream_max,
        )
    return embedded_stores(retention, settings.segments_stream_max)
