"""A reader's too-long fields cut to fit at render time (app/profiles/fit.py): names and
titles shortened without splitting a user-perceived character, values that mean
nothing once cut dropped, reported by path and never by value, and the profile given
left untouched (profiles are shared by renders)."""

from __future__ import annotations

import copy
import unicodedata

import pytest

from app.errors import Unprocessable
from app.profiles.fit import Cut, fit, shorten
from app.profiles.schema import CART_MAX_CHARS, MAX_CHARS, inline_profile

E_ACUTE = "e\u0301"  # e and a combining acute accent: one letter
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # man ZWJ woman ZWJ girl: one emoji
WAVE = "\U0001f44b\U0001f3fd"  # waving hand and a skin tone
FLAG_FR = "\U0001f1eb\U0001f1f7"  # two regional indicators: one flag


@pytest.mark.parametrize(
    ("unit", "name"),
    [(E_ACUTE, "combining mark"), (FAMILY, "ZWJ sequence"), (WAVE, "skin tone"), (FLAG_FR, "flag")],
)
def test_shortening_never_splits_a_character(unit: str, name: str):
    for prefix in range(0, 12):
        text = "a" * prefix + unit * 40
        for limit in range(2, 30):
            cut = shorten(text, limit)
            assert len(cut) <= limit and cut.endswith("…"), (name, prefix, limit)
            body = cut[:-1]
            # What is kept is whole units after the prefix: nothing half of one.
            rest = body[min(prefix, len(body)) :]
            assert rest == unit * (len(rest) // len(unit)), (name, prefix, limit, cut)


def test_shortening_keeps_short_text_and_cuts_long_text_to_the_limit():
    assert shorten("Ada", 100) == "Ada"
    assert shorten("A" * 100, 100) == "A" * 100
    assert shorten("A" * 101, 100) == "A" * 99 + "…"
    decomposed = unicodedata.normalize("NFD", "é" * 150)
    cut = shorten(decomposed, 100)
    assert not unicodedata.combining(cut[0]) and cut[-2] == "\u0301"


def test_fit_cuts_names_drops_what_cannot_be_cut_and_reports_paths_only():
    long_name = "Ada" * 3334
    profile = {
        "first_name": long_name,
        "last_name": "Lovelace",
        "email": "ada@" + "x" * 300 + ".org",
        "timezone": "Europe/" + "x" * 100,
        "cart": [
            {"sku": "SKU-1", "title": "T" * 500, "url": "https://x.example/" + "a" * 3000},
            {"sku": "S" * 65},
            {"sku": "SKU-2", "qty": 2},
        ],
    }
    before = copy.deepcopy(profile)
    fitted, cuts = fit(profile)
    assert profile == before  # never changed in place
    assert fitted["first_name"] == long_name[: MAX_CHARS["first_name"] - 1] + "…"
    assert fitted["last_name"] == "Lovelace"
    assert "email" not in fitted and "timezone" not in fitted
    assert fitted["cart"] == [
        {"sku": "SKU-1", "title": "T" * (CART_MAX_CHARS["title"] - 1) + "…"},
        {"sku": "SKU-2", "qty": 2},
    ]
    assert cuts == (
        Cut("first_name", "truncated"),
        Cut("email", "dropped"),
        Cut("timezone", "dropped"),
        Cut("cart[0].title", "truncated"),
        Cut("cart[0].url", "dropped"),
        Cut("cart[1]", "dropped"),
    )
    # What is cut then passes the schema the profiles API applies.
    inline_profile(dict(fitted))


def test_a_profile_that_fits_is_the_same_object():
    profile = {"first_name": "Ada", "cart": [{"sku": "SKU-1", "title": "Lamp"}]}
    fitted, cuts = fit(profile)
    assert fitted is profile and cuts == ()
    assert fit({})[1] == () and fit({"cart": "not a list", "first_name": 5})[1] == ()


def test_render_requests_let_long_text_through_and_the_profiles_api_does_not():
    doc = {"first_name": "A" * 101, "cart": [{"sku": "SKU-1", "title": "T" * 201}]}
    kept = inline_profile(doc, render=True)
    assert kept["first_name"] == "A" * 101 and kept["cart"][0]["title"] == "T" * 201
    with pytest.raises(Unprocessable, match="at most 100 characters"):
        inline_profile(doc)
    # Only length is let through: a wrong type or format is still refused.
    for bad in ({"first_name": 5}, {"cart": [{"sku": "bad sku!"}]}, {"email": "not-an-address"}):
        with pytest.raises(Unprocessable, match="must|invalid"):
            inline_profile(bad, render=True)
