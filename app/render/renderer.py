"""Per-reader rendering: data within the budget, a variant, each block shown, hidden or
replaced by its fallback, then Jinja over the precompiled template."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from jinja2 import pass_context
from jinja2.exceptions import SecurityError
from jinja2.filters import do_title

from app.errors import KairosError, NotFound
from app.fallbacks import Reason, reason_for
from app.links import Links, LinkSigner
from app.metrics import Metrics
from app.profiles.cache import CachedProfiles, Lookup
from app.reader import ReaderData, money, personalized, tracked
from app.render.compiler import Compiled, Environments, compile_template
from app.render.fill_links import FillLinks
from app.render.layout import (
    SHARED_BODY_FILTER,
    Fragments,
    Output,
    ReaderRender,
    shared_body,
)
from app.render.sources import (
    Block,
    SourceError,
    When,
    fingerprint,
    load_blocks,
    load_samples,
    load_template,
)
from app.render.variants import assign
from app.stores.protocols import Profile
from app.tokens import Tokens

log = logging.getLogger("kairos.render")

FORMATS = ("html", "amp", "text")
RELOAD_CHECK_S = 1.0
GRID_SIZE = 6
FEED_DATA = frozenset({"cart", "recommendations"})


class TemplateBroken(KairosError):
    """A template that does not compile or fails while rendering: 422, naming it."""

    status, code = 422, "template_error"


@dataclass
class RenderResult:
    subject: str
    preheader: str
    html_output: Output | None
    amp_output: Output | None
    text: str | None
    segments: list[str]
    variant: str
    fallbacks: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def html(self) -> str | None:
        return None if self.html_output is None else self.html_output.text()

    @property
    def amp(self) -> str | None:
        return None if self.amp_output is None else self.amp_output.text()

    def json(self, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
        """`body()` as JSON, `prefix` (members and a comma) first, `suffix` after: built
        from the outputs' pieces, whose shared text is encoded once per send."""
        dumps = orjson.dumps
        out: list[bytes | memoryview] = [b"{", prefix, b'"subject":', dumps(self.subject)]
        out += [b',"preheader":', dumps(self.preheader), b',"html":']
        out += [b"null"] if self.html_output is None else self.html_output.json()
        out.append(b',"amp":')
        out += [b"null"] if self.amp_output is None else self.amp_output.json()
        out += [b',"text":', dumps(self.text), b',"segments":', dumps(self.segments)]
        out += [b',"variant":', dumps(self.variant), b',"fallbacks":', dumps(self.fallbacks)]
        if self.warnings:
            out += [b',"warnings":', dumps(self.warnings)]
        out += [b"}", suffix]
        return b"".join(out)

    def difference(self, other: RenderResult) -> str | None:
        """Where `other` differs from this result (the first field, and the first
        character where it does), or None when they are the same."""
        mine, theirs = self.body(), other.body()
        for key in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(key), theirs.get(key)
            if a == b:
                continue
            if isinstance(a, str) and isinstance(b, str):
                at = len(os.path.commonprefix([a, b]))
                start = max(at - 20, 0)
                return f"{key} at character {at}: {a[start : at + 40]!r} != {b[start : at + 40]!r}"
            return f"{key}: {a!r:.200} != {b!r:.200}"
        return None

    def body(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "preheader": self.preheader,
            "html": self.html,
            "amp": self.amp,
            "text": self.text,
            "segments": self.segments,
            "variant": self.variant,
            "fallbacks": self.fallbacks,
            **({"warnings": self.warnings} if self.warnings else {}),
        }


class Renderer:
    """Holds every compiled template; recompiles a template when its files change
    (when `reload` is on, checked at most once a second)."""

    def __init__(
        self,
        *,
        blocks_dir: Path,
        templates_dir: Path,
        tokens: Tokens,
        profiles: CachedProfiles,
        reader: ReaderData,
        metrics: Metrics,
        public_url: str,
        budget_s: float,
        reload: bool,
        share: bool = True,
        signer: LinkSigner,
    ) -> None:
        self.blocks_dir, self.templates_dir = blocks_dir, templates_dir
        self._tokens, self._profiles, self._reader = tokens, profiles, reader
        self._metrics = metrics
        self._public_url = public_url
        self._budget_s = budget_s
        self._reload = reload
        self._envs = ENVIRONMENTS
        self._signer = signer
        # `share=False` renders every piece per reader, with the blocks' params read at
        # render time: the reference the shared path must match byte for byte.
        self._fragments = Fragments(share=share)
        self._share = share
        self._compiled: dict[str, Compiled] = {}
        self._broken: dict[str, SourceError] = {}
        self._version = ""
        self._checked_at = 0.0
        self._amp_ok = public_url.startswith("https://")

    # -- compiling -------------------------------------------------------------------

    @property
    def environments(self) -> Environments:
        return self._envs

    def load(self) -> list[SourceError]:
        """Compile every template; returns the errors (broken templates stay unavailable,
        the others serve)."""
        self._version = fingerprint(self.blocks_dir, self.templates_dir)
        self._checked_at = time.monotonic()
        compiled, broken, errors = _compile_all(
            self.blocks_dir, self.templates_dir, self._version, fold=self._share
        )
        self._compiled, self._broken = dict(compiled), dict(broken)
        self._fragments.clear()
        for error in broken.values():
            log.error("template not available: %s", error)
        return list(errors)

    def reference(self) -> Renderer:
        """A twin over the same templates and data that renders every piece per reader
        and reads the blocks' params at render time: what this renderer's output must
        equal byte for byte (`kairos check` compares them)."""
        return self.twin(share=False)

    def twin(self, *, share: bool) -> Renderer:
        """A fresh renderer (nothing cached yet) over the same templates and data,
        templates not reloaded; `share` as for the constructor."""
        twin = Renderer(
            blocks_dir=self.blocks_dir,
            templates_dir=self.templates_dir,
            tokens=self._tokens,
            profiles=self._profiles,
            reader=self._reader,
            metrics=self._metrics,
            public_url=self._public_url,
            budget_s=self._budget_s,
            reload=False,
            share=share,
            signer=self._signer,
        )
        twin.load()
        return twin

    def names(self) -> list[str]:
        return sorted({*self._compiled, *self._broken} - {"*"})

    def compiled(self, name: str) -> Compiled:
        """The compiled template `name`: 404 if unknown, 422 if it does not compile."""
        if self._reload and time.monotonic() - self._checked_at > RELOAD_CHECK_S:
            self._checked_at = time.monotonic()
            if fingerprint(self.blocks_dir, self.templates_dir) != self._version:
                log.info("template files changed: recompiling")
                self.load()
        found = self._compiled.get(name)
        if found is not None:
            return found
        error = self._broken.get(name) or self._broken.get("*")
        if error is not None:
            raise TemplateBroken(f"template {name!r} does not compile: {error}")
        raise NotFound(f"no template named {name!r}", code="template_not_found")

    def samples(self, name: str) -> dict[str, dict[str, Any]]:
        return load_samples(self.compiled(name).source.folder)

    # -- rendering -------------------------------------------------------------------

    async def render(
        self,
        template: str,
        user_id: str,
        *,
        profile: Profile | None = None,
        campaign: str | None = None,
        formats: tuple[str, ...] = FORMATS,
        lookup: Lookup | None = None,
    ) -> RenderResult:
        """Render `template` for one reader; the profile comes from the request when
        given, else from `lookup` when given (see `lookup()`), else from the store
        within the time budget."""
        compiled = self.compiled(template)
        deadline = asyncio.get_running_loop().time() + self._budget_s
        reason = None
        if profile is None:
            if lookup is None:
                lookup = await self.lookup(user_id)
            profile, reason = lookup.profile, lookup.reason
            if profile is None and reason is None:
                reason = Reason.MISSING_PROFILE
        data = await self._data(profile or {}, deadline, compiled.reads)
        return self.render_data(compiled, user_id, profile, data, reason, campaign, formats)

    async def lookup(self, user_id: str) -> Lookup:
        """The reader's profile through the cache, within the time budget."""
        return await self._profiles.get(user_id, self._budget_s)

    async def _data(
        self, profile: Profile, deadline: float, reads: frozenset[str] = FEED_DATA
    ) -> dict[str, Any]:
        """Cart lines and recommendations (those of them the template `reads`), completed
        from the catalog; empty when they cannot be had (the blocks that need them fall
        back: the one place a render swaps in fallbacks is `_mode`)."""
        if not personalized(profile):
            profile = {}
        reader = self._reader
        data: dict[str, Any] = {"cart": [], "recommendations": []}
        for name, read in (("cart", reader.cart), ("recommendations", reader.recommendations)):
            if name not in reads:
                continue
            try:
                data[name] = await read(profile, GRID_SIZE, deadline)
            except Exception as exc:  # noqa: BLE001 - the email is complete whatever fails
                if reason_for(exc) is Reason.ERROR:
                    log.exception("render: reading the reader's %s failed", name)
                else:
                    log.debug("render: no %s: %s", name, exc)
        return data

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
        """The Jinja part of a render (no I/O)."""
        source = compiled.source
        profile = profile or {}
        personal = profile != {} and personalized(profile)
        segments = [s for s in profile.get("segments") or [] if isinstance(s, str)]
        variant = assign(source.variants, campaign or source.name, user_id)
        consent = {"personalization": personal, "tracking": tracked(profile)}
        home = source.links.get("home", self._public_url)
        links = Links(
            self._signer, self._public_url, user_id, campaign, home, tracking=consent["tracking"]
        )
        locale = profile.get("locale") or "en"
        # Missing fields stay undefined, so `{{ first_name | default("there") }}` works.
        ctx: dict[str, Any] = dict(GLOBALS)
        for key in ("first_name", "last_name", "tier", "loyalty_points"):
            if profile.get(key) is not None:
                ctx[key] = profile[key]
        ctx.update(
            {
                "locale": locale,
                "attributes": profile.get("attributes") or {},
                "cart": data["cart"] if personal else [],
                "recommendations": data["recommendations"],
                "segments": segments,
                "variant": variant,
                "campaign": campaign,
                "consent": consent,
                "theme": source.theme,
                "template_links": source.links,
                "links": links,
                "user_id": user_id,
            }
        )
        modes, params, fallbacks = [], [], []
        for use, block in zip(source.blocks, compiled.blocks, strict=True):
            mode, why = _mode(block, use.when, ctx, segments, variant, consent, reason)
            modes.append(mode)
            params.append(use.params)
            if why is not None:
                fallbacks.append({"block": block.name, "reason": why})
                self._metrics.fallbacks.labels("block", block.name, why).inc()
        ctx["_mode"], ctx["_params"] = modes, params
        # What the shared parts of the email may depend on (app/render/layout.py).
        keys = {
            "variant": variant,
            "campaign": campaign,
            "locale": locale,
            "consent": (personal, consent["tracking"]),
            "links": (campaign, consent["tracking"]),
            "segments": tuple(segments),
            "_mode": tuple(modes),
        }
        render = ReaderRender(self._fragments, ctx, keys, compiled.bodies).render
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
        if links.unsafe:
            unsafe = len(set(links.unsafe))
            warnings.append(f"{unsafe} link(s) with unsafe targets sent home")
        return RenderResult(
            subject, preheader, html, amp, text, segments, variant, fallbacks, warnings
        )


@functools.lru_cache(maxsize=8)
def _compile_all(
    blocks_dir: Path, templates_dir: Path, version: str, *, fold: bool = True
) -> tuple[dict[str, Compiled], dict[str, SourceError], tuple[SourceError, ...]]:
    """Every template compiled, those that failed, and all errors. A pure function of
    the files (`version` is their fingerprint), memoized: apps built in one process
    (workers' reloads, tests) share the work."""
    compiled: dict[str, Compiled] = {}
    broken: dict[str, SourceError] = {}
    try:
        blocks, broken_blocks = load_blocks(blocks_dir)
    except SourceError as exc:
        return {}, {"*": exc}, (exc,)
    theme_css = _read(templates_dir / "theme.css")
    amp_css = _read(templates_dir / "theme.amp.css")
    for folder in sorted(templates_dir.iterdir()):
        if not (folder / "template.json").is_file():
            continue
        try:
            source = load_template(folder, blocks, broken_blocks)
            compiled[folder.name] = compile_template(
                source,
                blocks,
                ENVIRONMENTS,
                version=version,
                theme_css=theme_css,
                amp_css=amp_css,
                fold=fold,
            )
        except SourceError as exc:
            broken[folder.name] = exc
    reported = {str(e) for e in broken.values()}
    errors = (*broken.values(), *(e for e in broken_blocks.values() if str(e) not in reported))
    return compiled, broken, errors


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


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


@pass_context
def _click(context: Any, url: Any) -> str:
    # The render's own `links` (a template's `{% set links %}` cannot redirect clicks).
    links: Links = context.parent["links"]
    return links.click(url if type(url) is str else str(url))


def _money(amount: Any, currency: str | None = None) -> str:
    return money(float(amount), currency) if amount is not None else ""


def _number(value: Any, decimals: int = 0) -> str:
    """A number with thousands separators (`12345 | number` is "12,345"); "" for what is
    not a number."""
    if isinstance(value, int) and not decimals:
        return f"{value:,}"
    try:
        return f"{float(value):,.{int(decimals)}f}"
    except (TypeError, ValueError):
        return ""


def _title(value: Any) -> str:
    """Jinja's `title`, with a fast path for one word (a tier, a first name): the same
    result without its regular expression."""
    if type(value) is str and value.isalnum():
        return value[0].upper() + value[1:].lower()
    return do_title(value)


# The sandboxes hold nothing per app (their filters are pure functions): shared.
FILTERS: dict[str, Callable[..., Any]] = {
    "click": _click,
    "money": _money,
    "number": _number,
    "title": _title,
    SHARED_BODY_FILTER: shared_body,
}
# What templates call on `links` (`{{ links.feed('cart') }}`, `links.image(...)`).
LINK_METHODS = frozenset({"feed", "image", "pixel", "click", "product_click"})
ENVIRONMENTS = Environments.build(FILTERS, {Links: LINK_METHODS, FillLinks: LINK_METHODS})
GLOBALS = dict(ENVIRONMENTS.html.globals)
