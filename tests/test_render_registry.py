"""The template registry (app/render/registry.py): templates compiled at start-up;
changed files recompiled in the registry's worker thread while requests go on being
answered with the last version (a compile held up indefinitely here, so that a request
that waited for it would never be answered), then swapped in whole; a broken save
answers 422 for its templates while the others serve; a failed recompile leaves the
last version serving. And templates compiled from files given in memory (the preview of
an unsaved edit): rendered, never saved, never reaching outside the sources.

Everything runs on private copies of the real blocks and templates."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import AUTH, TOKENS, assert_error, serve

from app.app import create_app
from app.images import ImageChecks
from app.links import LinkSigner
from app.metrics import Metrics
from app.render import registry
from app.render.compiler import Compiled
from app.render.engine import Engine
from app.render.registry import TemplateRegistry, fingerprint
from app.render.result import RenderResult, TemplateBroken

PUBLIC_URL = "https://kairos.example.com"
MARK_MJML = (
    "<mj-section><mj-column><mj-text>FRESHMARK {{ params.headline }}</mj-text>"
    "</mj-column></mj-section>\n"
)
BROKEN_MJML = "<mj-section><mj-column><mj-text>{% if x %}</mj-text>\n"
TEMPLATES = ("welcome", "weekly_picks", "abandoned_cart")  # hero: in the first two only


def bump(path: Path) -> None:
    """Move the file's mtime forward (a save within the same clock tick is still seen)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def save(path: Path, text: str) -> None:
    path.write_text(text)
    bump(path)


async def render(client: Any, template: str, user_id: str = "ada") -> Any:
    # Within 2 s, or the request waited for something it must not (a compile).
    return await asyncio.wait_for(
        client.post("/v1/render", json={"template": template, "user_id": user_id}, headers=AUTH),
        2,
    )


async def served(client: Any, template: str, seen: Callable[[Any], bool]) -> Any:
    """Renders `template` until an answer is `seen` (within 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        r = await render(client, template)
        if seen(r):
            return r
        assert time.monotonic() < deadline, r.text
        await asyncio.sleep(0.01)


class HeldCompile:
    """`registry.compile_folder` held up until `release()`: the compiles started, on
    which threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.started = threading.Event()
        self._release = threading.Event()
        self.threads: list[str] = []
        real = registry.compile_folder

        def held(*args: Any, **kwargs: Any) -> Any:
            self.threads.append(threading.current_thread().name)
            self.started.set()
            assert self._release.wait(20), "never released"
            return real(*args, **kwargs)

        monkeypatch.setattr(registry, "compile_folder", held)

    def release(self) -> None:
        self._release.set()


@pytest.fixture
def reloading(settings, sources_copy, monkeypatch) -> Iterator[tuple[Any, Path]]:
    """An app over copied sources with reload on, its files checked at every render;
    and the blocks folder."""
    monkeypatch.setattr(registry, "RELOAD_CHECK_S", 0.0)
    blocks, templates = sources_copy()
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_RELOAD_TEMPLATES="true",
        )
    )
    yield app, blocks


# --- reload in the background --------------------------------------------------------


async def test_a_change_is_recompiled_in_the_background_while_requests_are_answered(
    reloading, monkeypatch
):
    app, blocks = reloading
    templates = app.state.services.renderer.templates
    before = templates.current
    async with serve(app) as client:
        held = HeldCompile(monkeypatch)  # from now on (start-up compiled already)
        save(blocks / "hero" / "block.mjml", MARK_MJML)
        r = await render(client, "welcome")  # sees the change, and does not wait for it
        assert r.status_code == 200 and "FRESHMARK" not in r.json()["html"]
        assert await asyncio.to_thread(held.started.wait, 5)
        for i in range(30):  # while the compile is held up, every template serves
            for name in TEMPLATES:
                r = await render(client, name, f"reader-{i}")
                assert r.status_code == 200 and "FRESHMARK" not in r.json()["html"]
        assert templates.current is before
        # One compile for all those checks, in the registry's thread, not the loop's.
        assert len(held.threads) == 1 and held.threads[0].startswith("kairos-compile")
        held.release()
        for name in ("welcome", "weekly_picks"):
            await served(client, name, lambda r: "FRESHMARK" in r.json()["html"])
        assert (await render(client, "abandoned_cart")).status_code == 200
        assert templates.current.version == fingerprint(blocks, templates.templates_dir)
        assert len(held.threads) == 1


async def test_a_broken_save_answers_422_for_its_templates_and_the_others_serve(
    reloading, monkeypatch
):
    app, blocks = reloading
    async with serve(app, raise_app_exceptions=False) as client:
        held = HeldCompile(monkeypatch)
        save(blocks / "hero" / "block.mjml", BROKEN_MJML)
        assert (await render(client, "welcome")).status_code == 200
        assert await asyncio.to_thread(held.started.wait, 5)
        # The last good version serves until the new one is in.
        assert (await render(client, "weekly_picks")).status_code == 200
        held.release()
        for name in ("welcome", "weekly_picks"):
            r = await served(client, name, lambda r: r.status_code != 200)
            error = assert_error(r, 422, "template_error")["message"]
            assert name in error and "hero" in error
            # Named from the blocks' folder, never by where the server keeps it.
            assert "blocks/hero/block.mjml" in error
            assert str(blocks) not in error and str(blocks.parent) not in error
        assert (await render(client, "abandoned_cart")).status_code == 200
        save(blocks / "hero" / "block.mjml", MARK_MJML)  # fixed
        await served(client, "welcome", lambda r: r.status_code == 200)


async def test_a_recompile_that_fails_leaves_the_last_version_serving(
    reloading, monkeypatch, caplog
):
    app, blocks = reloading
    real = registry.compile_folder
    failures = []

    def failing(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug in the compiler")
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "compile_folder", failing)
    async with serve(app) as client:
        save(blocks / "hero" / "block.mjml", MARK_MJML)
        assert (await render(client, "welcome")).status_code == 200
        # The next check tries again, and the change is served.
        await served(client, "welcome", lambda r: "FRESHMARK" in r.json()["html"])
    assert failures and "recompiling the templates failed" in caplog.text


async def test_a_registry_closed_by_its_app_reloads_when_served_again(reloading):
    app, blocks = reloading
    async with serve(app) as client:
        assert (await render(client, "welcome")).status_code == 200
    save(blocks / "hero" / "block.mjml", MARK_MJML)
    async with serve(app) as client:  # a second lifespan of the same app
        await served(client, "welcome", lambda r: "FRESHMARK" in r.json()["html"])


def test_with_reload_off_nothing_is_checked(sources_copy, monkeypatch):
    monkeypatch.setattr(registry, "RELOAD_CHECK_S", 0.0)
    blocks, templates = sources_copy()
    off = TemplateRegistry(blocks, templates, reload=False)
    assert off.load() == []
    version = off.current.version
    held = HeldCompile(monkeypatch)
    save(blocks / "hero" / "block.mjml", MARK_MJML)
    for _ in range(5):
        assert off.compiled("welcome").version == version
    assert not held.threads


# --- templates given in memory -------------------------------------------------------


@pytest.fixture(scope="module")
def sources(module_sources_copy) -> tuple[Path, Path]:
    return module_sources_copy()


@pytest.fixture(scope="module")
def loaded(sources) -> Iterator[TemplateRegistry]:
    templates = TemplateRegistry(*sources, reload=False)
    assert templates.load() == []
    yield templates
    templates.close()


def render_once(templates: TemplateRegistry, compiled: Compiled) -> RenderResult:
    engine = Engine(
        signer=LinkSigner(TOKENS, PUBLIC_URL, ImageChecks()),
        public_url=PUBLIC_URL,
        metrics=Metrics(),
        globals=templates.environments.globals,
        share=False,
    )
    data = {"cart": [], "recommendations": []}
    return engine.render(compiled, "ada", {"first_name": "Ada"}, data, None, None)


def template_json(templates: TemplateRegistry, name: str, **changes: Any) -> str:
    doc = json.loads((templates.templates_dir / name / "template.json").read_text())
    return json.dumps({**doc, **changes})


async def test_a_template_given_in_memory_compiles_and_nothing_is_saved(loaded):
    version = fingerprint(loaded.blocks_dir, loaded.templates_dir)
    files = {
        "template.json": template_json(loaded, "welcome", subject="Edited {{ first_name }}"),
        "blocks/hero/block.mjml": MARK_MJML,
    }
    compiled = await loaded.compile_source("welcome", files)
    assert compiled.version.startswith("memory-")
    result = render_once(loaded, compiled)
    assert result.subject == "Edited Ada"
    assert "FRESHMARK Good things" in str(result.html) and "FRESHMARK" not in str(result.amp)
    # Nothing saved, nothing swapped: the registry serves what it compiled from files.
    assert fingerprint(loaded.blocks_dir, loaded.templates_dir) == version
    assert loaded.compiled("welcome").source.subject != compiled.source.subject
    assert loaded.samples(compiled) == loaded.samples("welcome")  # saved with it


async def test_a_new_template_and_a_new_block_given_in_memory(loaded):
    files = {
        "template.json": json.dumps({"subject": "New", "blocks": ["header", "fresh"]}),
        "blocks/fresh/block.json": "{}",
        "blocks/fresh/block.mjml": MARK_MJML,
        "blocks/fresh/block.txt": "FRESH {{ params.headline }}",
    }
    compiled = await loaded.compile_source("brand_new", files)
    assert [b.name for b in compiled.blocks] == ["header", "fresh"]
    result = render_once(loaded, compiled)
    assert result.subject == "New" and "\nFRESH\n" in str(result.text)
    assert loaded.samples(compiled) == {}
    assert not (loaded.blocks_dir / "fresh").exists()
    assert not (loaded.templates_dir / "brand_new").exists()


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("../welcome", "template.json"),
        ("welcome/../welcome", "template.json"),
        ("/etc", "template.json"),
        ("Welcome", "template.json"),
        ("welcome", "../template.json"),
        ("welcome", "/etc/passwd"),
        ("welcome", "blocks/../../etc/block.mjml"),
        ("welcome", "blocks/hero/../../../x/block.mjml"),
        ("welcome", "blocks/HERO/block.mjml"),
        ("welcome", "blocks/hero/block.py"),
        ("welcome", "blocks/hero/samples/x.json"),
        ("welcome", "templates/welcome/template.json"),
        ("welcome", "theme.css"),
    ],
)
async def test_names_and_paths_outside_the_sources_are_refused(loaded, name, path):
    with pytest.raises(TemplateBroken) as refused:
        await loaded.compile_source(name, {path: "{}"})
    assert refused.value.status == 422
    # Refused for what they name, before any file is read.
    message = refused.value.message
    assert "names are lower-case" in message or "not a file of the template" in message


async def test_a_mistake_in_files_given_in_memory_names_the_file_and_line(loaded):
    with pytest.raises(TemplateBroken, match=r"hero/block\.mjml:1: template syntax error"):
        await loaded.compile_source("welcome", {"blocks/hero/block.mjml": BROKEN_MJML})
    with pytest.raises(TemplateBroken, match=r"welcome/template\.json:1: invalid JSON"):
        await loaded.compile_source("welcome", {"template.json": "{"})


async def test_compiling_files_in_memory_does_not_hold_up_the_event_loop(loaded, monkeypatch):
    started = threading.Event()
    real = registry.compile_files

    def slow(*args: Any, **kwargs: Any) -> Any:
        started.set()
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(registry, "compile_files", slow)
    job = asyncio.create_task(loaded.compile_source("welcome", {}))
    ticks = 0
    while not job.done():
        await asyncio.sleep(0.01)
        ticks += 1
    await job
    assert started.is_set() and ticks >= 20  # the loop ran while it compiled


async def test_a_preview_renders_an_unsaved_edit(render_client, render_app):
    renderer = render_app.state.services.renderer
    cached = len(renderer.engine.fragments)
    r = await render_client.post(
        "/v1/preview",
        json={
            "template": "welcome",
            "sample": "full",
            "files": {"blocks/hero/block.mjml": MARK_MJML},
        },
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    assert "FRESHMARK" in r.json()["html"] and "Ada" in r.json()["subject"]
    assert len(renderer.engine.fragments) == cached  # rendered once, not kept
    r = await render_client.post(
        "/v1/preview", json={"template": "welcome", "sample": "full"}, headers=AUTH
    )
    assert "FRESHMARK" not in r.json()["html"]  # the saved files are what serves


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (["template.json"], "files"),
        ({"template.json": 1}, "files"),
        ({"blocks/hero/block.mjml": BROKEN_MJML}, "template syntax error"),
        ({"../x": "{}"}, "not a file"),
    ],
)
async def test_a_preview_of_bad_files_is_422(render_client, files, says):
    r = await render_client.post(
        "/v1/preview", json={"template": "welcome", "files": files}, headers=AUTH
    )
    assert r.status_code == 422 and says in r.text, r.text
