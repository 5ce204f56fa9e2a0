"""`POST /v1/preview` as the studio calls it: a template (or one block alone, its
fallback forced or not) of the saved files or of an unsaved edit, rendered for one
reader (a sample profile, a stored reader read as a real render reads it, or a profile
given inline) with overrides of variant, segment and consent for this preview only;
the blocks marked when asked, the AMP part validated when asked, and diagnostics:
which blocks fell back, why and from which file, the AMP verdict, the timings.

A preview is never a send: nothing is counted, nothing is written."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.errors import NotFound
from app.profiles.cache import Lookup
from app.profiles.schema import inline_profile
from app.render.compiler import Compiled
from app.render.layout import Output
from app.render.registry import compile_files
from app.render.renderer import Renderer
from app.render.result import RenderResult, TemplateBroken
from app.render.sources import Part, SourceError, load_blocks
from app.studio import annotate, diagnostics, gallery
from app.studio.ampcheck import SKIPPED, AmpCheck
from app.studio.ask import Ask
from app.studio.diagnostics import Sources


@dataclass(frozen=True)
class Previewed:
    """A preview: the render as it would be sent (`result`, never annotated), the HTML
    and AMP the page shows (annotated when asked), and the diagnostics."""

    result: RenderResult
    html: str | None
    amp: str | None
    diagnostics: dict[str, Any]

    def body(self) -> dict[str, Any]:
        body = self.result.body()
        body.update(html=self.html, amp=self.amp, diagnostics=self.diagnostics)
        return body


class Previews:
    """Previews over the app's renderer (its registry and reader data) and the AMP
    validator service."""

    def __init__(self, renderer: Renderer, amp_check: AmpCheck) -> None:
        self.renderer, self.amp_check = renderer, amp_check
        self.registry = renderer.templates
        self.markers = annotate.Markers(self.registry.environments)

    async def preview(self, doc: Any, *, annotated: bool | None = None) -> Previewed:
        """The preview `doc` asks for (the body of `POST /v1/preview`); `annotated`
        overrides its `annotate` (False for what is sent). A designer's mistake is
        `TemplateBrokenAt`, with file, line and snippet."""
        ask = Ask.parse(doc)
        if annotated is not None:
            ask = replace(ask, annotate=annotated)
        registry = self.registry
        sources = Sources(
            registry.blocks_dir, registry.templates_dir, ask.frame or ask.req.template, ask.files
        )
        started = time.perf_counter()
        compiled = await self._compiled(ask, sources)
        if ask.block is not None and ask.fallback:
            compiled = gallery.forced_fallback(compiled)
        compiled = ask.overrides.template(compiled)
        if ask.annotate:
            compiled = self.markers.annotated(compiled)
        compile_ms = _ms(started)

        req = ask.req
        lookup = await self._reader(ask, compiled)
        started = time.perf_counter()
        try:
            result = await self.renderer.render(
                compiled,
                req.user_id,
                profile=req.profile,
                lookup=lookup,
                formats=req.formats,
                campaign=req.campaign,
                unsubscribe=req.unsubscribe_url,
            )
        except TemplateBroken as exc:
            raise diagnostics.render_broken(exc, compiled, registry.environments, sources) from None
        render_ms = _ms(started)
        if ask.block is not None and ask.fallback:
            for entry in result.fallbacks:
                if entry.get("block") == ask.block:
                    entry["reason"] = "forced"
        fallbacks = diagnostics.fallback_files(result, compiled, sources)
        html, amp = result.html, result.amp
        if ask.annotate:
            reasons = [entry["reason"] for entry in fallbacks]
            html, amp = (
                None
                if text is None
                else annotate.mark(text, compiled.blocks, reasons, sources.name, amp=is_amp)
                for text, is_amp in ((result.html, False), (result.amp, True))
            )
            result = _clean(result)
        verdict = SKIPPED
        if ask.validate_amp and result.amp is not None:
            verdict = await self.amp_check.check(result.amp)
        timings = {"compile_ms": compile_ms, "render_ms": render_ms, "amp_ms": round(verdict.ms, 2)}
        diagnosed = {"fallbacks": fallbacks, "amp": verdict.body(), "timings": timings}
        return Previewed(result, html, amp, diagnosed)

    async def _reader(self, ask: Ask, compiled: Compiled) -> Lookup | None:
        """Sets the reader's profile on `ask.req` (a sample's, or a stored reader's when
        found), with the overrides; a stored reader's lookup, for its fallback reason."""
        req, lookup = ask.req, None
        if ask.sample is not None:
            samples = self.registry.samples(compiled)
            if ask.sample not in samples:
                raise NotFound(f"template {compiled.source.name!r} has no sample {ask.sample!r}")
            req.profile = inline_profile(samples[ask.sample])
        elif ask.stored:
            lookup = await self.renderer.lookup(req.user_id)
            if lookup.profile is not None:
                req.profile = dict(lookup.profile)
        if req.profile is not None and ask.overrides:
            req.profile = ask.overrides.profile(req.profile)
        return lookup

    async def _compiled(self, ask: Ask, sources: Sources) -> Compiled:
        """The template to render: the registry's, or compiled now from the edits (or
        for a block alone), in a worker thread."""
        name, files = ask.req.template, ask.files
        registry = self.registry
        try:
            if ask.block is not None:
                edited = (files or {}).get("template.json")
                name, frame = await asyncio.to_thread(
                    gallery.template_json, registry, ask.block, ask.frame, edited
                )
                files = {**(files or {}), "template.json": frame}
            if files is None:
                return registry.compiled(name)
            return await asyncio.to_thread(
                compile_files,
                name,
                files,
                registry.blocks_dir,
                registry.templates_dir,
                registry.environments,
                fold=registry.fold,
            )
        except SourceError as exc:
            error = exc
        except TemplateBroken:
            found = registry.current.broken.get(name) or registry.current.broken.get("*")
            if found is None:
                raise
            error = found
        parts = await asyncio.to_thread(_mjml_parts, registry.blocks_dir, files or {})
        raise diagnostics.source_broken(error, sources, parts)


def _clean(result: RenderResult) -> RenderResult:
    """An annotated render without its markers: the email as it would be sent."""
    html, amp = (
        None if text is None else annotate.clean(text) for text in (result.html, result.amp)
    )
    return replace(
        result,
        html_output=None if html is None else Output([html]),
        amp_output=None if amp is None else Output([amp]),
    )


def _mjml_parts(blocks_dir: Path, files: Mapping[str, str]) -> list[Part]:
    """The blocks' MJML, the edited first: where to look for what MJML refused."""
    parts = [
        Part(blocks_dir.joinpath(*path.split("/")[1:]), text)
        for path, text in files.items()
        if path.startswith("blocks/") and path.endswith(".mjml") and ".." not in path
    ]
    try:
        blocks, _ = load_blocks(blocks_dir)
    except SourceError:
        return parts
    for block in blocks.values():
        parts += [part for part in (block.mjml, block.fallback_mjml) if part is not None]
    return parts


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
