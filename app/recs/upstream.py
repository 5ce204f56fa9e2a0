"""The optional upstream recommendation model (`KAIROS_RECS_URL`).

Asked with httpx inside the request's time budget, with the reader's context but no
reader id (recent views, cart, recent purchases, primary segment: what a model needs to
rank products, nothing that names the reader). Its answer is checked before it is used:
a JSON list, at most `MAX_ANSWER` entries of skus or `{"sku", "score"}` objects, within
`MAX_BYTES`. Whatever goes wrong (too slow, refused, not 2xx, not JSON, the wrong shape)
gives no upstream items, so the in-house recommendations stand alone, and is counted by
reason in `kairos_recs_upstream_total{result}`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from app.metrics import Metrics
from app.profiles.schema import SKU
from app.settings import ConfigError
from app.upstream_body import ACCEPT_ENCODING, TooLarge, capped_body
from app.upstream_client import Reach, upstream_client

log = logging.getLogger("kairos.recs")

MAX_ANSWER = 100
MAX_BYTES = 64 * 1024
# Left of the caller's deadline for what follows the answer (catalog reads, the feed).
RESERVE_S = 0.015
RESULTS = ("ok", "timeout", "unavailable", "status", "too_large", "invalid_json", "invalid_shape")


class Invalid(Exception):
    """The answer cannot be used; `reason` is one of `RESULTS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class UpstreamModel:
    """One client for the model's URL, made on first use and closed with the app."""

    def __init__(
        self,
        url: str,
        hosts: Sequence[str],
        metrics: Metrics,
        *,
        timeout_s: float,
        private_hosts: Sequence[str] = (),
    ) -> None:
        host = (urlsplit(url).hostname or "").lower()
        port = urlsplit(url).port
        allowed = {h.lower() for h in hosts}
        if host not in allowed and f"{host}:{port}" not in allowed:
            raise ConfigError(
                f"KAIROS_RECS_URL: its host {host!r} must be in KAIROS_UPSTREAM_HOSTS"
            )
        try:
            httpx.URL(url)  # what the settings' check lets through, httpx may not send
        except httpx.InvalidURL as exc:
            raise ConfigError(f"KAIROS_RECS_URL: {exc}") from None
        self.url = url
        self._reach = Reach(hosts, private_hosts)
        self._timeout_s = timeout_s
        # Made now, not on first use: its TLS set-up (tens of ms) would eat the first
        # reader's whole `KAIROS_RECS_TIMEOUT_MS`.
        self._client: httpx.AsyncClient | None = upstream_client(
            self._reach,
            timeout=timeout_s,
            headers={
                "User-Agent": "kairos-recs",
                "Accept": "application/json",
                "Accept-Encoding": ACCEPT_ENCODING,
            },
            max_connections=64,
        )
        self._results = {r: metrics.recs_upstream.labels(r) for r in RESULTS}

    async def ask(self, context: dict[str, Any], deadline: float) -> dict[str, float]:
        """The model's scores by sku (best highest), or {} when it fails; returns by
        `KAIROS_RECS_TIMEOUT_MS` from now and `RESERVE_S` before `deadline` (a
        `loop.time()`), whichever is sooner. Never raises."""
        now = asyncio.get_running_loop().time()
        until = min(now + self._timeout_s, deadline - RESERVE_S)
        try:
            if until <= now:
                raise Invalid("timeout", "no time left in the budget")
            async with asyncio.timeout_at(until):
                body = await self._post(context)
            scores = parse_answer(body)
        except Invalid as exc:
            self._fail(exc.reason, str(exc))
            return {}
        except TimeoutError:
            self._fail("timeout", "slower than its budget")
            return {}
        except (httpx.HTTPError, OSError) as exc:
            self._fail("unavailable", f"{type(exc).__name__}: {exc}")
            return {}
        self._results["ok"].inc()
        return scores

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _post(self, context: dict[str, Any]) -> bytes:
        if self._client is None:
            raise Invalid("unavailable", "closed")
        headers = {"Content-Type": "application/json"}
        async with self._client.stream(
            "POST", self.url, content=orjson.dumps(context), headers=headers
        ) as response:
            if not 200 <= response.status_code < 300:
                raise Invalid("status", f"HTTP {response.status_code}")
            try:
                return await capped_body(response, MAX_BYTES)
            except TooLarge as exc:
                raise Invalid("too_large", str(exc)) from None

    def _fail(self, reason: str, detail: str) -> None:
        self._results[reason].inc()
        log.info("upstream recommendations unused (%s): %s", reason, detail)


def parse_answer(body: bytes) -> dict[str, float]:
    """The model's answer checked: a JSON list of skus (ranked, best first) or of
    `{"sku": str, "score": number}` objects; scores by sku. `Invalid` otherwise."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Invalid("invalid_json", f"not JSON: {exc}") from None
    if not isinstance(answer, list):
        raise Invalid("invalid_shape", "the answer must be a JSON list")
    if len(answer) > MAX_ANSWER:
        raise Invalid("invalid_shape", f"more than {MAX_ANSWER} entries")
    scores: dict[str, float] = {}
    for rank, entry in enumerate(answer):
        sku: Any
        score: Any
        if isinstance(entry, str):
            sku, score = entry, float(len(answer) - rank)
        elif isinstance(entry, dict):
            sku, score = entry.get("sku"), entry.get("score")
            if isinstance(score, bool) or not isinstance(score, int | float):
                raise Invalid("invalid_shape", f"entry {rank}: score must be a number")
            if not math.isfinite(score):
                raise Invalid("invalid_shape", f"entry {rank}: score must be finite")
        else:
            raise Invalid("invalid_shape", f"entry {rank}: a sku or an object with sku, score")
        if not isinstance(sku, str) or not SKU.fullmatch(sku):
            raise Invalid("invalid_shape", f"entry {rank}: not a valid sku")
        scores.setdefault(sku, float(score))
    return scores
