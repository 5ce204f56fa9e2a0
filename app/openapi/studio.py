"""The designer's studio paths of /openapi.json: the block gallery and previews."""

from __future__ import annotations

from typing import Any

from app.openapi.schemas import bearer, error, json, render_request, render_result
from app.studio.gallery import PARTS

BROKEN = (
    "a field is invalid (`invalid`, naming it), or the template does not compile or "
    "render (`template_broken`, with `file` under blocks/ or templates/, `line` and "
    "`snippet`: the lines around it, the bad one marked `>`)"
)


def studio_paths() -> dict[str, Any]:
    return {
        "/v1/blocks": {
            "get": {
                "summary": "The blocks: files, parts, fallback, the templates using each "
                "and the samples it can be previewed alone with",
                "security": bearer(),
                "responses": {
                    "200": json(
                        "the blocks",
                        {
                            "type": "object",
                            "properties": {"blocks": {"type": "array", "items": block()}},
                        },
                    ),
                    "401": error("no API key"),
                },
            }
        },
        "/v1/preview": {
            "post": {
                "summary": "Render a template, or one block alone, as a sample profile, a "
                "stored reader or an inline profile, of the saved files or of an unsaved "
                "edit, with diagnostics (never a send: nothing counted or written)",
                "security": bearer(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": preview_request()}},
                },
                "responses": {
                    "200": {
                        "description": "the render with `diagnostics`; with Accept: "
                        "message/rfc822 the MIME message that would be sent (never "
                        "annotated)",
                        "content": {
                            "application/json": {"schema": preview_result()},
                            "message/rfc822": {"schema": {"type": "string"}},
                        },
                    },
                    "401": error("no API key"),
                    "404": error("unknown template or sample"),
                    "409": error("the stored reader unsubscribed (`unsubscribed`)"),
                    "422": error(BROKEN),
                },
            }
        },
    }


def block() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "description": {"type": "string"},
            "files": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`blocks/<name>/<file>`",
            },
            "parts": {
                "type": "array",
                "items": {"enum": [part for _, part in PARTS]},
            },
            "has_fallback": {"type": "boolean"},
            "used_by": {"type": "array", "items": {"type": "string"}},
            "samples": {
                "type": "array",
                "items": {"type": "string"},
                "description": "`<template>/<sample>`: a `sample` for a preview of the block alone",
            },
            "error": {"type": "string", "description": "only when the block does not load"},
        },
    }


def preview_request() -> dict[str, Any]:
    schema = render_request()
    schema["required"] = []
    schema["description"] = (
        "One reader at most: `sample`, `user_id` (a stored reader) or `profile`; "
        "`template` is required unless `block` is given"
    )
    flag = {"type": "boolean", "default": False}
    schema["properties"].update(
        {
            "sample": {
                "type": "string",
                "description": "a sample profile of the template "
                "(with `block`: `<template>/<sample>`, as `GET /v1/blocks` lists)",
            },
            "files": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "unsaved edits by path: `template.json`, `blocks/<block>/<file>`",
            },
            "overrides": {
                "type": "object",
                "description": "for this preview only, never stored",
                "properties": {
                    "variant": {"type": "string"},
                    "segment": {"type": "string", "description": "the primary segment"},
                    "consent": {
                        "type": "object",
                        "properties": {
                            key: {"type": "boolean"}
                            for key in ("personalization", "tracking", "email")
                        },
                    },
                },
            },
            "block": {
                "type": "string",
                "description": "this block alone, in a minimal "
                "email (in the frame of the sample's template)",
            },
            "fallback": {**flag, "description": "with `block`: its fallback, forced"},
            "annotate": {
                **flag,
                "description": "each shown block of `html` and `amp` in "
                "an element with data-kairos-block, data-kairos-file and, when it "
                "fell back, data-kairos-fallback",
            },
            "validate_amp": {**flag, "description": "run the official AMP validator"},
        }
    )
    return schema


def preview_result() -> dict[str, Any]:
    result = render_result()
    ms = {"type": "number"}
    result.setdefault("properties", {})["diagnostics"] = {
        "type": "object",
        "properties": {
            "fallbacks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "block": {"type": "string"},
                        "reason": {"type": "string"},
                        "file": {"type": "string"},
                    },
                },
            },
            "amp": {
                "type": "object",
                "properties": {
                    "status": {"enum": ["PASS", "FAIL", "unavailable", "skipped"]},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "line": {"type": "integer"},
                                "col": {"type": "integer"},
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
            "timings": {
                "type": "object",
                "properties": {"compile_ms": ms, "render_ms": ms, "amp_ms": ms},
            },
        },
    }
    return result
