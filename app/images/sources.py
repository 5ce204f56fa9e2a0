"""Source images (backgrounds, product photos): local files, or fetched with httpx from
the hosts in KAIROS_UPSTREAM_HOSTS only (their addresses checked as each connection is
made: app/upstream_client.py), with a size cap, inside the request's budget, decoded in
the worker pool under a pixel limit, and cached.

Only PNG, JPEG, GIF and WebP are decoded (Pillow's other decoders are never reached),
and an image with more pixels than `MAX_SOURCE_PIXELS` is refused from its header,
before it is decompressed: that is our decompression-bomb limit (stricter than Pillow's
own `Image.MAX_IMAGE_PIXELS`, which still applies)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from cachetools import LRUCache, TTLCache
from PIL import Image

from app.fallbacks import Fallback, Reason
from app.images.cache import SingleFlight
from app.images.pool import Workers
from app.upstream_body import ACCEPT_ENCODING, TooLarge, capped_body
from app.upstream_client import Reach, upstream_client

log = logging.getLogger("kairos.images")

DECODERS = ("PNG", "JPEG", "GIF", "WEBP")
MAX_SOURCE_PIXELS = 4096 * 4096
MAX_SIDE = 1200  # sources are kept no larger than the largest image drawn from them
FETCH_TIMEOUT_S = 5.0  # a fetch outlives the request that started it, but not forever
REMOTE_TTL_S = 300.0
FAILURE_TTL_S = 10.0
LOCAL_RECHECK_S = 1.0  # a changed local file is seen within this long


@dataclass(frozen=True, slots=True)
class Source:
    """A decoded image (RGB or RGBA, read-only once made) and a digest of its bytes."""

    image: Image.Image
    digest: str


def decode(data: bytes, max_pixels: int = MAX_SOURCE_PIXELS) -> Source:
    """`data` decoded, or `Fallback(Reason.INVALID_DATA)`. Pure CPU: run it in the pool."""
    try:
        with Image.open(BytesIO(data), formats=DECODERS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise Fallback(Reason.INVALID_DATA, f"{width}x{height} is more pixels than allowed")
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            image = im.convert("RGBA" if alpha else "RGB")
    except Fallback:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise Fallback(Reason.INVALID_DATA, f"not a usable image: {exc}") from None
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    return Source(image, hashlib.blake2b(data, digest_size=12).hexdigest())


class SourceImages:
    def __init__(
        self,
        workers: Workers,
        upstream_hosts: Sequence[str],
        max_bytes: int,
        *,
        private_hosts: Sequence[str] = (),
        max_pixels: int = MAX_SOURCE_PIXELS,
    ) -> None:
        self._workers = workers
        self._hosts = frozenset(h.lower() for h in upstream_hosts)
        self._reach = Reach(upstream_hosts, private_hosts)
        self.max_bytes = max_bytes
        self._max_pixels = max_pixels
        self._client: httpx.AsyncClient | None = None
        # path -> (source, (mtime_ns, size) when read, monotonic time last checked)
        self._local: LRUCache[Path, tuple[Source, tuple[int, int], float]] = LRUCache(64)
        self._remote: TTLCache[str, Source] = TTLCache(maxsize=512, ttl=REMOTE_TTL_S)
        self._failed: TTLCache[str, str] = TTLCache(maxsize=1024, ttl=FAILURE_TTL_S)
        self._flight: SingleFlight[Source] = SingleFlight()

    def allowed(self, url: str) -> bool:
        """True when `url` is http(s) on a host of KAIROS_UPSTREAM_HOSTS ('host' or
        'host:port' entries)."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not host or parts.username is not None:
            return False
        return host in self._hosts or (port is not None and f"{host}:{port}" in self._hosts)

    async def local(self, path: Path, deadline: float) -> Source:
        """A local file (a designer's asset or a catalog image), cached while unchanged."""
        entry = self._local.get(path)
        if entry is not None and time.monotonic() - entry[2] < LOCAL_RECHECK_S:
            return entry[0]
        return await self._flight.run(("local", path), lambda: self._load_local(path), deadline)

    async def remote(self, url: str, deadline: float) -> Source:
        """An upstream image: `Fallback(Reason.UPSTREAM)` when it cannot be had,
        `TimeoutError` at `deadline` (the fetch goes on, for the next open)."""
        if not self.allowed(url):
            raise Fallback(Reason.UPSTREAM, "host not in KAIROS_UPSTREAM_HOSTS")
        source = self._remote.get(url)
        if source is not None:
            return source
        failure = self._failed.get(url)
        if failure is not None:
            raise Fallback(Reason.UPSTREAM, failure)
        return await self._flight.run(url, lambda: self._fetch(url), deadline)

    async def close(self) -> None:
        await self._flight.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _load_local(self, path: Path) -> Source:
        stamp = await self._workers.run(_stamp, path, self.max_bytes)
        entry = self._local.get(path)
        if entry is not None and entry[1] == stamp:
            source = entry[0]
        else:
            source = await self._workers.run(_read_and_decode, path, self._max_pixels)
        self._local[path] = (source, stamp, time.monotonic())
        return source

    async def _fetch(self, url: str) -> Source:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                data = await self._download(url)
            source = await self._workers.run(decode, data, self._max_pixels)
        except Fallback as exc:
            failure = str(exc)
        except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError) as exc:
            # InvalidURL (a control character, an over-long URL) is no HTTPError.
            failure = f"{type(exc).__name__}: {exc}"
        else:
            self._remote[url] = source
            return source
        log.warning("image %s unavailable: %s", _safe(url), failure)
        self._failed[url] = failure
        raise Fallback(Reason.UPSTREAM, failure)

    async def _download(self, url: str) -> bytes:
        if self._client is None:
            self._client = upstream_client(
                self._reach,
                timeout=FETCH_TIMEOUT_S,
                headers={
                    "User-Agent": "kairos-images",
                    "Accept": "image/*",
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                max_connections=32,
            )
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                raise Fallback(Reason.UPSTREAM, f"HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > self.max_bytes:
                raise Fallback(Reason.UPSTREAM, f"{declared} bytes is over the cap")
            try:  # capped after decompression, inflated within the cap: no gzip bombs
                return await capped_body(response, self.max_bytes)
            except TooLarge as exc:
                raise Fallback(Reason.UPSTREAM, str(exc)) from None


def _stamp(path: Path, max_bytes: int) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        raise Fallback(Reason.INVALID_DATA, f"cannot read {path.name}") from None
    if stat.st_size > max_bytes:
        raise Fallback(Reason.INVALID_DATA, f"{path.name} is larger than {max_bytes} bytes")
    return stat.st_mtime_ns, stat.st_size


def _read_and_decode(path: Path, max_pixels: int) -> Source:
    try:
        data = path.read_bytes()
    except OSError:
        raise Fallback(Reason.INVALID_DATA, f"cannot read {path.name}") from None
    return decode(data, max_pixels)


def _safe(url: str) -> str:
    """A URL for the log: no query string (it may carry someone's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
