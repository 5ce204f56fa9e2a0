"""A reader's consent, as the profile records it: absent means given; stored data that
is not an object (the profile API never accepts one) means declined, the safe reading.

Three purposes: `personalization`, `tracking` and `email` (false once the reader
unsubscribed, app/routes/unsubscribe.py). A reader who unsubscribed is read as having
declined the other two as well: nothing is sent to them, so nothing of theirs is used
or recorded for email, and every surface that asks `personalized` or `tracked` (feeds,
live images, the pixel and clicks through ingest) respects the opt-out without a check
of its own."""

from __future__ import annotations

from app.stores.protocols import Profile

PURPOSES = ("personalization", "tracking", "email")


def _given(profile: Profile, purpose: str) -> bool:
    consent = profile.get("consent")
    if consent is None:
        return True
    return type(consent) is dict and consent.get(purpose, True) is not False


def subscribed(profile: Profile) -> bool:
    """False once the reader unsubscribed: a render has nothing to send them."""
    return _given(profile, "email")


def personalized(profile: Profile) -> bool:
    """False when the reader declined personalization (or unsubscribed): then no
    behavioural data is used."""
    return _given(profile, "personalization") and _given(profile, "email")


def tracked(profile: Profile) -> bool:
    """False when the reader declined tracking (or unsubscribed): then links go straight
    to their target and their events are dropped."""
    return _given(profile, "tracking") and _given(profile, "email")
