"""A/B variants: deterministic per (campaign, reader), weighted as the template says."""

from __future__ import annotations

import hashlib


def assign(variants: dict[str, int], campaign: str, user_id: str) -> str:
    """The variant `user_id` gets in `campaign`: the same every time, spread by weight."""
    total = sum(variants.values())
    digest = hashlib.blake2b(f"{campaign}\x00{user_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") % total
    for name, weight in variants.items():
        if point < weight:
            return name
        point -= weight
    raise AssertionError("weights must add up to the total")
