"""Money for display where no template's language applies (live images): English CLDR
formats, through Babel. A render formats money by its template's language
(`app/reader/formats.py`)."""

from __future__ import annotations

from babel.numbers import format_currency, format_decimal

from app.reader.formats import DEFAULT_LANGUAGE, LETTER_DIGIT, PLAIN_MONEY


def money(amount: float, currency: str | None) -> str:
    """A price for display, e.g. '€39.00', '¥1,200'; without a currency, '1,234.50'."""
    if currency is None:
        return format_decimal(amount, PLAIN_MONEY, locale=DEFAULT_LANGUAGE)
    return LETTER_DIGIT.sub("\xa0", format_currency(amount, currency, locale=DEFAULT_LANGUAGE))
