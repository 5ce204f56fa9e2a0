"""Money, numbers and dates in one language's conventions (CLDR rules, through Babel).

A template declares its language (`"language": "de-DE"`); its `Formats` is built once,
when the template is compiled, so a render never parses a locale or a pattern, and what
it formats is kept (bounded): the prices of a catalog repeat from reader to reader.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.numbers import parse_pattern

from app.caching import Bounded

DEFAULT_LANGUAGE = "en"
MEMO_SIZE = 20_000
# BCP 47's shape (language, then subtags): what may stand in `<html lang="...">`.
TAG = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8}){0,6}")
MAX_TIMEZONE = 64
# Numbers without a currency, as money: two decimals.
PLAIN_MONEY = "#,##0.00"
# CLDR's currency spacing, which Babel leaves out: a currency written in letters is
# kept apart from its digits ("CHF 12.00", not "CHF12.00").
LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


class LanguageError(ValueError):
    """Not a language tag Babel knows (BCP 47, e.g. `en-GB`)."""


def parse_language(tag: object) -> Locale:
    """The locale of a BCP 47 tag (`en-GB`, `ar`, `zh-Hant-TW`), or `LanguageError`."""
    if not isinstance(tag, str) or not TAG.fullmatch(tag):
        raise LanguageError(f"{tag!r} is not a BCP 47 language tag such as 'en-GB'")
    try:
        return Locale.parse(tag, sep="-")
    except (ValueError, UnknownLocaleError):
        raise LanguageError(f"{tag!r} is not a language Babel knows") from None


def zone_of(name: object) -> tzinfo | None:
    """The IANA time zone `name` ('Europe/Berlin'), or None when it is not one."""
    if isinstance(name, str) and 0 < len(name) <= MAX_TIMEZONE:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # 'Europe' is a directory
            pass
    return None


def timezone(name: object) -> tzinfo:
    """The reader's time zone (profile `timezone`); UTC when absent or not an IANA name."""
    return zone_of(name) or UTC


class Formats:
    """Money, numbers and date-times as readers of `language` write them."""

    __slots__ = ("_currency", "_datetime", "_decimal", "_memo", "_plain", "language", "locale")

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language
        self.locale = locale = parse_language(language)
        self._currency = parse_pattern(locale.currency_formats["standard"])
        self._decimal = parse_pattern(locale.decimal_formats[None])
        self._plain = parse_pattern(PLAIN_MONEY)
        # A long date and a short time, as the locale joins them; then the zone.
        self._datetime = (
            str(locale.datetime_formats["medium"])
            .replace("{1}", locale.date_formats["long"].pattern)
            .replace("{0}", locale.time_formats["short"].pattern)
        )
        self._memo: Bounded[tuple[object, ...], str] = Bounded(MEMO_SIZE)

    @property
    def rtl(self) -> bool:
        """Whether the language is written right to left."""
        return bool(self.locale.character_order == "right-to-left")

    def money(self, amount: float, currency: str | None) -> str:
        """`amount` in `currency` ("€1,234.50", "1.234,50 €"); without a currency, the
        number with two decimals."""
        key = ("money", amount, currency)
        found = self._memo.get(key)
        if found is None:
            if currency is None:
                found = self._plain.apply(amount, self.locale)
            else:
                found = self._currency.apply(amount, self.locale, currency=currency)
                found = LETTER_DIGIT.sub("\xa0", found)
            self._memo.put(key, found)
        return found

    def number(self, value: float, decimals: int = 0) -> str:
        """`value` with the locale's separators, rounded to `decimals` places."""
        key = ("number", value, decimals)
        found = self._memo.get(key)
        if found is None:
            pattern = self._decimal
            if decimals:
                pattern = parse_pattern("#,##0." + "0" * decimals)
            found = pattern.apply(round(value, decimals) if decimals else round(value), self.locale)
            self._memo.put(key, found)
        return found

    def datetime(self, moment: datetime, zone: tzinfo) -> str:
        """`moment` (aware) in time zone `zone`: a long date, a short time and the
        zone's short name where the language has one, else its offset from GMT:
        "24 December 2026, 23:59 GMT", "25. Dezember 2026, 00:59 MEZ",
        "December 25, 2026, 12:59 AM GMT+01:00", "December 24, 2026, 11:59 PM GMT"."""
        key = ("datetime", moment, zone)
        found = self._memo.get(key)
        if found is None:
            at = format_datetime(moment, self._datetime, tzinfo=zone, locale=self.locale)
            name = format_datetime(moment, "z", tzinfo=zone, locale=self.locale)
            if name[:1] in "+-":  # no name in this language: "+0100"
                name = format_datetime(moment, "ZZZZ", tzinfo=zone, locale=self.locale)
                name = name.removesuffix("+00:00")  # CLDR's zero offset: "GMT"
            found = f"{at} {name}"
            self._memo.put(key, found)
        return found
