"""The Redis key layout, all of it. Existing data depends on it: change it only with a
migration.

Every key of one reader carries the reader's id as a hash tag (`kairos:{u123}:profile`),
so all of them land in one slot: the layout works unchanged on Redis Cluster, and one
MULTI can cover every key of a reader.
"""

from __future__ import annotations

CATALOG_KEY = "kairos:catalog"  # hash: sku -> product JSON
POPULAR_KEY = "kairos:popular"  # sorted set: sku scored by negated popularity
CHANGES_CHANNEL = "kairos:changes"  # pub/sub: user ids changed, '*' for everyone
PICKS_TTL_S = 90 * 86400  # a campaign's slot picks outlive its clicks


def profile_key(user_id: str) -> str:
    """A string: the profile as JSON."""
    return f"kairos:{{{user_id}}}:profile"


def picks_key(user_id: str) -> str:
    """A hash: `pick_field(campaign, slot)` -> sku, expiring PICKS_TTL_S after a pick."""
    return f"kairos:{{{user_id}}}:picks"


def reader_keys(user_id: str) -> tuple[str, ...]:
    """Every key holding data about the reader, the profile first: what erasure deletes."""
    return profile_key(user_id), picks_key(user_id)
