"""A campaign's A/B report from its stored counts: the variants in the template's order,
the control chosen, then the figures of `stats.campaign_report`."""

from __future__ import annotations

from typing import Any

from app.campaigns.stats import VariantCounts, campaign_report
from app.errors import Unprocessable
from app.stores.protocols import CampaignData, Tally

MIN_SAMPLE = 100


def default_control(data: CampaignData) -> str:
    """The first variant the template declares with a weight above 0 (a variant weighted
    0 is paused: never sent, nothing to compare against); else the first counted."""
    for name, weight in data.weights.items():
        if weight > 0:
            return name
    return next(iter(data.counts))


def report(
    campaign: str, data: CampaignData, *, control: str | None = None, min_sample: int = MIN_SAMPLE
) -> dict[str, Any]:
    """The JSON-ready report; `control` overrides the default one (422 if unknown)."""
    chosen = default_control(data) if control is None else control
    if chosen not in data.counts:
        raise Unprocessable(
            f"control: {chosen!r} is not a variant of this campaign", field="control"
        )
    variants = [
        VariantCounts(
            variant=name,
            weight=data.weights.get(name, 0),
            sends=counts[Tally.SENDS],
            human_opens_unique=counts[Tally.OPENS],
            machine_opens=counts[Tally.MACHINE_OPENS],
            clicks_unique=counts[Tally.CLICKS],
            machine_clicks=counts[Tally.MACHINE_CLICKS],
        )
        for name, counts in data.counts.items()
    ]
    return {"campaign": campaign, **campaign_report(chosen, variants, min_sample)}
