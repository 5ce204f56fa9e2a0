"""What a request renders with: a template from the registry, the reader's profile and
data read within the time budget, then the engine's per-reader render."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.fallbacks import Reason, reason_for
from app.profiles.cache import CachedProfiles, Lookup
from app.profiles.fit import Cut, fit
from app.reader import ReaderData, personalized
from app.reader.consent import subscribed
from app.reader.formats import Formats
from app.render.compiler import Compiled
from app.render.engine import Engine
from app.render.registry import TemplateRegistry
from app.render.result import FORMATS, UNSUBSCRIBED, RenderResult, Unsubscribed
from app.stores.protocols import Profile

log = logging.getLogger("kairos.render")

GRID_SIZE = 6
FEED_DATA = frozenset({"cart", "recommendations"})


class Renderer:
    """The templates (`templates`), the engine that renders them per reader (`engine`),
    and where a reader's profile and data come from."""

    def __init__(
        self,
        templates: TemplateRegistry,
        engine: Engine,
        *,
        profiles: CachedProfiles,
        reader: ReaderData,
        budget_s: float,
    ) -> None:
        self.templates, self.engine = templates, engine
        self._profiles, self._reader = profiles, reader
        self.budget_s = budget_s
        # Templates compiled from files in memory are rendered once (a preview): by an
        # engine of their own, so they take no room in the shared one's caches.
        self._once = engine.twin(share=False)

    def reference(self) -> Renderer:
        """A twin that renders every piece per reader and reads the blocks' params at
        render time: what this renderer's output must equal byte for byte (`kairos
        check` compares them)."""
        return self.twin(share=False)

    def twin(self, *, share: bool) -> Renderer:
        """A fresh renderer (nothing cached yet) over the same files and data, its
        templates compiled now and not reloaded; `share`: as for `Engine`, and the
        params folded in at compile time."""
        return Renderer(
            self.templates.twin(fold=share),
            self.engine.twin(share=share),
            profiles=self._profiles,
            reader=self._reader,
            budget_s=self.budget_s,
        )

    def compiled(self, name: str) -> Compiled:
        return self.templates.compiled(name)

    def names(self) -> list[str]:
        return self.templates.names()

    def samples(self, name: str) -> dict[str, dict[str, Any]]:
        return self.templates.samples(name)

    def close(self) -> None:
        self.templates.close()

    async def render(
        self,
        template: str | Compiled,
        user_id: str,
        *,
        profile: Profile | None = None,
        campaign: str | None = None,
        formats: tuple[str, ...] = FORMATS,
        lookup: Lookup | None = None,
        unsubscribe: str | None = None,
    ) -> RenderResult:
        """Render `template` (a name, or a template compiled from files in memory) for
        one reader; the profile comes from the request when given, else from `lookup`
        when given (see `lookup()`), else from the store within the time budget;
        `unsubscribe`: the ESP's unsubscribe URL or merge tag (see `Engine.render`). A
        reader who unsubscribed is `Unsubscribed`, whatever an inline profile says."""
        if isinstance(template, str):
            compiled, engine = self.templates.compiled(template), self.engine
        else:
            compiled, engine = template, self._once
        deadline = asyncio.get_running_loop().time() + self.budget_s
        reason = None
        if profile is None:
            if lookup is None:
                lookup = await self.lookup(user_id)
            profile, reason = lookup.profile, lookup.reason
            if profile is None and reason is None:
                reason = Reason.MISSING_PROFILE
        elif isinstance(template, str):
            # An inline profile is the caller's copy of the reader: an opt-out recorded
            # here (the one-click unsubscribe) still wins. Read within the time budget; a
            # store that cannot answer in it leaves the inline profile to decide.
            if lookup is None:
                lookup = await self._profiles.get(user_id, self.budget_s)
            if lookup.profile is not None and not subscribed(lookup.profile):
                raise Unsubscribed(UNSUBSCRIBED)
        cuts: tuple[Cut, ...] = ()
        if profile is not None:
            # Too long fields cut before anything reads them (the engine reports them).
            fitted, cuts = fit(profile)
            profile = dict(fitted) if cuts else profile
        data = await self.data(profile or {}, deadline, compiled.reads, compiled.formats)
        return engine.render(
            compiled, user_id, profile, data, reason, campaign, formats, unsubscribe, cuts=cuts
        )

    def render_data(
        self,
        compiled: Compiled,
        user_id: str,
        profile: Profile | None,
        data: dict[str, Any],
        reason: str | None,
        campaign: str | None,
        formats: tuple[str, ...] = FORMATS,
    ) -> RenderResult:
        """The engine's part of a render (no I/O)."""
        return self.engine.render(compiled, user_id, profile, data, reason, campaign, formats)

    async def lookup(self, user_id: str) -> Lookup:
        """The reader's profile through the cache, within the time budget."""
        return await self._profiles.now(user_id, self.budget_s)

    async def data(
        self,
        profile: Profile,
        deadline: float,
        reads: frozenset[str] = FEED_DATA,
        formats: Formats | None = None,
    ) -> dict[str, Any]:
        """Cart lines (with `cart_missing`: the skus of the lines whose product the
        catalog no longer has; `cart_more`: how many lines lie past those shown) and
        recommendations (those of them the template `reads`), completed from the
        catalog, prices as `formats` writes them; empty when they cannot be had (the
        blocks that need them fall back: the one place a render swaps in fallbacks is
        the engine's `_mode`)."""
        if not personalized(profile):
            profile = {}
        reader = self._reader
        data: dict[str, Any] = {"cart": [], "cart_missing": [], "recommendations": []}
        for name in ("cart", "recommendations"):
            if name not in reads:
                continue
            try:
                if name == "cart":
                    cart = await reader.cart_lines(profile, GRID_SIZE, deadline, formats)
                    data["cart"], data["cart_missing"], data["cart_more"] = cart
                else:
                    data[name] = await reader.recommendations(profile, GRID_SIZE, deadline, formats)
            except Exception as exc:  # noqa: BLE001 - the email is complete whatever fails
                if reason_for(exc) is Reason.ERROR:
                    log.exception("render: reading the reader's %s failed", name)
                else:
                    log.debug("render: no %s: %s", name, exc)
        return data
