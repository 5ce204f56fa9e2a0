"""Feed builders for AMP `<amp-list>`: one small module per feed, registered here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from app.feeds.base import FeedBuilder, FeedContext
from app.feeds.cart import build_cart
from app.feeds.profile import build_profile
from app.feeds.recommendations import build_recommendations

FEEDS: Mapping[str, FeedBuilder] = MappingProxyType(
    {
        "profile": build_profile,
        "cart": build_cart,
        "recommendations": build_recommendations,
    }
)

# Feeds made of behavioural data: readers who declined personalization get the fallback.
PERSONAL_FEEDS = frozenset({"cart"})

__all__ = ["FEEDS", "PERSONAL_FEEDS", "FeedBuilder", "FeedContext"]
