"""The Redis key layout, all of it. Existing data depends on it: change it only with a
migration.

Every key of one reader carries the reader's id as a hash tag (`kairos:{u123}:profile`),
so all of them land in one slot: the layout works unchanged on Redis Cluster, and one
MULTI can cover every key of a reader. Every key of one campaign is tagged
`{campaign/NAME}` the same way: a `/` is never in a reader id, so a campaign's keys never
pass for a reader's (`kairos erase --verify` scans for `{USER}`).
"""

from __future__ import annotations

CATALOG_KEY = "kairos:catalog"  # hash: sku -> product JSON
POPULAR_KEY = "kairos:popular"  # sorted set: sku scored by negated popularity
CHANGES_CHANNEL = "kairos:changes"  # pub/sub: user ids changed, one a line; '*' for everyone
EVENTS_CHANNEL = "kairos:events"  # pub/sub: the events each reader write applied, one a line
AUDIT_KEY = "kairos:audit:erasures"  # stream: one entry per erasure, readers by keyed hash
AUDIT_CAP = 100_000
PICKS_TTL_S = 90 * 86400  # a campaign's slot picks outlive its clicks
CAMPAIGNS_KEY = "kairos:campaigns"  # sorted set: campaign -> when it was last counted (ms)
CAMPAIGN_TTL_S = 90 * 86400  # a campaign's counts outlive its last send, open or click


# Recommendations: counts over all readers, naming none. Each product's neighbours are a
# key of their own in the product's slot, tagged `{sku=...}`: no user id holds "=", so no
# reader's `{id}` tag (what `kairos erase --verify` scans for) can match it.
RECS_ITEMS_KEY = "kairos:recs:items"  # sorted set: sku -> its own weighted count


def related_key(sku: str) -> str:
    """A sorted set: neighbour sku -> weighted co-occurrence with `sku` (capped)."""
    return f"kairos:recs:{{sku={sku}}}:related"


def segment_popular_key(segment: str) -> str:
    """A sorted set: sku -> weighted count among the segment's readers (capped)."""
    return f"kairos:recs:{{seg={segment}}}:popular"


def profile_key(user_id: str) -> str:
    """A string: the profile as JSON."""
    return f"kairos:{{{user_id}}}:profile"


def picks_key(user_id: str) -> str:
    """A hash: `pick_field(campaign, slot)` -> sku, expiring PICKS_TTL_S after a pick."""
    return f"kairos:{{{user_id}}}:picks"


def seen_key(user_id: str) -> str:
    """A sorted set: event id -> when it was applied (ms), for dedupe within the window."""
    return f"kairos:{{{user_id}}}:seen"


def history_key(user_id: str) -> str:
    """A sorted set: event JSON -> the event's time (ms), the reader's kept history."""
    return f"kairos:{{{user_id}}}:history"


def links_key(user_id: str) -> str:
    """A set: the ids merged into this user (what erasure follows)."""
    return f"kairos:{{{user_id}}}:links"


def alias_key(user_id: str) -> str:
    """A string: the user this reader was merged into."""
    return f"kairos:{{{user_id}}}:alias"


def suppressed_key(slot_tag: str) -> str:
    """A set of keyed hashes of erased, suppressed readers. There is one per hash slot,
    named by a tag that lands in that slot (`RedisConnection.slot_tag`), so a reader's
    writes check it atomically without the key naming the reader."""
    return f"kairos:suppressed:{{{slot_tag}}}"


def script_keys(user_id: str, slot_tag: str) -> tuple[str, str, str, str, str, str]:
    """The keys the event scripts take: profile, seen, history, links, alias, and the
    suppression set (the functions above, spelled once: this is on every event's path)."""
    tag = f"kairos:{{{user_id}}}:"
    suppressed = f"kairos:suppressed:{{{slot_tag}}}"
    return tag + "profile", tag + "seen", tag + "history", tag + "links", tag + "alias", suppressed


def event_keys(user_id: str) -> tuple[str, ...]:
    """The keys of the reader's event data."""
    return seen_key(user_id), history_key(user_id), links_key(user_id), alias_key(user_id)


def reader_keys(user_id: str) -> tuple[str, ...]:
    """Every key holding data about the reader, the profile first: what erasure deletes."""
    return profile_key(user_id), picks_key(user_id), *event_keys(user_id)


# Segment membership is shared by all readers: its keys carry one hash tag, so the
# record script covers them atomically on Redis Cluster too (on one node of it).
SEGMENTS_TAG = "kairos:{segments}:"
SEGMENT_OF_KEY = SEGMENTS_TAG + "of"  # hash: user id -> JSON list of recorded segments
SEGMENT_COUNTS_KEY = SEGMENTS_TAG + "counts"  # hash: segment -> members
SEGMENT_DUE_KEY = SEGMENTS_TAG + "due"  # sorted set: user id by due time (ms)
SEGMENT_CHANGES_KEY = SEGMENTS_TAG + "changes"  # stream: entries and exits


def campaign_key(campaign: str, part: str) -> str:
    """A key of the campaign: `weights` (a string: the declared weights as JSON, in the
    template's order), `variants` (a set: the variants counted), or `TALLY:VARIANT` (a
    set: the readers counted). Every one expires CAMPAIGN_TTL_S after its last write."""
    return f"kairos:{{campaign/{campaign}}}:{part}"


def rate_key(family: str, key_hash: str) -> str:
    """A string: the theoretical arrival time (µs, Redis's clock) of the next request of
    one key on one family of routes (`app/ratelimit.py`), expiring once it is past.
    Named by a keyed hash of the API or write key, never the key (KEYS and MONITOR show
    names), and without a `{tag}`: one key a call, no slot to share."""
    return f"kairos:rate:{family}:{key_hash}"
