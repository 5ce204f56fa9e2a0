"""Blocks and templates as designers write them, read from `blocks/` and `templates/`.

A block is a folder `blocks/<name>/` holding `block.json` (metadata), `block.mjml`
(required), and optionally `block.amp.html`, `block.txt`, `block.amp.css` and a
fallback for each part (`fallback.mjml`, `fallback.amp.html`, `fallback.txt`).

A template is a folder `templates/<name>/` holding `template.json` (subject, preheader,
variants, the ordered blocks with their conditions and parameters) and `samples/*.json`
(sample profiles for preview and tests).

Files are read in one place (`read_block_files`, `load_template`), then parsed: a block
or template given in memory (a preview of an unsaved edit) is parsed the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from app.reader.formats import DEFAULT_LANGUAGE
from app.render.headers import BadUnsubscribe, esp_unsubscribe

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
CONSENTS = ("personalization", "tracking")
BLOCK_KEYS = frozenset(
    {"description", "needs", "personal", "feed", "image", "amp_extensions", "params"}
)
TEMPLATE_KEYS = frozenset(
    {"description", "language", "subject", "preheader", "variants", "blocks", "theme", "links"}
    | {"unsubscribe_one_click"}
)
USE_KEYS = frozenset({"block", "when", "params"})
WHEN_KEYS = frozenset({"segment", "not_segment", "variant", "consent"})
# The files of a block folder (any other file there is not read).
BLOCK_FILES: tuple[str, ...] = (
    "block.json",
    "block.mjml",
    "block.amp.html",
    "block.txt",
    "block.amp.css",
)
BLOCK_FILES += ("fallback.mjml", "fallback.amp.html", "fallback.txt")


class SourceError(ValueError):
    """A block or template file is invalid; `str()` is `file:line: message`."""

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        self.path, self.line, self.message = str(path), line, message
        where = f"{path}:{line}" if line else f"{path}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Part:
    """One file of a block: its text and where it came from (for error messages)."""

    path: Path
    text: str


@dataclass(frozen=True)
class Block:
    name: str
    folder: Path
    mjml: Part
    amp: Part | None
    text: Part | None
    amp_css: str
    fallback_mjml: Part | None
    fallback_amp: Part | None
    fallback_text: Part | None
    description: str = ""
    needs: tuple[str, ...] = ()
    personal: bool = False
    feed: str | None = None
    image: str | None = None
    amp_extensions: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class When:
    """Show a block only if all of these hold."""

    segment: str | None = None
    not_segment: str | None = None
    variant: str | None = None
    consent: str | None = None


@dataclass(frozen=True)
class BlockUse:
    block: str
    when: When
    params: dict[str, Any]


@dataclass(frozen=True)
class TemplateSource:
    name: str
    folder: Path
    subject: str
    preheader: str
    variants: dict[str, int]
    blocks: tuple[BlockUse, ...]
    theme: dict[str, str]
    links: dict[str, str]
    description: str = ""
    # The ESP's `links.unsubscribe` supports RFC 8058 one-click (List-Unsubscribe-Post).
    unsubscribe_one_click: bool = False
    # The language its copy is written in (BCP 47): `<html lang>`, direction, formats.
    language: str = DEFAULT_LANGUAGE


def _read_json(path: Path) -> Any:
    try:
        return parse_json(path, path.read_bytes())
    except FileNotFoundError:
        raise SourceError(path, "file is missing") from None


def parse_json(path: Path, data: bytes | str) -> Any:
    """`data`, the JSON of file `path`; `SourceError` naming its line when invalid."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        line = getattr(exc, "lineno", None)
        raise SourceError(path, f"invalid JSON: {exc.msg}", line) from None


def _part(folder: Path, files: Mapping[str, str], filename: str) -> Part | None:
    text = files.get(filename)
    return None if text is None else Part(folder / filename, text)


def read_block_files(folder: Path) -> dict[str, str]:
    """The block files (`BLOCK_FILES`) found in `folder`, by name."""
    files = {}
    for filename in BLOCK_FILES:
        path = folder / filename
        if path.is_file():
            try:
                files[filename] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise SourceError(path, "is not UTF-8 text") from None
    return files


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SourceError(path, f'"{key}" must be a list of strings')
    return tuple(value)


def load_block(folder: Path) -> Block:
    """The block in `folder`, or `SourceError` naming the file at fault."""
    return parse_block(folder, read_block_files(folder))


def parse_block(folder: Path, files: Mapping[str, str]) -> Block:
    """The block of `files` (its files' texts by name) as if saved in `folder`."""
    name = folder.name
    meta_path = folder / "block.json"
    if not NAME.fullmatch(name):
        raise SourceError(folder, "block names are lower-case letters, digits and _")
    if "block.json" not in files:
        raise SourceError(meta_path, "file is missing")
    meta = parse_json(meta_path, files["block.json"])
    if not isinstance(meta, dict):
        raise SourceError(meta_path, "must be a JSON object")
    unknown = set(meta) - BLOCK_KEYS
    if unknown:
        raise SourceError(meta_path, f"unknown keys {sorted(unknown)}")
    mjml = _part(folder, files, "block.mjml")
    if mjml is None:
        raise SourceError(folder / "block.mjml", "file is missing: every block needs one")
    css = _part(folder, files, "block.amp.css")
    params = meta.get("params", {})
    if not isinstance(params, dict):
        raise SourceError(meta_path, '"params" must be an object of defaults')
    return Block(
        name=name,
        folder=folder,
        mjml=mjml,
        amp=_part(folder, files, "block.amp.html"),
        text=_part(folder, files, "block.txt"),
        amp_css=css.text if css else "",
        fallback_mjml=_part(folder, files, "fallback.mjml"),
        fallback_amp=_part(folder, files, "fallback.amp.html"),
        fallback_text=_part(folder, files, "fallback.txt"),
        description=str(meta.get("description", "")),
        needs=_strings(meta_path, "needs", meta.get("needs", [])),
        personal=bool(meta.get("personal", False)),
        feed=meta.get("feed"),
        image=meta.get("image"),
        amp_extensions=_strings(meta_path, "amp_extensions", meta.get("amp_extensions", [])),
        params=params,
    )


def load_blocks(root: Path) -> tuple[dict[str, Block], dict[str, SourceError]]:
    """Every block under `root` by name, and the errors of those that do not load (only
    the templates using a broken block are broken)."""
    if not root.is_dir():
        raise SourceError(root, "blocks folder is missing")
    blocks, broken = {}, {}
    for folder in sorted(root.iterdir()):
        if folder.is_dir():
            try:
                blocks[folder.name] = load_block(folder)
            except SourceError as exc:
                broken[folder.name] = exc
    return blocks, broken


def load_template(
    folder: Path, blocks: dict[str, Block], broken: dict[str, SourceError] | None = None
) -> TemplateSource:
    """The template in `folder`, checked against the known `blocks`."""
    return parse_template(folder, _read_json(folder / "template.json"), blocks, broken)


def parse_template(
    folder: Path, doc: Any, blocks: dict[str, Block], broken: dict[str, SourceError] | None = None
) -> TemplateSource:
    """The template whose `template.json` holds `doc` (parsed JSON), as if saved in
    `folder`, checked against the known `blocks`."""
    path = folder / "template.json"
    if not isinstance(doc, dict):
        raise SourceError(path, "must be a JSON object")
    unknown = set(doc) - TEMPLATE_KEYS
    if unknown:
        raise SourceError(path, f"unknown keys {sorted(unknown)}")
    for key in ("subject", "blocks"):
        if key not in doc:
            raise SourceError(path, f'"{key}" is required')
    if not isinstance(doc["subject"], str) or not isinstance(doc.get("preheader", ""), str):
        raise SourceError(path, '"subject" and "preheader" must be strings')
    variants = doc.get("variants", {"A": 1})
    if (
        not isinstance(variants, dict)
        or not variants
        or not all(isinstance(w, int) and w >= 0 for w in variants.values())
        or sum(variants.values()) <= 0
    ):
        raise SourceError(path, '"variants" must map names to weights (integers, total > 0)')
    uses = []
    if not isinstance(doc["blocks"], list) or not doc["blocks"]:
        raise SourceError(path, '"blocks" must be a non-empty list')
    for i, use in enumerate(doc["blocks"]):
        where = f'"blocks"[{i}]'
        if isinstance(use, str):
            use = {"block": use}
        if not isinstance(use, dict) or set(use) - USE_KEYS or "block" not in use:
            raise SourceError(
                path, f'{where} must be a block name or {{"block", "when", "params"}}'
            )
        if broken and use["block"] in broken:
            raise broken[use["block"]]
        if use["block"] not in blocks:
            raise SourceError(path, f"{where}: no block named {use['block']!r} in blocks/")
        when = use.get("when", {})
        if not isinstance(when, dict) or set(when) - WHEN_KEYS:
            raise SourceError(path, f'{where}: "when" may only hold {sorted(WHEN_KEYS)}')
        if "variant" in when and when["variant"] not in variants:
            raise SourceError(path, f"{where}: variant {when['variant']!r} is not declared")
        if "consent" in when and when["consent"] not in CONSENTS:
            raise SourceError(path, f"{where}: consent must be one of {list(CONSENTS)}")
        params = use.get("params", {})
        if not isinstance(params, dict):
            raise SourceError(path, f'{where}: "params" must be an object')
        block = blocks[use["block"]]
        uses.append(BlockUse(block.name, When(**when), {**block.params, **params}))
    theme = doc.get("theme", {})
    links = doc.get("links", {})
    if not isinstance(theme, dict) or not isinstance(links, dict):
        raise SourceError(path, '"theme" and "links" must be objects')
    for key, url in links.items():
        if key == "unsubscribe":
            try:
                esp_unsubscribe(url)
            except BadUnsubscribe as exc:
                raise SourceError(path, f'"links.unsubscribe" {exc}') from None
        elif not isinstance(url, str) or not re.match(r"https?://[^/\s]", url):
            raise SourceError(path, f'"links.{key}" must be an absolute http(s) URL')
    one_click = doc.get("unsubscribe_one_click", False)
    if not isinstance(one_click, bool):
        raise SourceError(path, '"unsubscribe_one_click" must be true or false')
    return TemplateSource(
        name=folder.name,
        folder=folder,
        subject=doc["subject"],
        preheader=doc.get("preheader", ""),
        variants=variants,
        blocks=tuple(uses),
        theme={str(k): str(v) for k, v in theme.items()},
        links={str(k): str(v) for k, v in links.items()},
        description=str(doc.get("description", "")),
        unsubscribe_one_click=one_click,
        language=str(doc.get("language", DEFAULT_LANGUAGE)),  # checked when compiled
    )


def load_samples(folder: Path) -> dict[str, dict[str, Any]]:
    """The template's sample profiles, by file stem."""
    samples = {}
    for path in sorted((folder / "samples").glob("*.json")):
        doc = _read_json(path)
        if not isinstance(doc, dict):
            raise SourceError(path, "a sample profile must be a JSON object")
        samples[path.stem] = doc
    return samples
