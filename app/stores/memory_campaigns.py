"""Campaign counts in process: a set of readers per campaign, tally and variant. A
campaign not counted in for `CAMPAIGN_TTL_S` is dropped at the next count, as Redis
expires it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.stores.memory import NAME
from app.stores.protocols import CampaignData, Mark, Tally
from app.stores.redis.keys import CAMPAIGN_TTL_S


@dataclass(slots=True)
class _Campaign:
    touched_ms: int
    weights: dict[str, int] = field(default_factory=dict)
    sets: dict[tuple[Tally, str], set[str]] = field(default_factory=dict)


class MemoryCampaigns:
    name = NAME

    def __init__(self) -> None:
        self._campaigns: dict[str, _Campaign] = {}

    async def add(
        self, marks: Sequence[Mark], weights: Mapping[str, Mapping[str, int]], now_ms: int
    ) -> None:
        idle = now_ms - CAMPAIGN_TTL_S * 1000
        for name in [n for n, c in self._campaigns.items() if c.touched_ms < idle]:
            del self._campaigns[name]
        for mark in marks:
            campaign = self._campaign(mark.campaign, now_ms)
            campaign.sets.setdefault((mark.tally, mark.variant), set()).add(mark.user_id)
        for name, declared in weights.items():
            self._campaign(name, now_ms).weights = dict(declared)

    def _campaign(self, name: str, now_ms: int) -> _Campaign:
        campaign = self._campaigns.get(name)
        if campaign is None:
            campaign = self._campaigns[name] = _Campaign(now_ms)
        campaign.touched_ms = now_ms
        return campaign

    async def campaign(self, campaign: str) -> CampaignData | None:
        found = self._campaigns.get(campaign)
        if found is None:
            return None
        counted = {variant for _, variant in found.sets}
        names = [*found.weights, *sorted(counted - set(found.weights))]
        counts = {
            variant: {tally: len(found.sets.get((tally, variant), ())) for tally in Tally}
            for variant in names
        }
        return CampaignData(dict(found.weights), counts)

    async def forget(self, user_id: str) -> None:
        for campaign in self._campaigns.values():
            for readers in campaign.sets.values():
                readers.discard(user_id)
