"""What a preview asks for (the body of `POST /v1/preview`), checked before anything is
compiled or read: `Unprocessable` names the first bad field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.errors import Unprocessable
from app.render.compiler import Compiled
from app.render.request import CAMPAIGN, RenderRequest
from app.studio.gallery import split_sample

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
class Ask:
    """A checked preview request. `req`: the render's own fields (its `template` is the
    block's name for a bare block); `frame`: the template a block alone is shown in;
    `stored`: the reader is `req.user_id` in the store."""

    req: RenderRequest
    files: dict[str, str] | None
    block: str | None
    frame: str | None
    sample: str | None
    stored: bool
    overrides: Overrides
    fallback: bool = False
    annotate: bool = False
    validate_amp: bool = False

    @classmethod
    def parse(cls, doc: Any) -> Ask:
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        doc = dict(doc)
        given = [key for key in READERS if key in doc]
        if len(given) > 1:
            raise Unprocessable(
                f"{given[1]}: give one reader: sample, user_id or profile", field=given[1]
            )
        studio = {key: doc.pop(key) for key in STUDIO_KEYS if key in doc}
        flags = {key: studio.get(key, False) for key in ("fallback", "annotate", "validate_amp")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise Unprocessable(f"{key}: true or false", field=key)
        files = studio.get("files")
        if files is not None and not (
            isinstance(files, dict) and all(isinstance(t, str) for t in files.values())
        ):
            raise Unprocessable("files: an object of file paths to their text", field="files")
        block, sample, frame = studio.get("block"), studio.get("sample"), doc.get("template")
        if sample is not None and not isinstance(sample, str):
            raise Unprocessable("sample: a sample's name", field="sample")
        if block is not None:
            if not isinstance(block, str):
                raise Unprocessable("block: a block name", field="block")
            if sample is not None:
                frame, sample = split_sample(sample, frame)
            doc.pop("template", None)
        stored = "user_id" in doc
        doc.setdefault("user_id", PREVIEW_READER)
        req = RenderRequest(doc, template=frame or block)
        return cls(
            req,
            files,
            block,
            frame if block is not None else None,
            sample,
            stored,
            Overrides.parse(studio.get("overrides")),
            **flags,
        )
