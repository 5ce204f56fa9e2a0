"""A reader's consent, as the profile records it (absent, or not an object as stored
data can be, means given: what the profile API accepts is always an object)."""

from __future__ import annotations

from typing import Any

Profile = dict[str, Any]


def personalized(profile: Profile) -> bool:
    """False when the reader declined personalization: then no behavioural data is used."""
    consent = profile.get("consent")
    return type(consent) is not dict or consent.get("personalization", True) is not False


def tracked(profile: Profile) -> bool:
    """False when the reader declined tracking: then links go straight to their target."""
    consent = profile.get("consent")
    return type(consent) is not dict or consent.get("tracking", True) is not False
