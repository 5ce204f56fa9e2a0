"""The block gallery: every block with its files, parts, the templates using it and the
sample profiles it can be shown with (`GET /v1/blocks`); and the minimal email that
shows one block alone (a preview's `block`), in a template's frame when a sample of
that template is given."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from app.errors import NotFound, Unprocessable
from app.render.compiler import Compiled
from app.render.registry import TemplateRegistry
from app.render.sources import (
    BLOCK_FILES,
    NAME,
    SourceError,
    load_blocks,
    load_samples,
    parse_json,
)

# Each part of a block, by the file that holds it.
PARTS = (
    ("block.mjml", "mjml"),
    ("block.amp.html", "amp"),
    ("block.txt", "text"),
    ("block.amp.css", "amp_css"),
    ("fallback.mjml", "fallback"),
    ("fallback.amp.html", "fallback_amp"),
    ("fallback.txt", "fallback_text"),
)
# Never true of a render's context: a block that needs it always falls back.
FORCED = "kairos_forced_fallback"
FALLBACK_FILES = frozenset({"fallback.mjml", "fallback.amp.html", "fallback.txt"})


def listing(registry: TemplateRegistry) -> list[dict[str, Any]]:
    """Every block of the blocks folder (reads files: call it from a worker thread)."""
    blocks, broken = load_blocks(registry.blocks_dir)
    compiled = registry.current.compiled
    used_by: dict[str, list[str]] = {}
    for template, each in sorted(compiled.items()):
        for name in dict.fromkeys(use.block for use in each.source.blocks):
            used_by.setdefault(name, []).append(template)
    samples = {
        template: sorted(load_samples(each.source.folder)) for template, each in compiled.items()
    }
    found = []
    for name in sorted({*blocks, *broken}):
        folder = registry.blocks_dir / name
        files = [f for f in BLOCK_FILES if (folder / f).is_file()]
        entry: dict[str, Any] = {
            "name": name,
            "description": blocks[name].description if name in blocks else "",
            "files": [f"blocks/{name}/{f}" for f in files],
            "parts": [part for file, part in PARTS if file in files],
            "has_fallback": bool(FALLBACK_FILES.intersection(files)),
            "used_by": used_by.get(name, []),
            "samples": [
                f"{template}/{sample}"
                for template in used_by.get(name, [])
                for sample in samples.get(template, [])
            ],
        }
        if name in broken:
            error = broken[name]
            entry["error"] = f"blocks/{name}/{Path(error.path).name}: {error.message}"
        found.append(entry)
    return found


def split_sample(sample: str, template: str | None) -> tuple[str | None, str]:
    """A gallery sample `template/sample` (or a sample of `template`) as its two names."""
    if "/" in sample:
        owner, _, name = sample.partition("/")
        if template is not None and owner != template:
            raise Unprocessable("sample: a sample of another template", field="sample")
        return owner, name
    return template, sample


def template_json(
    registry: TemplateRegistry, block: str, template: str | None, edited: str | None
) -> tuple[str, str]:
    """The name and `template.json` of the minimal email showing `block` alone: in the
    frame of `template` (its subject, links, theme, language and variants, and the
    block's params there) when given, else bare. Reads a file: from a worker thread."""
    if not NAME.fullmatch(block):
        raise Unprocessable("block: a block name", field="block")
    if template is None:
        return block, orjson.dumps({"subject": block, "blocks": [block]}).decode()
    if not NAME.fullmatch(template):
        raise NotFound(f"no template named {template!r}", code="template_not_found")
    path = registry.templates_dir / template / "template.json"
    if edited is None:
        if not path.is_file():
            raise NotFound(f"no template named {template!r}", code="template_not_found")
        edited = path.read_text(encoding="utf-8")
    doc = parse_json(path, edited)
    if not isinstance(doc, dict) or not isinstance(doc.get("blocks"), list):
        raise SourceError(path, '"blocks" must be a non-empty list')
    params: Any = {}
    for use in doc["blocks"]:
        if use == block or (isinstance(use, dict) and use.get("block") == block):
            params = use.get("params", {}) if isinstance(use, dict) else {}
            break
    else:
        raise Unprocessable(
            f"block: template {template!r} does not use block {block!r}", field="block"
        )
    frame = {k: v for k, v in doc.items() if k not in ("blocks", "description")}
    frame["blocks"] = [{"block": block, "params": params}]
    return template, orjson.dumps(frame).decode()


def forced_fallback(compiled: Compiled) -> Compiled:
    """`compiled` (a block alone) with its block always falling back."""
    block = compiled.blocks[0]
    if not (block.fallback_mjml or block.fallback_amp or block.fallback_text):
        raise Unprocessable(f"block {block.name!r} has no fallback", code="no_fallback")
    forced = replace(block, needs=(*block.needs, FORCED))
    return replace(compiled, blocks=(forced, *compiled.blocks[1:]))
