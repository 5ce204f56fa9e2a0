"""Money for display."""

from __future__ import annotations

from types import MappingProxyType

CURRENCY_SYMBOLS = MappingProxyType(
    {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF "}
)


def money(amount: float, currency: str | None) -> str:
    """A price for display, e.g. '€39.00'; unknown currencies as '39.00 XYZ'."""
    if currency is None:
        return f"{amount:,.2f}"
    symbol = CURRENCY_SYMBOLS.get(currency)
    if symbol is None:
        return f"{amount:,.2f} {currency}"
    return f"{symbol}{amount:,.0f}" if currency == "JPY" else f"{symbol}{amount:,.2f}"
