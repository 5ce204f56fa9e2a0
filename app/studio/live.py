"""Live reload for the designer's studio: the blocks, the templates and the segment
rules file watched (`watchfiles`); a save has the registry recompile at once, only the
templates whose inputs changed (the others are carried over, `app/render/folder.py`),
and the rules reloaded at once; then the change is announced to the open pages
(`app/studio/stream.py`).

The watcher starts with the first page that listens and stops with the app. Until
then, and whatever happens to it, the registry's own check (once a second, on a
request) keeps the templates current."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from watchfiles import awatch

from app.render.folder import TemplateSet
from app.render.registry import TemplateRegistry
from app.render.sources import BLOCK_FILES, SourceError
from app.segments.rules import RulesError
from app.segments.service import Segmenter
from app.settings import Settings

log = logging.getLogger("kairos.studio")

# A save is a burst of writes: changes are gathered until none came for STEP_MS, for at
# most DEBOUNCE_MS, then applied together.
DEBOUNCE_MS = 50
STEP_MS = 10
# Lines shown on each side of an error's line.
SNIPPET_AROUND = 2
STOP_WAIT_S = 2.0


def studio_on(settings: Settings) -> bool:
    """Whether the designer's studio is served (`KAIROS_DESIGNER`)."""
    return settings.designer


@dataclass(frozen=True)
class Change:
    """One change announced: `seq` counts them; `data` is the event's JSON."""

    seq: int
    version: str
    data: bytes


class Live:
    """What the open pages are told: the version of the templates being served, and
    the last change (`latest`; a page that missed some gets the last one only)."""

    def __init__(self, registry: TemplateRegistry, segments: Segmenter, settings: Settings):
        self.registry, self.segments = registry, segments
        self.blocks_dir = settings.blocks_dir.absolute()
        self.templates_dir = settings.templates_dir.absolute()
        self.rules_file = settings.segments_file.absolute()
        self.watching = settings.reload_templates
        self.latest: Change | None = None
        self.streams = 0  # the pages listening now (app/studio/stream.py)
        self.closed = True
        self._wake = self._arrived = asyncio.Event()
        self._pending: set[Path] = set()  # saved since last applied: at most every file
        self._stop: asyncio.Event | None = None
        self._tasks: tuple[asyncio.Task[None], ...] = ()
        self._announced = registry.current

    def open(self) -> None:
        """Be ready for pages (the app's lifespan starts)."""
        self.closed = False
        self._wake, self._arrived = asyncio.Event(), asyncio.Event()

    @property
    def version(self) -> str:
        """The version of the templates being served."""
        return self.registry.current.version

    async def start(self) -> None:
        """Start watching, unless it is started, stopped, or reload is off."""
        if self._tasks or self.closed or not self.watching:
            return
        self._stop = stop = asyncio.Event()
        roots = (self.blocks_dir, self.templates_dir)
        watches = [self._watch(roots, stop, recursive=True)]
        if self._rules_apart():
            watches.append(self._watch((self.rules_file.parent,), stop, recursive=False))
        self._tasks = (
            *(asyncio.create_task(w) for w in watches),
            asyncio.create_task(self._apply()),
        )
        # Each watcher sets its watches up in its first step: a save from now on is seen.
        await asyncio.sleep(0)
        self._announced = self.registry.current
        self._arrived.set()  # and one made before is found by a check of the files

    async def close(self) -> None:
        """Stop watching; every stream ends."""
        self.closed = True
        if self._stop is not None:
            self._stop.set()
        self._announce(None)
        tasks, self._tasks = self._tasks, ()
        if not tasks:
            return
        tasks[-1].cancel()  # the loop applying saves; the watchers see the stop flag
        _, pending = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        for task in pending:
            task.cancel()

    async def next_change(self, seen: int, wait_s: float) -> Change | None:
        """The latest change after number `seen`, waiting at most `wait_s` seconds for
        one (None: none came, or the studio closed)."""
        latest = self.latest
        if latest is None or latest.seq <= seen:
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await wake.wait()
            latest = self.latest
        return latest if latest is not None and latest.seq > seen else None

    async def _watch(self, roots: Iterable[Path], stop: asyncio.Event, *, recursive: bool) -> None:
        try:
            async for changes in awatch(
                *roots, debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop, recursive=recursive
            ):
                self._pending.update(_absolute(path for _, path in changes))
                self._arrived.set()
        except Exception:  # the registry's own check still picks the saves up
            log.exception("watching the templates' files failed: saves show within a second")

    def _rules_apart(self) -> bool:
        """Whether the rules file lies outside the blocks' and templates' folders."""
        roots = (self.blocks_dir, self.templates_dir)
        return not any(self.rules_file.is_relative_to(root) for root in roots)

    async def _apply(self) -> None:
        first = True
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            saved, self._pending = self._pending, set()
            try:
                await self._saved(saved, catch_up=first)
            except Exception:  # the next save tries again
                log.exception("applying a save failed")
            first = False

    async def _saved(self, paths: Iterable[Path], *, catch_up: bool = False) -> None:
        """Apply the saves of `paths` and announce them; with `catch_up`, announce any
        version newer than the last announced."""
        paths = set(paths)
        files = sorted({name for path in paths if (name := self._studied(path)) is not None})
        if not files and not catch_up:
            return  # an editor's swap file, a folder nobody reads
        if self.rules_file in paths:
            self.segments.reload()
        before = self._announced
        after = await self.registry.refresh()
        if after.version == before.version and not (
            self.rules_file in paths and self._rules_apart()
        ):
            return  # announced already: a save seen twice (its writes, batched apart)
        self._announced = after
        samples = {
            f.split("/")[1] for f in files if f.startswith("templates/") and "/samples/" in f
        }
        # A block's error breaks every template using it: shown once.
        errors = list({str(e): self._source_error(e) for e in after.errors}.values())
        if self.segments.error is not None:
            errors.append(self._rules_error(self.segments.error))
        change = {
            "version": after.version,
            "files": files,
            "templates": sorted(_recompiled(before, after) | (samples & set(after.inputs))),
            "errors": errors,
        }
        seq = self.latest.seq + 1 if self.latest is not None else 1
        self._announce(Change(seq, after.version, orjson.dumps(change)))
        log.info(
            "saved: %s; recompiled: %s; version %s",
            ", ".join(files),
            change["templates"],
            after.version,
        )

    def _announce(self, change: Change | None) -> None:
        if change is not None:
            self.latest = change
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def _studied(self, path: Path) -> str | None:
        """`path` as the studio names it (`blocks/hero/block.mjml`), if it is a file the
        sources or the rules are read from (or a block's or template's folder)."""
        if path == self.rules_file:
            return self.public(path)
        name = self.public(path)
        parts = name.split("/")
        if parts[0] == "blocks" and (
            len(parts) == 2 or len(parts) == 3 and parts[2] in BLOCK_FILES
        ):
            return name
        if parts[0] != "templates" or len(parts) < 2:
            return None
        if len(parts) == 2 or parts[2:] == ["template.json"]:
            return name
        if len(parts) == 4 and parts[2] == "samples" and parts[3].endswith(".json"):
            return name
        return None

    def public(self, path: Path | str) -> str:
        """`path` named from the blocks' and the templates' folders (`blocks/...`,
        `templates/...`), never by where this server keeps them; the rules file
        elsewhere by its name."""
        path = Path(path).absolute()
        for root, name in ((self.blocks_dir, "blocks"), (self.templates_dir, "templates")):
            if path.is_relative_to(root):
                return "/".join((name, *path.relative_to(root).parts))
        return path.name

    def _source_error(self, error: SourceError) -> dict[str, Any]:
        message = error.message
        for root, name in ((self.templates_dir, "templates"), (self.blocks_dir, "blocks")):
            message = message.replace(str(root), name)
        return _error(
            self.public(error.path), error.line, message, _snippet(error.path, error.line)
        )

    def _rules_error(self, error: RulesError) -> dict[str, Any]:
        message = f"rule '{error.rule}': {error.detail}" if error.rule else error.detail
        return _error(
            self.public(self.rules_file), error.line, message, _snippet(self.rules_file, error.line)
        )


def _absolute(paths: Iterable[str]) -> set[Path]:
    return {Path(path).absolute() for path in paths}


def _recompiled(before: TemplateSet, after: TemplateSet) -> set[str]:
    """The templates whose compile changed between two versions: compiled again, newly
    broken or mended, added or removed."""
    names: set[str] = {*before.compiled, *before.broken, *after.compiled, *after.broken} - {"*"}
    return {
        name
        for name in names
        if before.inputs.get(name) != after.inputs.get(name)
        or (name in before.broken) != (name in after.broken)
        or name in after.fresh
    }


def _error(file: str, line: int | None, message: str, snippet: str) -> dict[str, Any]:
    return {"file": file, "line": line, "message": message, "snippet": snippet}


def _snippet(path: Path | str, line: int | None) -> str:
    """The lines around `line` of the file at `path`, numbered, the line itself marked
    with `>`; empty without a line."""
    if not line:
        return ""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    first = max(1, line - SNIPPET_AROUND)
    shown = lines[first - 1 : line + SNIPPET_AROUND]
    return "\n".join(
        f"{'>' if n == line else ' '} {n:4} | {text}" for n, text in enumerate(shown, first)
    )
