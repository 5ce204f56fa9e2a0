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

from app.errors import NotFound, Unprocessable
from app.profiles.schema import inline_profile
from app.render.compiler import Compiled
from app.render.layout import Output
from app.render.registry import compile_files
from app.render.renderer import Renderer
from app.render.request import CAMPAIGN, RenderRequest
from app.render.result import RenderResult, TemplateBroken
from app.render.sources import Part, SourceError, load_blocks
from app.studio import annotate, diagnostics, gallery
from app.studio.ampcheck import SKIPPED, AmpCheck
from app.studio.diagnostics import Sources

STUDIO_KEYS = ("sample", "files", "overrides", "block", "fallback", "annotate", "validate_amp")
READERS = ("sample", "user_id", "profile")
CONSENTS = ("personalization", "tracking", "email")
# Who a preview of a sample or an inline profile is rendered for.
PREVIEW_READER = "preview"


@dataclass(frozen=True)
class Overrides:
    """Variant, primary segment and consents imposed on the reader for one preview."""

    variant: str | None = None
    segment: str | None = None
    consent: Mapping[str, bool] | None = None

    @classmethod
    def parse(cls, doc: Any) -> Overrides:
        if doc is None:
            return cls()
        if not isinstance(doc, dict) or set(doc) - {"variant", "segment", "consent"}:
            raise Unprocessable(
                "overrides: an object of variant, segment and consent", field="overrides"
            )
        variant, segment, consent = doc.get("variant"), doc.get("segment"), doc.get("consent")
        for key, value in (("variant", variant), ("segment", segment)):
            if value is not None and not (isinstance(value, str) and CAMPAIGN.fullmatch(value)):
                raise Unprocessable(f"overrides.{key}: a name", field=f"overrides.{key}")
        if consent is not None and (
            not isinstance(consent, dict)
            or set(consent) - set(CONSENTS)
            or not all(isinstance(v, bool) for v in consent.values())
        ):
            raise Unprocessable(
                f"overrides.consent: true or false for any of {list(CONSENTS)}",
                field="overrides.consent",
            )
        return cls(variant, segment, consent)

    def template(self, compiled: Compiled) -> Compiled:
        """`compiled` drawing the overridden variant for every reader."""
        if self.variant is None:
            return compiled
        if self.variant not in compiled.source.variants:
            raise Unprocessable(
                f"overrides.variant: {compiled.source.name!r} has variants "
                f"{sorted(compiled.source.variants)}",
                field="overrides.variant",
            )
        return replace(compiled, source=replace(compiled.source, variants={self.variant: 1}))

    def profile(self, profile: dict[str, Any]) -> dict[str, Any]:
        """A copy of `profile` in the overridden segment, with the overridden consents."""
        changed = dict(profile)
        if self.segment is not None:
            found = changed.get("segments")
            if isinstance(found, dict):
                found = found.get("all")
            others = [s for s in found or () if isinstance(s, str) and s != self.segment]
            changed["segments"] = [self.segment, *others]
        if self.consent:
            changed["consent"] = {**(changed.get("consent") or {}), **self.consent}
        return changed

    def __bool__(self) -> bool:
        return self.variant is not None or self.segment is not None or bool(self.consent)


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
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        doc = dict(doc)
        given = [key for key in READERS if key in doc]
        if len(given) > 1:
            raise Unprocessable(
                f"{given[1]}: give one reader: sample, user_id or profile", field=given[1]
            )
        studio = {key: doc.pop(key) for key in STUDIO_KEYS if key in doc}
        files = _files(studio.get("files"))
        flags = {key: studio.get(key, False) for key in ("fallback", "annotate", "validate_amp")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise Unprocessable(f"{key}: true or false", field=key)
        if annotated is not None:
            flags["annotate"] = annotated
        overrides = Overrides.parse(studio.get("overrides"))
        block, sample = studio.get("block"), studio.get("sample")
        if sample is not None and not isinstance(sample, str):
            raise Unprocessable("sample: a sample's name", field="sample")
        template = doc.get("template")
        if block is not None:
            if not isinstance(block, str):
                raise Unprocessable("block: a block name", field="block")
            if sample is not None:
                template, sample = gallery.split_sample(sample, template)
        stored = "user_id" in doc
        doc.setdefault("user_id", PREVIEW_READER)
        if block is not None and template is None:
            doc.pop("template", None)
        req = RenderRequest(doc, template=template or block)
        sources = Sources(
            self.registry.blocks_dir, self.registry.templates_dir, template or req.template, files
        )

        started = time.perf_counter()
        compiled = await self._compiled(req.template, block, template, files, sources)
        if block is not None and flags["fallback"]:
            compiled = gallery.forced_fallback(compiled)
        compiled = overrides.template(compiled)
        if flags["annotate"]:
            compiled = self.markers.annotated(compiled)
        compile_ms = _ms(started)

        lookup = None
        if sample is not None:
            samples = self.registry.samples(compiled)
            if sample not in samples:
                raise NotFound(f"template {compiled.source.name!r} has no sample {sample!r}")
            req.profile = inline_profile(samples[sample])
        elif stored:
            lookup = await self.renderer.lookup(req.user_id)
            if lookup.profile is not None:
                req.profile = dict(lookup.profile)
        if req.profile is not None and overrides:
            req.profile = overrides.profile(req.profile)

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
            raise diagnostics.render_broken(
                exc, compiled, self.registry.environments, sources
            ) from None
        render_ms = _ms(started)
        if block is not None and flags["fallback"]:
            for entry in result.fallbacks:
                if entry.get("block") == block:
                    entry["reason"] = "forced"
        fallbacks = diagnostics.fallback_files(result, compiled, sources)
        html, amp = result.html, result.amp
        if flags["annotate"]:
            reasons = [entry["reason"] for entry in fallbacks]
            marked = [
                None
                if text is None
                else annotate.mark(text, compiled.blocks, reasons, sources.name, amp=is_amp)
                for text, is_amp in ((html, False), (amp, True))
            ]
            html, amp = (None if text is None else annotate.clean(text) for text in (html, amp))
            result = replace(
                result,
                html_output=None if html is None else Output([html]),
                amp_output=None if amp is None else Output([amp]),
            )
            html, amp = marked
        verdict = SKIPPED
        if flags["validate_amp"] and result.amp is not None:
            verdict = await self.amp_check.check(result.amp)
        return Previewed(
            result,
            html,
            amp,
            {
                "fallbacks": fallbacks,
                "amp": verdict.body(),
                "timings": {
                    "compile_ms": compile_ms,
                    "render_ms": render_ms,
                    "amp_ms": round(verdict.ms, 2),
                },
            },
        )

    async def _compiled(
        self,
        name: str,
        block: str | None,
        template: str | None,
        files: dict[str, str] | None,
        sources: Sources,
    ) -> Compiled:
        registry = self.registry
        try:
            if block is not None:
                edited = (files or {}).get("template.json")
                name, frame = await asyncio.to_thread(
                    gallery.template_json, registry, block, template, edited
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


def _files(files: Any) -> dict[str, str] | None:
    if files is not None and not (
        isinstance(files, dict) and all(isinstance(t, str) for t in files.values())
    ):
        raise Unprocessable("files: an object of file paths to their text", field="files")
    return files


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
