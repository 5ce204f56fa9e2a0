"""Live images drawn at open time: one module per kind, registered here."""

from __future__ import annotations

import functools

from app.images.banner import Banner
from app.images.base import ImageKind, ParamError, Params, Unavailable
from app.images.countdown import Countdown
from app.images.product import Product

KINDS: dict[str, type[ImageKind]] = {
    Countdown.name: Countdown,
    Banner.name: Banner,
    Product.name: Product,
}

FORMATS = {"gif": "image/gif", "png": "image/png"}


def parse(name: str, raw: dict[str, object] | None) -> Params:
    """The checked parameters of image `name` (as signed at send time): `ParamError`
    for an unknown image or invalid parameters."""
    kind = KINDS.get(name)
    if kind is None:
        raise ParamError(f"no live image named {name!r}; there are {', '.join(sorted(KINDS))}")
    return kind.parse(raw)


def check(name: str, raw: dict[str, object]) -> None:
    """`parse` for a render: every reader of a template signs the same parameters, so
    the answer is remembered (a pure function of them)."""
    try:
        # With the types: True == 1 and hash alike, but only one of them is a slot.
        key = tuple(sorted((k, type(v).__name__, v) for k, v in raw.items()))
        hash(key)
    except TypeError:  # unhashable values: they will not parse anyway
        parse(name, raw)
        return
    error = _checked(name, key)
    if error is not None:
        raise ParamError(error)


@functools.lru_cache(maxsize=1024)
def _checked(name: str, items: tuple[tuple[str, str, object], ...]) -> str | None:
    try:
        parse(name, {k: v for k, _, v in items})
    except ParamError as exc:
        return str(exc)
    return None


__all__ = [
    "FORMATS",
    "KINDS",
    "ImageKind",
    "ParamError",
    "Params",
    "Unavailable",
    "check",
    "parse",
]
