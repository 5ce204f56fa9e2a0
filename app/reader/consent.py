"""A reader's consent, as the profile records it: absent means given; stored data that
is not an object (the profile API never accepts one) means declined, the safe reading."""

from __future__ import annotations

from app.stores.protocols import Profile


def _given(profile: Profile, purpose: str) -> bool:
    consent = profile.get("consent")
    if consent is None:
        return True
    return type(consent) is dict and consent.get(purpose, True) is not False


def personalized(profile: Profile) -> bool:
    """False when the reader declined personalization: then no behavioural data is used."""
    return _given(profile, "personalization")


def tracked(profile: Profile) -> bool:
    """False when the reader declined tracking: then links go straight to their target."""
    return _given(profile, "tracking")
