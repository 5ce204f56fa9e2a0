"""One version of the designers' folders compiled: every template of `blocks/` and
`templates/`, what each compile read (a digest), and the errors. A template whose
inputs did not change since the last version is carried over, not compiled again: a
saved block recompiles only the templates that use it, the theme all of them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

from app.render.compiler import Compiled, compile_template
from app.render.environments import Environments
from app.render.memo import NONE, Memo, Used, reusing
from app.render.sources import Block, SourceError, TemplateSource, load_blocks, load_template


@dataclass(frozen=True)
class TemplateSet:
    """Every template of one version of the files (`version`, their fingerprint):
    compiled, or the error that keeps it from compiling (under "*": none can); and
    every error found, those of blocks no template uses too. `inputs`: a digest of what
    each template's compile read (see `inputs_of`); `fresh`: the templates compiled for
    this version, the others were carried over from the last one."""

    version: str
    compiled: Mapping[str, Compiled]
    broken: Mapping[str, SourceError]
    errors: tuple[SourceError, ...]
    inputs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    fresh: frozenset[str] = frozenset()
    # What each template's compile made, for its next one (app/render/memo.py).
    memos: Mapping[str, Used] = field(default_factory=lambda: MappingProxyType({}))


NOTHING = TemplateSet("", MappingProxyType({}), MappingProxyType({}), ())


def inputs_of(source: TemplateSource, blocks: Mapping[str, Block], css: tuple[str, str]) -> str:
    """A digest of everything `compile_template` reads for `source`: the template, the
    blocks it uses and the theme (the same digest, the same compiled template)."""
    used = [blocks[use.block] for use in source.blocks]
    return hashlib.blake2b(repr((source, used, css)).encode(), digest_size=16).hexdigest()


def fingerprint(*roots: Path) -> str:
    """Changes whenever a file under `roots` is added, removed or modified."""
    digest = hashlib.blake2b(digest_size=12)
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                stat = path.stat()
                digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    return digest.hexdigest()


def compile_folder(
    blocks_dir: Path,
    templates_dir: Path,
    envs: Environments,
    *,
    version: str,
    fold: bool,
    last: TemplateSet = NOTHING,
) -> TemplateSet:
    """Every template of the folders compiled: a pure function of the files (`version`
    is their fingerprint). `fold` as for `compile_template`. A template whose inputs
    are those it had in `last` (the same `fold` and environments) is carried over from
    it, not compiled again."""
    compiled: dict[str, Compiled] = {}
    broken: dict[str, SourceError] = {}
    inputs: dict[str, str] = {}
    fresh: set[str] = set()
    memos: dict[str, Used] = {}
    try:
        blocks, broken_blocks = load_blocks(blocks_dir)
    except SourceError as exc:
        return TemplateSet(version, MappingProxyType({}), MappingProxyType({"*": exc}), (exc,))
    css = read_theme(templates_dir)
    for folder in sorted(templates_dir.iterdir()):
        if not (folder / "template.json").is_file():
            continue
        name = folder.name
        try:
            source = load_template(folder, blocks, broken_blocks)
            inputs[name] = digest = inputs_of(source, blocks, css)
            if last.inputs.get(name) == digest:
                if name in last.compiled:
                    compiled[name] = replace(last.compiled[name], version=version)
                    memos[name] = last.memos.get(name, NONE)
                    continue
                if name in last.broken:
                    raise last.broken[name]
            fresh.add(name)
            # (a template that breaks keeps its last memo, for when it is mended)
            memos[name] = last.memos.get(name, NONE)
            with reusing(Memo(memos[name])) as memo:
                compiled[name] = compile_template(
                    source,
                    blocks,
                    envs,
                    version=version,
                    theme_css=css[0],
                    amp_css=css[1],
                    fold=fold,
                )
            memos[name] = memo.used
        except SourceError as exc:
            broken[name] = exc
    reported = {str(e) for e in broken.values()}
    errors = (*broken.values(), *(e for e in broken_blocks.values() if str(e) not in reported))
    return TemplateSet(
        version,
        MappingProxyType(compiled),
        MappingProxyType(broken),
        errors,
        MappingProxyType(inputs),
        frozenset(fresh),
        MappingProxyType(memos),
    )


def read_theme(templates_dir: Path) -> tuple[str, str]:
    """The theme's style sheets: for the HTML part, and for the AMP part."""
    return _read(templates_dir / "theme.css"), _read(templates_dir / "theme.amp.css")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""
