"""Live images for the route: parameters checked once per token, the kind's data step
within the budget, then the rendered bytes from the cache, or from one render in the
worker pool shared by everyone who asked for the same pixels at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import features

from app.catalog import Catalog
from app.errors import CorruptData, StoreUnavailable
from app.images import KINDS
from app.images.assets import Assets
from app.images.base import ImageKind, Job, ParamError, Params, Unavailable
from app.images.cache import ByteCache, SingleFlight
from app.images.context import ImageDeps, ImageRequest
from app.images.fonts import Fonts
from app.images.pool import Workers
from app.images.sources import SourceImages
from app.metrics import Metrics
from app.picks import Picks
from app.profiles.cache import CachedProfiles
from app.settings import ConfigError, Settings
from app.tokens import Grant

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
        self.sources = SourceImages(self.workers, settings.upstream_hosts, settings.image_max_bytes)
        deps = ImageDeps(Fonts(assets), assets, self.sources, profiles, catalog, picks)
        self.kinds: dict[str, ImageKind] = {name: kind(deps) for name, kind in KINDS.items()}
        self.cache = ByteCache(settings.image_cache_bytes)
        self.clock = clock  # wall-clock seconds; tests pin it
        self._flight: SingleFlight[bytes] = SingleFlight()
        self._specs: dict[str, Spec | ParamError] = {}
        self._renders = {name: metrics.image_renders.labels(name) for name in KINDS}
        self._hits = {name: metrics.image_cache.labels(name, "hit") for name in KINDS}
        self._misses = {name: metrics.image_cache.labels(name, "miss") for name in KINDS}

    def spec(self, kind: ImageKind, token: str, grant: Grant) -> Spec:
        """The grant's parameters parsed and checked by `kind` (`ParamError` if they
        are invalid or above the limits), memoized by token: they never change."""
        memo = self._specs.get(token)
        if memo is None:
            try:
                params = kind.parse(grant.params)
                kind.check(params)
                memo = Spec(params, kind.style(params))
            except ParamError as exc:
                memo = exc
            if len(self._specs) >= PARAMS_MEMO_SIZE:
                del self._specs[next(iter(self._specs))]  # first in, first out
            self._specs[token] = memo
        if isinstance(memo, ParamError):
            raise ParamError(str(memo))
        return memo

    async def image(self, kind: ImageKind, spec: Spec, grant: Grant, deadline: float) -> bytes:
        """The image's bytes, or `Unavailable` saying why the reader gets the fallback."""
        request = ImageRequest(grant, self.clock(), deadline)
        try:
            job = await kind.prepare(request, spec.params, spec.style)
        except TimeoutError:
            raise Unavailable("budget") from None
        except StoreUnavailable:
            raise Unavailable("store-unavailable") from None
        except CorruptData:
            raise Unavailable("invalid-data") from None
        body = self.cache.get(job.key)
        if body is not None:
            self._hits[kind.name].inc()
            return body
        self._misses[kind.name].inc()
        try:
            return await self._flight.run(job.key, lambda: self._render(kind.name, job), deadline)
        except TimeoutError:
            raise Unavailable("budget", "the render took longer than the budget") from None

    async def _render(self, name: str, job: Job) -> bytes:
        body = await self.workers.run(job.render)
        self.cache.put(job.key, body)
        self._renders[name].inc()
        return body

    async def close(self) -> None:
        await self._flight.close()
        await self.sources.close()
        self.workers.close()
