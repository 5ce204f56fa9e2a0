"""Money, numbers and date-times in a template's language (app/reader/formats.py):
CLDR's rules through Babel, parsed once per language, never per call."""

from __future__ import annotations

from datetime import UTC, datetime

import babel
import pytest

from app.reader.formats import Formats, LanguageError, parse_language, timezone

NBSP = "\xa0"
EVE = datetime(2026, 12, 24, 23, 59, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("language", "amount", "currency", "shown"),
    [
        ("en", 39, "EUR", "€39.00"),
        ("en-GB", 1234.5, "EUR", "€1,234.50"),
        ("de-DE", 1234.5, "EUR", f"1.234,50{NBSP}€"),
        ("fr-FR", 1234.5, "EUR", f"1\u202f234,50{NBSP}€"),
        ("en", 4500, "JPY", "¥4,500"),
        ("en", 12, "CHF", f"CHF{NBSP}12.00"),
        ("de-CH", 12, "CHF", f"CHF{NBSP}12.00"),
        ("en", 39, None, "39.00"),
        ("de-DE", 39, None, "39,00"),
    ],
)
def test_money(language: str, amount: float, currency: str | None, shown: str):
    assert Formats(language).money(amount, currency) == shown


def test_numbers_and_direction():
    assert Formats("en").number(1234567) == "1,234,567"
    assert Formats("de-DE").number(1234567) == "1.234.567"
    assert Formats("en-GB").number(1234.567, 2) == "1,234.57"
    assert Formats("ar").rtl and Formats("he").rtl and Formats("fa-IR").rtl
    assert not Formats("en").rtl and not Formats("zh-Hant-TW").rtl


@pytest.mark.parametrize(
    ("language", "zone", "shown"),
    [
        ("en-GB", "UTC", "24 December 2026, 23:59 UTC"),
        ("en-GB", "Europe/London", "24 December 2026, 23:59 GMT"),
        ("de-DE", "Europe/Berlin", "25. Dezember 2026, 00:59 MEZ"),
        ("en", "Asia/Tokyo", "December 25, 2026, 8:59\u202fAM GMT+09:00"),
        ("en", "Europe/London", "December 24, 2026, 11:59\u202fPM GMT"),
    ],
)
def test_date_times_in_the_readers_time_zone(language: str, zone: str, shown: str):
    assert Formats(language).datetime(EVE, timezone(zone)) == shown


def test_a_missing_or_bad_time_zone_is_utc():
    for name in (None, "", "Not/AZone", "Europe", "x" * 100, 5):
        assert timezone(name) is UTC


@pytest.mark.parametrize("tag", ["", "xx", "en_GB", "en GB", '"><script>', 5, None])
def test_a_tag_babel_does_not_know_is_refused(tag: object):
    with pytest.raises(LanguageError):
        parse_language(tag)


def test_formatting_parses_no_locale_per_call(monkeypatch):
    formats = Formats("de-DE")
    first = formats.money(12.5, "EUR"), formats.datetime(EVE, timezone("Europe/Berlin"))

    def parse(identifier: object, *args: object, **kwargs: object) -> object:
        if isinstance(identifier, babel.Locale):
            return identifier  # what Babel does with a Locale: nothing to parse
        raise AssertionError(f"{identifier!r} parsed on the render path")

    monkeypatch.setattr(babel.Locale, "parse", parse)
    # The same values (kept) and new ones (from the patterns parsed at construction).
    assert (formats.money(12.5, "EUR"), formats.datetime(EVE, timezone("Europe/Berlin"))) == first
    assert formats.money(99, "EUR") == f"99,00{NBSP}€"
    assert formats.money(7, None) == "7,00"
    assert formats.number(1234) == "1.234"
    assert formats.datetime(EVE, UTC) == "24. Dezember 2026, 23:59 UTC"
