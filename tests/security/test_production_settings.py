"""Production refuses settings an attacker would love: a sender allow-list open to any
domain, signing keys that are not random (one repeated character, a placeholder), and a
signing key that is also an API or write key."""

from __future__ import annotations

import pytest

from app.settings import ConfigError, Settings

SECRET = "q7Lm2Vx9Rt4Kp8Nw3Zb6Hc1Jd5Fg0Ys2Ea"
API_KEY = "Zr8Qw2Lp5Tn9Vx3Km7Hb"
GOOD = {
    "KAIROS_ENV": "production",
    "KAIROS_SECRET_KEYS": SECRET,
    "KAIROS_API_KEYS": API_KEY,
    "KAIROS_PUBLIC_URL": "https://kairos.example.com",
    "KAIROS_AMP_SENDERS": "*@news.example.com,deals@shop.example.com",
}

REFUSED = {
    "any sender": ({"KAIROS_AMP_SENDERS": "*"}, "allows any domain"),
    "any sender at any domain": ({"KAIROS_AMP_SENDERS": "*@*"}, "allows any domain"),
    "a wildcard domain": ({"KAIROS_AMP_SENDERS": "news@*.example.com"}, "allows any domain"),
    "one of several": ({"KAIROS_AMP_SENDERS": "*@news.example.com,*"}, "allows any domain"),
    "one repeated character": ({"KAIROS_SECRET_KEYS": "a" * 40}, "distinct characters"),
    "two characters": ({"KAIROS_SECRET_KEYS": "ab" * 20}, "distinct characters"),
    "a placeholder": (
        {"KAIROS_SECRET_KEYS": "change-me-to-a-long-random-string-0123"},
        "placeholder",
    ),
    "the README's example": (
        {"KAIROS_SECRET_KEYS": "your-secret-key-of-32-characters-or-more"},
        "placeholder",
    ),
    "a second key weak": ({"KAIROS_SECRET_KEYS": f"{SECRET},{'x' * 40}"}, "entry 2"),
    "an API key that signs": (
        {"KAIROS_API_KEYS": SECRET},
        "KAIROS_API_KEYS entry equals a signing key",
    ),
    "a write key that signs": (
        {"KAIROS_WRITE_KEYS": SECRET},
        "KAIROS_WRITE_KEYS entry equals a signing key",
    ),
}


def test_good_production_settings_start():
    assert Settings.from_env(GOOD).production


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_refused(case):
    changes, message = case
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({**GOOD, **changes})
    # The message names the setting, never the key itself.
    assert SECRET not in str(info.value)
    for value in changes.values():
        if "KEYS" in str(info.value) and len(value) >= 32:
            assert value not in str(info.value)
