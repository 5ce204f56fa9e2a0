"""The per-reader render of a compiled template: pure (no file, no store, nothing
awaited): the reader's profile and data in, a variant drawn, each block shown, hidden or
replaced by its fallback (the one place a render chooses fallbacks), then the layouts
rendered through the shared skeletons (app/render/layout/)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from jinja2.exceptions import SecurityError

from app.fallbacks import Reason
from app.links import Links, LinkSigner
from app.metrics import Metrics
from app.profiles.fit import Cut
from app.reader import personalized, subscribed, tracked
from app.reader.formats import DEFAULT_LANGUAGE, timezone
from app.render import bounds
from app.render.compiler import Compiled
from app.render.headers import Stamp, one_click, unsubscribe_headers
from app.render.layout import Fragments, ReaderRender
from app.render.result import FORMATS, UNSUBSCRIBED, RenderResult, TemplateBroken, Unsubscribed
from app.render.sources import Block, When
from app.render.variants import assign
from app.stores.protocols import Profile

log = logging.getLogger("kairos.render")


class Engine:
    """Renders compiled templates for readers, keeping what readers alike share (the
    skeletons, `Fragments`) until a new version of the templates comes. `globals`: what
    every render's context starts from (the sandboxes' globals). With `share=False`
    every piece is rendered for every reader: the reference the shared path must match
    byte for byte, and the engine for templates rendered once (previews)."""

    def __init__(
        self,
        *,
        signer: LinkSigner,
        public_url: str,
        metrics: Metrics,
        globals: Mapping[str, Any],
        share: bool = True,
        message_domain: str | None = None,
    ) -> None:
        self.signer, self.public_url, self.metrics = signer, public_url, metrics
        # Message-ID and Date of each render; the domain: the public URL's host unless set.
        self.stamp = Stamp(message_domain or urlsplit(public_url).hostname or "localhost")
        self.globals = dict(globals)
        self.share = share
        self.fragments = Fragments(share=share)
        self._version = ""
        self._amp_ok = public_url.startswith("https://")

    def twin(self, *, share: bool) -> Engine:
        """A fresh engine (nothing kept yet) like this one; `share` as for the constructor."""
        return Engine(
            signer=self.signer,
            public_url=self.public_url,
            metrics=self.metrics,
            globals=self.globals,
            share=share,
            message_domain=self.stamp.domain,
        )

    def render(
        self,
        compiled: Compiled,
        user_id: str,
        profile: Profile | None,
        data: dict[str, Any],
        reason: str | None,
        campaign: str | None,
        formats: tuple[str, ...] = FORMATS,
        unsubscribe: str | None = None,
        *,
        cuts: Sequence[Cut] = (),
    ) -> RenderResult:
        """`compiled` for reader `user_id` with `profile` (None: no profile, for
        `reason`) and `data` (cart lines, `cart_missing`, recommendations); `unsubscribe`:
        the ESP's unsubscribe URL or merge tag for this reader, over the template's; `cuts`:
        the profile's fields cut to fit (`app.profiles.fit`), reported with the fallbacks.
        A reader who unsubscribed is `Unsubscribed`: there is nothing to send them."""
        if compiled.version != self._version:
            # A new version of the templates: what was kept for the last one goes.
            self.fragments.clear()
            self._version = compiled.version
        source = compiled.source
        profile = profile or {}
        if not subscribed(profile):
            raise Unsubscribed(UNSUBSCRIBED)
        personal = profile != {} and personalized(profile)
        segments = _segments(profile.get("segments"))
        variant = assign(source.variants, campaign or source.name, user_id)
        consent = {"personalization": personal, "tracking": tracked(profile)}
        home = source.links.get("home", self.public_url)
        esp_unsubscribe = unsubscribe or source.links.get("unsubscribe")
        links = Links(
            self.signer,
            self.public_url,
            user_id,
            campaign,
            home,
            tracking=consent["tracking"],
            # Signed into the pixel and the reader's click token: opens and clicks then
            # count for the variant this reader was sent.
            variant=variant if campaign else None,
            unsubscribe=esp_unsubscribe,
            reader=profile,
            language=None if source.language == DEFAULT_LANGUAGE else source.language,
        )
        locale = profile.get("locale") or "en"
        zone = timezone(profile.get("timezone"))
        cart = data["cart"] if personal else []
        missing = data.get("cart_missing", ()) if personal else ()
        # Missing fields stay undefined, so `{{ first_name | default("there") }}` works.
        ctx: dict[str, Any] = dict(self.globals)
        ctx[bounds.DEADLINE] = bounds.started()  # one clock for all its pieces
        for key in ("first_name", "last_name", "tier", "loyalty_points"):
            if profile.get(key) is not None:
                ctx[key] = profile[key]
        ctx.update(
            {
                "locale": locale,
                # The template's: what its copy is written in, and how money, numbers
                # and dates are (filters `money`, `number`, `datetime`).
                "language": compiled.formats.language,
                "_formats": compiled.formats,
                "timezone": zone,
                "attributes": profile.get("attributes") or {},
                "cart": cart,
                # Cart lines left out because the catalog no longer has their product,
                # and lines past those shown: a sum of `cart` is then a partial one.
                "cart_missing": len(missing),
                "cart_more": data.get("cart_more", 0) if personal else 0,
                "recommendations": data["recommendations"],
                "segments": segments,
                # The primary segment: the highest priority one (a profile sent with the
                # render lists its segments in that order).
                "segment": segments[0] if segments else None,
                "variant": variant,
                "campaign": campaign,
                "consent": consent,
                "theme": source.theme,
                "template_links": source.links,
                "links": links,
                "user_id": user_id,
            }
        )
        modes, params = [], []
        fallbacks: list[dict[str, str]] = []
        for cut in cuts:
            fallbacks.append({"field": cut.field, "reason": Reason.TOO_LONG, "action": cut.action})
            # The field without its cart line's number: a bounded set of labels.
            self.metrics.fallbacks.labels("field", _label(cut.field), Reason.TOO_LONG).inc()
        for sku in missing:
            fallbacks.append({"field": "cart", "sku": sku, "reason": Reason.MISSING_PRODUCT})
            self.metrics.fallbacks.labels("field", "cart", Reason.MISSING_PRODUCT).inc()
        for use, block in zip(source.blocks, compiled.blocks, strict=True):
            mode, why = _mode(block, use.when, ctx, segments, variant, consent, reason)
            modes.append(mode)
            params.append(use.params)
            if why is not None:
                fallbacks.append({"block": block.name, "reason": why})
                self.metrics.fallbacks.labels("block", block.name, why).inc()
        ctx["_mode"], ctx["_params"] = modes, params
        # What the shared parts of the email may depend on (app/render/layout/).
        keys = {
            "variant": variant,
            "campaign": campaign,
            "locale": locale,
            "timezone": zone,
            "consent": (personal, consent["tracking"]),
            "links": (campaign, consent["tracking"]),
            "segments": tuple(segments),
            "segment": ctx["segment"],
            "_mode": tuple(modes),
        }
        render = ReaderRender(self.fragments, ctx, keys, compiled.bodies).render
        warnings = []
        try:
            subject = " ".join(render(compiled.subject, html=False).text().split())
            preheader = " ".join(render(compiled.preheader, html=False).text().split())
            ctx["_subject"], ctx["_preheader"] = subject, preheader
            html = render(compiled.html, html=True) if "html" in formats else None
            amp = None
            if "amp" in formats and compiled.amp is not None:
                if self._amp_ok:
                    amp = render(compiled.amp, html=True)
                else:
                    warnings.append("no AMP part: KAIROS_PUBLIC_URL must be https for AMP")
            text = None
            if "text" in formats:
                text = render(compiled.text, html=False).text().strip() + "\n"
        except SecurityError as exc:
            raise TemplateBroken(f"template {source.name!r}: sandbox: {exc}") from None
        except Exception as exc:  # a designer's template must never answer 500
            log.warning("template %s failed to render: %r", source.name, exc)
            raise TemplateBroken(
                f"template {source.name!r} failed to render: {type(exc).__name__}: {exc}"
            ) from None
        unsubscribe_url = links.unsubscribe()
        post = one_click(
            unsubscribe_url, ours=esp_unsubscribe is None, declared=source.unsubscribe_one_click
        )
        headers = {**self.stamp(), **unsubscribe_headers(unsubscribe_url, post)}
        if links.unsafe:
            unsafe = len(set(links.unsafe))
            warnings.append(f"{unsafe} link(s) with unsafe targets sent home")
        undrawable = self._undrawable(links, compiled, modes, profile)
        for names, image, param, glyphs in undrawable:
            warnings.append(
                f"block {names}: live image {image} cannot draw {glyphs!r} ({param}): "
                "no font has them, the reader gets the fallback image"
            )
        return RenderResult(
            subject,
            preheader,
            html,
            amp,
            text,
            segments,
            variant,
            fallbacks,
            warnings,
            headers=headers,
            weights=source.variants,
            tracked=consent["tracking"],
            undrawable=undrawable,
        )

    def _undrawable(
        self, links: Links, compiled: Compiled, modes: list[str], profile: Profile
    ) -> list[tuple[str, str, str, str]]:
        """Live image text of this render that no font can draw, named by the shown
        block that declares the image (`"image"` in its block.json)."""
        found: list[tuple[str, str, str, str]] = []
        check = self.signer.check_image
        for name, params in links.images:
            problems = check.undrawable(name, params, profile)
            if not problems:
                continue
            blocks = [
                each.name
                for each, mode in zip(compiled.blocks, modes, strict=True)
                if each.image == name and mode == "main"
            ] or ["(template)"]
            for param, glyphs in problems:
                found.append((", ".join(dict.fromkeys(blocks)), name, param, glyphs))
        return found


def _mode(
    block: Block,
    when: When,
    ctx: dict[str, Any],
    segments: list[str],
    variant: str,
    consent: dict[str, bool],
    reason: str | None,
) -> tuple[str, str | None]:
    """main, fallback or hidden for one block of one reader, and the fallback's reason."""
    if when.variant is not None and when.variant != variant:
        return "hidden", None
    if when.segment is not None and when.segment not in segments:
        return "hidden", None
    if when.not_segment is not None and when.not_segment in segments:
        return "hidden", None
    if when.consent is not None and not consent.get(when.consent):
        return "hidden", None
    if block.personal and not consent["personalization"]:
        return "fallback", reason or Reason.NO_CONSENT
    for need in block.needs:
        value = ctx.get(need)
        if value is None or value == [] or value == "":
            # Which data was missing is named too: "missing-data:cart".
            return "fallback", reason or f"{Reason.MISSING_DATA}:{need}"
    return "main", None


def _label(field: str) -> str:
    """`cart[3].url` as `cart.url`."""
    if field.startswith("cart["):
        return "cart" + field[field.index("]") + 1 :]
    return field


def _segments(found: Any) -> list[str]:
    """The reader's segments, highest priority first: from `{"primary", "all"}` (stored,
    or evaluated now) or a list (a profile sent with the render)."""
    if isinstance(found, dict):
        found = found.get("all")
    return [s for s in found or () if isinstance(s, str)] if isinstance(found, list | tuple) else []
