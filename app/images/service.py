"""Live images for the route: parameters checked once per token, the kind's data step
within the budget, then the rendered bytes from the cache, or from one render in the
worker pool shared by everyone who asked for the same pixels at once."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import features

from app.caching import Bounded
from app.fallbacks import Fallback, Reason
from app.images import KINDS
from app.images.assets import Assets
from app.images.base import Job, ParamError, Params
from app.images.cache import ByteCache, SingleFlight
from app.images.context import ImageDeps, ImageRequest
from app.images.fonts import Fonts
from app.images.kind import ImageKind
from app.images.pool import Workers
from app.images.sources import SourceImages
from app.metrics import Metrics
from app.picks import Picks
from app.profiles.cache import CachedProfiles
from app.reader.catalog import Catalog
from app.settings import ConfigError, Settings
from app.tokens import Grant

log = logging.getLogger("kairos.images")

PARAMS_MEMO_SIZE = 50_000


@dataclass(frozen=True, slots=True)
class Spec:
    """A token's image, checked: its parameters and the style key they make."""

    params: Params
    style: str


class LiveImages:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        profiles: CachedProfiles,
        catalog: Catalog,
        picks: Picks,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not features.check("freetype2"):
            raise ConfigError("Pillow was built without FreeType: live images cannot draw text")
        assets = Assets(settings.blocks_dir, settings.fallbacks_dir, settings.catalog_assets_dir)
        self.workers = Workers(settings.image_workers)
        self.sources = SourceImages(
            self.workers,
            settings.upstream_hosts,
            settings.image_max_bytes,
            private_hosts=settings.upstream_private_hosts,
        )
        self.fonts = Fonts(assets)
        deps = ImageDeps(self.fonts, assets, self.sources, profiles, catalog, picks)
        self.kinds: dict[str, ImageKind] = {name: kind(deps) for name, kind in KINDS.items()}
        self.cache = ByteCache(settings.image_cache_bytes)
        self.clock = clock  # wall-clock seconds; tests pin it
        self._flight: SingleFlight[bytes] = SingleFlight()
        self._specs: Bounded[str, Spec | ParamError] = Bounded(PARAMS_MEMO_SIZE)
        self._renders = {name: metrics.image_renders.labels(name) for name in KINDS}
        self._hits = {name: metrics.image_cache.labels(name, "hit") for name in KINDS}
        self._misses = {name: metrics.image_cache.labels(name, "miss") for name in KINDS}

    def spec(self, kind: ImageKind, token: str, grant: Grant) -> Spec:
        """The grant's parameters parsed and checked by `kind`, memoized by token (they
        never change); `Fallback(INVALID_PARAMS)` when invalid or above the limits."""
        memo = self._specs.get(token)
        if memo is None:
            try:
                params = kind.parse(grant.params)
                kind.check(params)
                memo = Spec(params, kind.style(params))
            except ParamError as exc:
                memo = exc
            self._specs.put(token, memo)
        if isinstance(memo, ParamError):
            raise Fallback(Reason.INVALID_PARAMS, str(memo))
        return memo

    async def image(self, kind: ImageKind, spec: Spec, grant: Grant, deadline: float) -> bytes:
        """The image's bytes. Raises what asks for the fallback (`Fallback`, or the data
        step's `TimeoutError`, `StoreUnavailable`, `CorruptData`: see `reason_for`)."""
        request = ImageRequest(grant, self.clock(), deadline)
        job = await kind.prepare(request, spec.params, spec.style)
        body = self.cache.get(job.key)
        if body is not None:
            self._hits[kind.name].inc()
            return body
        self._misses[kind.name].inc()
        try:
            return await self._flight.run(job.key, lambda: self._render(kind.name, job), deadline)
        except TimeoutError:
            raise Fallback(Reason.BUDGET, "the render took longer than the budget") from None

    async def _render(self, name: str, job: Job) -> bytes:
        try:
            body = await self.workers.run(job.render)
        except Exception as exc:
            log.exception("image %s failed to draw", name)
            raise Fallback(Reason.RENDER_ERROR, repr(exc)) from exc
        self.cache.put(job.key, body)
        self._renders[name].inc()
        return body

    async def close(self) -> None:
        await self._flight.close()
        await self.sources.close()
        self.workers.close()
