"""Campaign counts on Redis: a set of readers per campaign, tally and variant, every key
of a campaign in the campaign's hash slot; one pipelined round trip per batch of marks.

Erasure walks the campaigns counted within `CAMPAIGN_TTL_S` (the `kairos:campaigns`
index; older ones have expired whole) and removes the reader from each of their sets:
no index per reader is kept, and a set never outlives its campaign's entry there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from app.errors import CorruptData
from app.stores.protocols import CampaignData, Mark, Tally
from app.stores.redis.connection import NAME, RedisConnection, loads, text
from app.stores.redis.keys import CAMPAIGN_TTL_S, CAMPAIGNS_KEY, campaign_key


class RedisCampaigns:
    name = NAME

    def __init__(self, connection: RedisConnection) -> None:
        self._connection = connection
        self._redis = connection.redis

    async def add(
        self, marks: Sequence[Mark], weights: Mapping[str, Mapping[str, int]], now_ms: int
    ) -> None:
        cells: dict[str, dict[tuple[Tally, str], set[str]]] = {}
        for mark in marks:
            cell = cells.setdefault(mark.campaign, {})
            cell.setdefault((mark.tally, mark.variant), set()).add(mark.user_id)
        for campaign in weights:
            cells.setdefault(campaign, {})
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign, sets in cells.items():
                    variants = {variant for _, variant in sets}
                    for (tally, variant), readers in sets.items():
                        pipe.sadd(campaign_key(campaign, f"{tally}:{variant}"), *readers)
                    if variants:
                        pipe.sadd(campaign_key(campaign, "variants"), *variants)
                    if campaign in weights:
                        pipe.set(campaign_key(campaign, "weights"), orjson.dumps(weights[campaign]))
                    # Every set of the variants written lives as long as the others: the
                    # figures of a variant never lose their sends before their clicks.
                    for part in ("weights", "variants"):
                        pipe.expire(campaign_key(campaign, part), CAMPAIGN_TTL_S)
                    for variant in variants:
                        for tally in Tally:
                            pipe.expire(
                                campaign_key(campaign, f"{tally}:{variant}"), CAMPAIGN_TTL_S
                            )
                    pipe.zadd(CAMPAIGNS_KEY, {campaign: now_ms})
                pipe.zremrangebyscore(CAMPAIGNS_KEY, "-inf", now_ms - CAMPAIGN_TTL_S * 1000)
                await pipe.execute()

    async def campaign(self, campaign: str) -> CampaignData | None:
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(campaign_key(campaign, "weights"))
                pipe.smembers(campaign_key(campaign, "variants"))
                raw, counted = await pipe.execute()
        if raw is None and not counted:
            return None
        weights = {} if raw is None else loads(raw)
        if not isinstance(weights, dict) or not all(isinstance(w, int) for w in weights.values()):
            raise CorruptData(f"campaign {campaign!r}: its weights are not a JSON object")
        names = [*weights, *sorted({text(v) for v in counted} - set(weights))]
        async with self._connection.unavailable():
            async with self._redis.pipeline(transaction=False) as pipe:
                for variant in names:
                    for tally in Tally:
                        pipe.scard(campaign_key(campaign, f"{tally}:{variant}"))
                sizes = iter(await pipe.execute())
        counts = {variant: {tally: int(next(sizes)) for tally in Tally} for variant in names}
        return CampaignData(weights, counts)

    async def forget(self, user_id: str) -> None:
        async with self._connection.unavailable():
            campaigns = [text(c) for c in await self._redis.zrange(CAMPAIGNS_KEY, 0, -1)]
            if not campaigns:
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign in campaigns:
                    pipe.smembers(campaign_key(campaign, "variants"))
                variants = await pipe.execute()
            async with self._redis.pipeline(transaction=False) as pipe:
                for campaign, names in zip(campaigns, variants, strict=True):
                    for variant in names:
                        for tally in Tally:
                            key = campaign_key(campaign, f"{tally}:{text(variant)}")
                            pipe.srem(key, user_id)
                await pipe.execute()
