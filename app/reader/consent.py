"""A reader's consent, as the profile records it: absent means given; stored data that
is not an object (the profile API never accepts one) means declined, the safe reading.

Three purposes: `personalization`, `tracking` and `email` (false once the reader
unsubscribed, app/routes/unsubscribe.py). Unsubscribing is leaving the email, not the
shop: nothing is sent to the reader, an old email they open shows generic content (every
surface that asks `personalized`: feeds, live images, renders), and their opens and
clicks are not recorded (`records`); their site and app events still are, as their
tracking consent says."""

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
    """False when the reader declined tracking: then links go straight to their target
    and their events are dropped."""
    return _given(profile, "tracking")


# What an email records of its reader: not kept for one who unsubscribed.
EMAIL_ENGAGEMENT = frozenset({"email_open", "email_click"})


def records(profile: Profile, event_type: str) -> bool:
    """Whether an event of `event_type` is kept for the reader: none when they declined
    tracking, and no email opens or clicks once they unsubscribed."""
    if not _given(profile, "tracking"):
        return False
    return event_type not in EMAIL_ENGAGEMENT or _given(profile, "email")
