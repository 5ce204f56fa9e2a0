"""The templates: every template of `blocks/` and `templates/` compiled once and served
from memory, and templates compiled from files given in memory (a preview of an
unsaved edit).

With reload on, a request that finds the files unchecked for a second has them checked
in the registry's worker thread (or the designer's studio has them checked at once on a
save, `refresh`), which recompiles what changed: requests go on being answered with the
last version compiled (never waiting for a compile, of their template or another) until
the new one is swapped in whole. Only a template whose inputs changed (its
`template.json`, the files of the blocks it uses, the theme) is compiled again; the
others are carried over. A template whose new files are broken then answers 422, like
one broken at start-up."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.errors import NotFound
from app.render.compiler import Compiled, compile_template
from app.render.environments import Environments
from app.render.folder import NOTHING, TemplateSet, compile_folder, fingerprint, read_theme
from app.render.result import TemplateBroken
from app.render.sources import (
    BLOCK_FILES,
    NAME,
    SourceError,
    load_blocks,
    load_samples,
    load_template,
    parse_block,
    parse_json,
    parse_template,
    read_block_files,
)

log = logging.getLogger("kairos.render")

RELOAD_CHECK_S = 1.0
# Two: a preview compiles while the templates are recompiled. Never two recompiles.
COMPILE_THREADS = 2


def compile_files(
    name: str,
    files: Mapping[str, str],
    blocks_dir: Path,
    templates_dir: Path,
    envs: Environments,
    *,
    fold: bool = True,
) -> Compiled:
    """Template `name` compiled with `files` in place of the saved ones, by their paths
    in the sources: `template.json` (else the saved one) and `blocks/<block>/<file>`
    (over the block's saved files; a block may be new). Nothing is written; what is
    read is within the two folders."""
    # A security boundary: the names come from a request and become paths.
    if not NAME.fullmatch(name):
        raise SourceError(templates_dir / name, "names are lower-case letters, digits and _")
    edits: dict[str, dict[str, str]] = {}
    for path, text in files.items():
        parts = path.split("/")
        if parts == ["template.json"]:
            continue
        if (
            len(parts) != 3
            or parts[0] != "blocks"
            or not NAME.fullmatch(parts[1])
            or parts[2] not in BLOCK_FILES
        ):
            raise SourceError(path, "not a file of the template or of a block")
        edits.setdefault(parts[1], {})[parts[2]] = text
    blocks, broken = load_blocks(blocks_dir)
    for block, edited in edits.items():
        folder = blocks_dir / block
        saved = read_block_files(folder) if folder.is_dir() else {}
        blocks[block] = parse_block(folder, {**saved, **edited})
        broken.pop(block, None)
    folder = templates_dir / name
    template_json = files.get("template.json")
    if template_json is None:
        source = load_template(folder, blocks, broken)
    else:
        doc = parse_json(folder / "template.json", template_json)
        source = parse_template(folder, doc, blocks, broken)
    digest = hashlib.blake2b(repr(sorted(files.items())).encode(), digest_size=12)
    theme_css, amp_css = read_theme(templates_dir)
    return compile_template(
        source,
        blocks,
        envs,
        version=f"memory-{digest.hexdigest()}",
        theme_css=theme_css,
        amp_css=amp_css,
        fold=fold,
    )


class TemplateRegistry:
    """The templates of `blocks_dir` and `templates_dir`, compiled with `envs` (built
    here when not given). `fold`: the blocks' params are folded into their Jinja at
    compile time (False: read at every render, for the reference render)."""

    def __init__(
        self,
        blocks_dir: Path,
        templates_dir: Path,
        *,
        reload: bool,
        fold: bool = True,
        envs: Environments | None = None,
    ) -> None:
        self.blocks_dir, self.templates_dir = blocks_dir, templates_dir
        self.environments = envs or Environments.build()
        self.reload, self.fold = reload, fold
        self._current = NOTHING  # swapped whole, by the worker thread too
        self._checked_at = 0.0
        self._refresh: Future[TemplateSet] | None = None
        self._pool: ThreadPoolExecutor | None = None
        # One recompile at a time, whether a request's check or a watcher asked for it.
        self._compiling = threading.Lock()

    @property
    def current(self) -> TemplateSet:
        """The version of the templates being served."""
        return self._current

    def load(self) -> list[SourceError]:
        """Compile every template now (at start-up); returns the errors (broken
        templates stay unavailable, the others serve)."""
        version = fingerprint(self.blocks_dir, self.templates_dir)
        self._checked_at = time.monotonic()
        self._use(self._compile(version))
        return list(self._current.errors)

    def compiled(self, name: str) -> Compiled:
        """The compiled template `name`: 404 if unknown, 422 if it does not compile.
        Never waits for a compile (see the module's docstring)."""
        if self.reload and time.monotonic() - self._checked_at > RELOAD_CHECK_S:
            self._check()
        current = self._current
        found = current.compiled.get(name)
        if found is not None:
            return found
        error = current.broken.get(name) or current.broken.get("*")
        if error is not None:
            raise TemplateBroken(f"template {name!r} does not compile: {self._public(error)}")
        raise NotFound(f"no template named {name!r}", code="template_not_found")

    def _public(self, error: SourceError) -> str:
        """`error` as an API client may read it: files named from the blocks' and the
        templates' folders, never by where this server keeps them."""
        text = str(error)
        for root, name in ((self.templates_dir, "templates"), (self.blocks_dir, "blocks")):
            text = text.replace(str(root), name)
        return text

    def names(self) -> list[str]:
        current = self._current
        return sorted({*current.compiled, *current.broken} - {"*"})

    def samples(self, template: str | Compiled) -> dict[str, dict[str, Any]]:
        """The sample profiles of `template` (a name, or a template compiled from files
        in memory: those saved with it), by name."""
        compiled = self.compiled(template) if isinstance(template, str) else template
        return load_samples(compiled.source.folder)

    async def compile_source(self, name: str, files: Mapping[str, str]) -> Compiled:
        """Template `name` compiled from `files` given in memory (see `compile_files`),
        in the registry's worker threads; 422 naming the file at fault when it does not
        compile."""
        job = self._executor().submit(
            compile_files,
            name,
            dict(files),
            self.blocks_dir,
            self.templates_dir,
            self.environments,
            fold=self.fold,
        )
        try:
            return await asyncio.wrap_future(job)
        except SourceError as exc:
            raise TemplateBroken(
                f"template {name!r} does not compile: {self._public(exc)}"
            ) from None

    async def refresh(self) -> TemplateSet:
        """Check the files now and recompile what changed, in the worker threads (a
        save the studio's watcher saw); the version then served."""
        return await asyncio.wrap_future(self._executor().submit(self._recompile))

    def twin(self, *, fold: bool) -> TemplateRegistry:
        """A registry over the same files and environments, compiled now, not reloaded;
        `fold` as for the constructor."""
        twin = TemplateRegistry(
            self.blocks_dir, self.templates_dir, reload=False, fold=fold, envs=self.environments
        )
        twin.load()
        return twin

    def close(self) -> None:
        """Let the worker threads go (a compile under way finishes, unused); they are
        made again when needed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _check(self) -> None:
        """Have the files checked, and recompiled if they changed, in a worker thread,
        unless that is under way."""
        self._checked_at = time.monotonic()
        if self._refresh is None or self._refresh.done():
            self._refresh = self._executor().submit(self._recompile)

    def _recompile(self) -> TemplateSet:
        with self._compiling:
            try:
                version = fingerprint(self.blocks_dir, self.templates_dir)
                if version != self._current.version:
                    log.info("template files changed: recompiling")
                    self._use(self._compile(version, self._current))
                    # A compile leaves reference cycles (Jinja's templates), and the app
                    # collects rarely (app/app.py): left alone, a few thousand saves' worth
                    # would pile up (~20 KB each) before the first collection.
                    gc.collect()
            except Exception:  # the last version goes on serving; the next check tries again
                log.exception("recompiling the templates failed")
            return self._current

    def _compile(self, version: str, last: TemplateSet = NOTHING) -> TemplateSet:
        return compile_folder(
            self.blocks_dir,
            self.templates_dir,
            self.environments,
            version=version,
            fold=self.fold,
            last=last,
        )

    def _use(self, templates: TemplateSet) -> None:
        self._current = templates
        for error in templates.broken.values():
            log.error("template not available: %s", error)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="kairos-compile")
        return self._pool
