"""The countdown's words in the reader's language and time zone: the unit labels from
CLDR (Babel), and the end time ("Ends Friday 12 December, 18:00 CET", "Endet Freitag,
12. Dezember, 18:00 MEZ") in the reader's time zone, from the profile's `locale` and
`timezone`, else the image's own (the template's), else English and UTC."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from types import MappingProxyType
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import (
    format_time,
    get_timezone_gmt,
    get_timezone_name,
    match_skeleton,
    parse_pattern,
)
from babel.units import get_unit_name

from app.images.base import ParamError
from app.reader.formats import zone_of

UNIT_NAMES = ("duration-day", "duration-hour", "duration-minute", "duration-second")
# "Ends {when}" and "This offer has ended" per language (CLDR has no such phrases);
# another language shows the end time alone, and the English "ended" text.
PHRASES = MappingProxyType(
    {
        "en": ("Ends {when}", "This offer has ended"),
        "de": ("Endet {when}", "Dieses Angebot ist beendet"),
        "fr": ("Se termine {when}", "Cette offre est terminée"),
        "es": ("Termina {when}", "Esta oferta ha terminado"),
        "it": ("Termina {when}", "Questa offerta è terminata"),
        "nl": ("Eindigt {when}", "Deze aanbieding is afgelopen"),
        "pt": ("Termina {when}", "Esta oferta terminou"),
        "pl": ("Koniec: {when}", "Ta oferta się zakończyła"),
        "sv": ("Slutar {when}", "Erbjudandet har upphört"),
        "da": ("Slutter {when}", "Tilbuddet er udløbet"),
        "ru": ("Завершится {when}", "Предложение завершено"),
        "el": ("Λήγει {when}", "Η προσφορά έληξε"),
        "ar": ("ينتهي {when}", "انتهى هذا العرض"),
        "he": ("מסתיים {when}", "המבצע הסתיים"),
        "ja": ("終了 {when}", "このセールは終了しました"),
        "zh": ("结束时间 {when}", "本优惠已结束"),
        "ko": ("종료 {when}", "이 혜택은 종료되었습니다"),
    }
)
WEEKDAY = re.compile(r"E{1,4}|c{1,4}")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a reader reads: a locale and a time zone (both checked)."""

    locale: Locale
    zone: tzinfo
    zone_name: str


@dataclass(frozen=True, slots=True)
class Words:
    labels: tuple[str, ...]
    until: str  # the end-time line; empty: none
    ended: str


def parse_locale(raw: Any) -> Locale | None:
    """A Babel locale for 'de-DE' or 'de_DE', or None."""
    if not isinstance(raw, str) or not 2 <= len(raw) <= 35:
        return None
    try:
        return Locale.parse(raw.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


def parse_zone(raw: Any) -> tzinfo | None:
    """An IANA time zone ('Europe/Berlin'), or None."""
    return UTC if raw == "UTC" else zone_of(raw)


def check_locale(name: str, raw: str) -> str:
    """`raw` if Babel knows the locale, else `ParamError`."""
    if parse_locale(raw) is None:
        raise ParamError(f"{name} must be a locale such as en-GB, not {raw!r}")
    return raw


def check_zone(name: str, raw: str) -> str:
    """`raw` if it is an IANA time zone, else `ParamError`."""
    if parse_zone(raw) is None:
        raise ParamError(f"{name} must be an IANA time zone such as Europe/London, not {raw!r}")
    return raw


def place(profile: Any, locale: str, zone: str) -> Place:
    """The reader's place: the profile's `locale` and `timezone` where valid, else the
    image's `locale` and `zone` (checked when parsed)."""
    fields = profile if isinstance(profile, dict) else {}
    found = parse_locale(fields.get("locale")) or parse_locale(locale) or Locale("en")
    tz_name = fields.get("timezone")
    tz = parse_zone(tz_name)
    if tz is None:
        tz_name, tz = zone, parse_zone(zone) or UTC
    return Place(found, tz, str(tz_name))


def warm() -> None:
    """Loads English's CLDR data (Babel reads a locale's on its first use): at start-up,
    not at the first open."""
    where = place({}, "en", "UTC")
    labels(where.locale)
    end_time(0, where)


def labels(locale: Locale) -> tuple[str, ...]:
    """DAYS, HOURS, MINUTES, SECONDS in `locale` (CLDR's unit names, upper case)."""
    out = []
    for unit in UNIT_NAMES:
        name = get_unit_name(unit, length="long", locale=locale) or unit.split("-")[1] + "s"
        out.append(name.upper())
    return tuple(out)


def end_time(deadline: int, where: Place) -> str:
    """The deadline as a reader there reads it: weekday, day and month, time, zone."""
    locale = where.locale
    when = datetime.fromtimestamp(deadline, UTC).astimezone(where.zone)
    skeletons = locale.datetime_skeletons
    skeleton = match_skeleton("MMMMEEEEd", skeletons) or "MMMMEd"
    pattern = getattr(skeletons[skeleton], "pattern", str(skeletons[skeleton]))
    # CLDR's closest pattern may abbreviate the weekday: spell it out.
    pattern = WEEKDAY.sub("EEEE", pattern)
    day = parse_pattern(pattern).apply(when, locale)
    clock = format_time(when, "short", tzinfo=where.zone, locale=locale)
    zone = get_timezone_name(when, "short", locale=locale, zone_variant=None)
    if zone[:1] in "+-" or not zone:
        zone = get_timezone_gmt(when, "long", locale=locale)
    combined = str(locale.datetime_formats.get("medium", "{1}, {0}"))
    return combined.replace("{1}", day).replace("{0}", clock) + " " + zone


def words(params: dict[str, Any], deadline: int, where: Place) -> Words:
    """The countdown's words: the designer's where given (`labels`, `until`, `ended`),
    else the reader's language's."""
    language = where.locale.language
    phrase, ended = PHRASES.get(language, ("{when}", PHRASES["en"][1]))
    given = params["labels"]
    shown = given if given is not None else labels(where.locale)
    until = params["until"] if params["until"] is not None else phrase
    if "{when}" in until:
        until = until.replace("{when}", end_time(deadline, where))
    return Words(shown, until, params["ended"] if params["ended"] is not None else ended)


def drawn(params: dict[str, Any], shown: Words) -> dict[str, Any]:
    """`params` with the words as drawn: what the countdown's pixels are made of."""
    return {**params, "labels": shown.labels, "until": shown.until, "ended": shown.ended}
