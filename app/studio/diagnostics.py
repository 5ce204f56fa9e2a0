"""What the studio says about a designer's mistake: the file (named from the blocks' or
the templates' folder, never where this server keeps them), the line and a snippet
around it, for a source that does not compile and for a render that fails; and the
file each fallback a render chose comes from."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import mjml
from jinja2.sandbox import SandboxedEnvironment

from app.errors import KairosError
from app.render import bounds
from app.render.compiler import Compiled
from app.render.environments import Environments
from app.render.jinja import protect
from app.render.result import RenderResult
from app.render.sources import Part, SourceError

SNIPPET_LINES = 2
MJML_TAG = re.compile(r"<(/?)(mj-[a-z-]+)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*?(/?)>")


class TemplateBrokenAt(KairosError):
    """A designer's mistake, located: 422 with `file`, `line` and `snippet`."""

    status, code = 422, "template_broken"

    def __init__(self, message: str, file: str, line: int | None, snippet: str) -> None:
        super().__init__(message)
        self.file, self.line, self.snippet = file, line, snippet

    def body(self) -> dict[str, object]:
        body = super().body()
        error = body["error"]
        assert isinstance(error, dict)
        error.update({"file": self.file, "line": self.line, "snippet": self.snippet})
        return body


class Sources:
    """The two folders a studio names files from, and the unsaved edits of a preview
    (`files`, by the paths the preview API takes: `template.json`, `blocks/<b>/<f>`)."""

    def __init__(
        self,
        blocks_dir: Path,
        templates_dir: Path,
        template: str | None = None,
        files: Mapping[str, str] | None = None,
    ) -> None:
        self.blocks_dir, self.templates_dir = blocks_dir, templates_dir
        self.template, self.files = template, dict(files or {})

    def name(self, path: Path | str) -> str:
        """`path` as `blocks/...` or `templates/...`; never an absolute path."""
        path = Path(path)
        for root, label in ((self.blocks_dir, "blocks"), (self.templates_dir, "templates")):
            if path.is_relative_to(root):
                return "/".join((label, *path.relative_to(root).parts))
        return path.name

    def text(self, path: Path | str) -> str | None:
        """The text of file `path` as the preview sees it: edited, else saved."""
        name = self.name(path)
        edited = self.files.get(name)
        if edited is None and self.template and name == f"templates/{self.template}/template.json":
            edited = self.files.get("template.json")
        if edited is not None:
            return edited
        # A security boundary: a path named in a request is shown only from the folders.
        found = Path(path).resolve()
        roots = (self.blocks_dir.resolve(), self.templates_dir.resolve())
        if not any(found.is_relative_to(root) for root in roots):
            return None
        try:
            return found.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def public(self, message: str) -> str:
        """`message` with the folders' absolute paths replaced by their names."""
        for root, label in ((self.templates_dir, "templates"), (self.blocks_dir, "blocks")):
            message = message.replace(str(root), label)
        return message

    def broken(self, path: Path | str, line: int | None, message: str) -> TemplateBrokenAt:
        text = self.text(path) if Path(path).suffix else None
        shown = snippet(text, line) if text is not None and line else ""
        return TemplateBrokenAt(self.public(message), self.name(path), line, shown)


def snippet(text: str, line: int) -> str:
    """The lines around `line` (1-based), numbered, the bad one marked with `>`."""
    lines = text.splitlines()
    first, last = max(line - SNIPPET_LINES, 1), min(line + SNIPPET_LINES, len(lines))
    width = len(str(last))
    return "\n".join(
        f"{'>' if n == line else ' '} {n:>{width}} | {lines[n - 1]}" for n in range(first, last + 1)
    )


def source_broken(
    error: SourceError, sources: Sources, mjml_parts: Iterable[Part] = ()
) -> TemplateBrokenAt:
    """A compile error as the studio answers it. MJML reports one message for the whole
    document: the first of `mjml_parts` that does not compile alone is named, at its
    first unbalanced tag."""
    path, line = Path(error.path), error.line
    if error.message.startswith("MJML:") and not path.suffix:
        for part in mjml_parts:
            found = mjml_culprit(part)
            if found is not None:
                path, line = found
                break
    return sources.broken(path, line, f"{sources.name(path)}:{line or ''}: {error.message}")


def mjml_culprit(part: Part | None) -> tuple[Path, int | None] | None:
    """(file, line) when `part`'s MJML alone does not compile; the line of its first
    unbalanced `mj-` tag, when one is."""
    if part is None:
        return None
    try:
        mjml.mjml2html("<mjml><mj-body>" + protect(part.text, []) + "</mj-body></mjml>")
        return None
    except Exception:  # noqa: BLE001 - MRML's one message, whatever it raises
        return part.path, unbalanced(part.text)


def unbalanced(text: str) -> int | None:
    """The line of the first `mj-` tag closed out of order, or left open."""
    open_tags: list[tuple[str, int]] = []
    for match in MJML_TAG.finditer(text):
        closing, name, self_closing = match.groups()
        line = text.count("\n", 0, match.start()) + 1
        if self_closing:
            continue
        if not closing:
            open_tags.append((name, line))
        elif open_tags and open_tags[-1][0] == name:
            open_tags.pop()
        elif any(name == tag for tag, _ in open_tags):
            return open_tags[-1][1]  # closed over a tag left open
        else:
            return line
    return open_tags[-1][1] if open_tags else None


def render_broken(
    error: KairosError, compiled: Compiled, envs: Environments, sources: Sources
) -> TemplateBrokenAt:
    """A render error as the studio answers it. The engine renders compiled pieces whose
    lines are not the designer's (MJML compiled them): the shown blocks' own files are
    rendered again, alone, in the failed render's context, and the first that fails
    names the file and line."""
    message = sources.public(error.message)
    ctx = _failed_context(error.__context__)
    if ctx is not None:
        found = _culprit(compiled, envs, ctx, sources)
        if found is not None:
            path, line = found
            where = f"{sources.name(path)}:{line}" if line else sources.name(path)
            return sources.broken(path, line, f"{where}: {message}")
    template_json = compiled.source.folder / "template.json"
    return sources.broken(template_json, None, message)


def _failed_context(error: BaseException | None) -> dict[str, Any] | None:
    """The render context of the engine's frame the error went through."""
    tb = error.__traceback__ if error is not None else None
    while tb is not None:
        ctx = tb.tb_frame.f_locals.get("ctx")
        if isinstance(ctx, dict) and "_mode" in ctx:
            return ctx
        tb = tb.tb_next
    return None


def _culprit(
    compiled: Compiled, envs: Environments, ctx: dict[str, Any], sources: Sources
) -> tuple[Path, int | None] | None:
    source = compiled.source
    template_json = source.folder / "template.json"
    for key, text in (("subject", source.subject), ("preheader", source.preheader)):
        if _fails(envs.text, text, ctx) is not None:
            saved = sources.text(template_json) or ""
            at = saved.find(f'"{key}"')
            return template_json, saved.count("\n", 0, at) + 1 if at >= 0 else None
    for i, (use, block) in enumerate(zip(source.blocks, compiled.blocks, strict=True)):
        mode = ctx["_mode"][i]
        parts: tuple[tuple[SandboxedEnvironment, Part | None], ...]
        if mode == "main":
            parts = ((envs.html, block.mjml), (envs.amp, block.amp), (envs.text, block.text))
        elif mode == "fallback":
            parts = (
                (envs.html, block.fallback_mjml),
                (envs.amp, block.fallback_amp),
                (envs.text, block.fallback_text),
            )
        else:
            continue
        for env, part in parts:
            if part is None:
                continue
            line = _fails(env, part.text, {**ctx, "params": use.params})
            if line is not None:
                return part.path, line or None
    return None


def _fails(env: Any, text: str, ctx: dict[str, Any]) -> int | None:
    """None when `text` renders in `ctx`; else the line that failed (0: unknown). As a
    render of its own: its own time and output (app/render/bounds.py)."""
    try:
        env.from_string(text).render({**ctx, bounds.DEADLINE: None, bounds.PRINTED_KEY: 0})
        return None
    except Exception:  # noqa: BLE001 - whatever the designer's Jinja raised
        return _template_line(sys.exc_info()[2])


def _template_line(tb: TracebackType | None) -> int:
    """The innermost line of the template in a traceback Jinja rewrote."""
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def fallback_files(
    result: RenderResult, compiled: Compiled, sources: Sources
) -> list[dict[str, Any]]:
    """The render's block fallbacks, each with the file it shows: the block's fallback
    MJML, or its block.json (whose `needs` it lacked) when it has none."""
    by_name = {block.name: block for block in compiled.blocks}
    found = []
    for entry in result.fallbacks:
        block = by_name.get(entry.get("block", ""))
        if block is None:
            continue
        part = block.fallback_mjml
        path = part.path if part is not None else block.folder / "block.json"
        found.append({"block": block.name, "reason": entry["reason"], "file": sources.name(path)})
    return found
