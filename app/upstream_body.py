"""Reading an upstream's answer (a product image, the recommendations model) within a cap
that holds after decompression. httpx inflates each compressed chunk whole, so a small
gzip body can become hundreds of megabytes before a cap counted on its chunks sees it:
here the raw bytes are inflated by us, never more than the cap at a time. Upstreams are
asked for no compression (`ACCEPT_ENCODING`); gzip and deflate are still read, any other
encoding is refused."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from types import MappingProxyType

import httpx

ACCEPT_ENCODING = "identity"
# zlib's window bits: gzip with its header, or a zlib (deflate) stream.
WBITS = MappingProxyType(
    {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
)


class TooLarge(Exception):
    """The answer is over the cap (or uses an encoding we do not read)."""


async def capped_body(response: httpx.Response, limit: int) -> bytes:
    """The body of a streamed `response`, decoded, or `TooLarge` as soon as more than
    `limit` bytes would be held."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    inflate: Callable[[bytes, int], bytes] | None = None
    if encoding not in ("", "identity"):
        wbits = WBITS.get(encoding)
        if wbits is None:
            raise TooLarge(f"an answer in {encoding[:20]!r}, which Kairos does not read")
        inflater = zlib.decompressobj(wbits)

        def inflate(raw: bytes, room: int) -> bytes:
            data = inflater.decompress(raw, room + 1)
            if inflater.unconsumed_tail:  # more than the room left: over the cap
                raise TooLarge(f"more than {limit} bytes")
            return data

    chunks: list[bytes] = []
    total = 0
    async for raw in response.aiter_raw():
        data = raw if inflate is None else inflate(raw, limit - total)
        total += len(data)
        if total > limit:
            raise TooLarge(f"more than {limit} bytes")
        chunks.append(data)
    return b"".join(chunks)
