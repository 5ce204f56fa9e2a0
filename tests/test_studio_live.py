"""The studio's live reload through a real server (uvicorn in its own process) on a copy
of the blocks and templates: a save is announced on `GET /designer/events` with the
files saved, the templates recompiled and the errors; only what changed is compiled
again; the rules file is reloaded at once; at most MAX_STREAMS pages listen."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from support import AUTH, KairosProcess, assert_error, serve, unstamped
from test_cli import subprocess_env

from app.app import create_app
from app.render import folder, memo
from app.render.registry import TemplateRegistry
from app.studio.stream import MAX_STREAMS

EVENT_WAIT_S = 10.0
DIVIDER_MARK = (
    '<mj-section><mj-column><mj-text>LIVEMARK {{ "divider" }}</mj-text></mj-column></mj-section>\n'
)
BROKEN_HERO = "<mj-section><mj-column><mj-text>{% if %}</mj-text></mj-column></mj-section>\n"
ADA = {"first_name": "Ada", "email": "ada@example.org", "consent": {"personalization": True}}
NEW_RULE = '\n[segments.studio_probe]\npriority = 77\nrule = { profile = "tier", equals = "tin" }\n'
BROKEN_RULE = (
    '\n[segments.studio_broken]\npriority = 78\nrule = { profile = "tier", nearly = "tin" }\n'
)


@pytest.fixture
def sources(sources_copy: Any) -> tuple[Path, Path]:
    return sources_copy()  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path, sources: tuple[Path, Path]) -> Iterator[KairosProcess]:
    blocks, templates = sources
    env = subprocess_env(
        tmp_path,
        KAIROS_DEMO_DATA="false",
        KAIROS_LOG_LEVEL="WARNING",
        KAIROS_BLOCKS_DIR=str(blocks),
        KAIROS_TEMPLATES_DIR=str(templates),
        KAIROS_SEGMENTS_FILE=str(templates / "segments.toml"),
    )
    process = KairosProcess("studio", env, tmp_path)
    try:
        process.wait_ready(time.monotonic() + 60)
        yield process
    finally:
        process.stop()


class Events:
    """One page's event stream: `next()` is the next event (name, data), keepalive
    comments counted apart; every line is checked for the server's paths."""

    def __init__(self, response: httpx.Response, forbidden: str) -> None:
        self.response, self.forbidden = response, forbidden
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, within_s: float = EVENT_WAIT_S) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(within_s):
            name, data = "", b""
            async for line in self.lines:
                assert self.forbidden not in line, line  # never where the server keeps files
                if line.startswith(":"):
                    self.comments.append(line)
                elif line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :].encode()
                elif line == "" and name:
                    return name, orjson.loads(data)
        raise AssertionError("the stream ended")

    async def change(self) -> dict[str, Any]:
        name, data = await self.next()
        assert name == "change", (name, data)
        assert set(data) == {"version", "files", "templates", "errors"}
        return data


@contextlib.asynccontextmanager
async def page(server: KairosProcess, forbidden: Path) -> AsyncIterator[tuple[Events, str]]:
    """A page listening: its events, and the version its `hello` gave."""
    async with (
        httpx.AsyncClient(base_url=server.base, timeout=EVENT_WAIT_S) as client,
        client.stream("GET", "/designer/events") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        events = Events(response, str(forbidden))
        name, hello = await events.next()
        assert name == "hello" and set(hello) == {"version"}
        yield events, hello["version"]


def save(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


async def served_version(client: httpx.AsyncClient) -> set[str]:
    r = await client.get("/v1/templates", headers=AUTH)
    return {t.get("version") for t in r.json()["templates"] if t["ok"]}


async def render(client: httpx.AsyncClient, template: str) -> httpx.Response:
    body = {"template": template, "user_id": "ada", "profile": ADA}
    return await client.post("/v1/render", json=body, headers=AUTH)


async def test_a_saved_block_is_announced_with_only_the_templates_using_it(server, sources):
    blocks, templates = sources
    async with (
        page(server, sources[0].parent) as (events, hello),
        httpx.AsyncClient(base_url=server.base) as client,
    ):
        assert await served_version(client) == {hello}
        divider = blocks / "divider" / "block.mjml"  # used by weekly_picks alone
        save(divider, divider.read_text() + DIVIDER_MARK)
        change = await events.change()
        assert change["files"] == ["blocks/divider/block.mjml"]
        assert change["templates"] == ["weekly_picks"]
        assert change["errors"] == []
        assert change["version"] != hello
        # The version announced is the one served, and it serves the save.
        assert await served_version(client) == {change["version"]}
        r = await render(client, "weekly_picks")
        assert r.status_code == 200 and "LIVEMARK divider" in r.json()["html"]

        hero = blocks / "hero" / "block.mjml"  # used by weekly_picks and welcome
        save(hero, hero.read_text().replace("</mj-section>", "</mj-section>\n", 1))
        change = await events.change()
        assert change["files"] == ["blocks/hero/block.mjml"]
        assert change["templates"] == ["weekly_picks", "welcome"]

        theme = templates / "theme.css"  # every template reads it
        save(theme, theme.read_text() + "\n.kx-live { color: #111111; }\n")
        change = await events.change()
        assert change["files"] == ["templates/theme.css"]
        assert change["templates"] == ["abandoned_cart", "weekly_picks", "welcome"]

        sample = templates / "welcome" / "samples" / "full.json"  # read at each preview
        save(sample, sample.read_text())
        change = await events.change()
        assert change["files"] == ["templates/welcome/samples/full.json"]
        assert change["templates"] == ["welcome"]

        # An editor's own files are not the sources: nothing to announce.
        save(blocks / "hero" / ".block.mjml.swp", "swap")
        save(blocks / "hero" / "notes.md", "a note")
        save(divider, divider.read_text() + "\n")
        change = await events.change()
        assert change["files"] == ["blocks/divider/block.mjml"]


async def test_a_broken_save_is_announced_with_file_and_line_then_mended(server, sources):
    blocks, _ = sources
    hero = blocks / "hero" / "block.mjml"
    good = hero.read_text()
    async with (
        page(server, sources[0].parent) as (events, hello),
        httpx.AsyncClient(base_url=server.base) as client,
    ):
        save(hero, good + BROKEN_HERO)
        change = await events.change()
        assert change["templates"] == ["weekly_picks", "welcome"]
        [error] = change["errors"]  # once, though two templates use the block
        line = good.count("\n") + 1
        assert error["file"] == "blocks/hero/block.mjml" and error["line"] == line
        assert "syntax" in error["message"]
        marked = [row for row in error["snippet"].splitlines() if row.startswith(">")]
        assert marked == [f"> {line:4} | {BROKEN_HERO.strip()}"]
        assert len(error["snippet"].splitlines()) == 3  # two lines before it, none after
        # The templates using the block say so; the others serve on.
        r = await render(client, "welcome")
        assert "blocks/hero/block.mjml" in assert_error(r, 422)["message"]
        assert (await render(client, "abandoned_cart")).status_code == 200

        save(hero, good)
        change = await events.change()
        assert change["errors"] == [] and change["templates"] == ["weekly_picks", "welcome"]
        assert (await render(client, "welcome")).status_code == 200


async def test_the_rules_file_is_reloaded_at_once(server, sources):
    _, templates = sources
    rules = templates / "segments.toml"
    good = rules.read_text()
    async with (
        page(server, sources[0].parent) as (events, _hello),
        httpx.AsyncClient(base_url=server.base) as client,
    ):

        async def segments() -> list[str]:
            r = await client.get("/v1/segments", headers=AUTH)
            assert r.status_code == 200
            return [s["name"] for s in r.json()["segments"]]

        assert "studio_probe" not in await segments()  # and looked at the file just now
        save(rules, good + NEW_RULE)
        started = time.monotonic()
        change = await events.change()
        assert change["files"] == ["templates/segments.toml"] and change["templates"] == []
        # Within the second the file would otherwise be left unread: the save applied.
        assert "studio_probe" in await segments()
        assert time.monotonic() - started < 0.9

        save(rules, good + NEW_RULE + BROKEN_RULE)
        change = await events.change()
        [error] = change["errors"]
        assert error["file"] == "templates/segments.toml"
        assert error["message"].startswith("rule 'studio_broken': ")
        line = error["line"]
        saved = rules.read_text().splitlines()
        assert line > good.count("\n") and "studio_broken" in "".join(saved[line - 3 : line])
        marked = [row for row in error["snippet"].splitlines() if row.startswith(">")]
        assert marked == [f"> {line:4} | {saved[line - 1]}"]
        assert "studio_probe" in await segments()  # the last good rules stay

        save(rules, good)
        change = await events.change()
        assert change["errors"] == []
        assert "studio_probe" not in await segments()


async def test_pages_are_limited_and_one_that_leaves_makes_room(server, sources):
    limits = httpx.Limits(max_connections=MAX_STREAMS + 8)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=server.base, timeout=EVENT_WAIT_S, limits=limits)
        )
        for _ in range(MAX_STREAMS):
            stream = await stack.enter_async_context(client.stream("GET", "/designer/events"))
            assert stream.status_code == 200
        r = await client.get("/designer/events")
        assert_error(r, 503, "too_many_streams")
        assert r.headers["content-type"] == "application/json"
    # Those pages gone, the server makes room again.
    async with httpx.AsyncClient(base_url=server.base) as client:
        deadline = time.monotonic() + EVENT_WAIT_S
        while True:
            async with client.stream("GET", "/designer/events") as stream:
                if stream.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the pages that left were not dropped"
            await asyncio.sleep(0.05)


async def test_a_page_from_another_machine_is_refused(app):
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with (
        serve(app),
        httpx.AsyncClient(transport=transport, base_url="http://kairos.test") as client,
    ):
        async with asyncio.timeout(5):  # (an open stream would never end)
            r = await client.get("/designer/events")
        assert_error(r, 403, "studio_login")


async def test_with_the_studio_off_there_are_no_events(settings):
    app = create_app(settings(KAIROS_DESIGNER="off"))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        serve(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client,
    ):
        async with asyncio.timeout(5):  # (an open stream would never end)
            assert_error(await client.get("/designer/events"), 404)


# --- the registry: only what changed is compiled again ---------------------------------


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The templates `compile_template` compiled (for real), in order."""
    done: list[str] = []
    real = folder.compile_template

    def counted(source: Any, *args: Any, **kwargs: Any) -> Any:
        done.append(source.name)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(folder, "compile_template", counted)
    return done


async def test_a_template_whose_inputs_did_not_change_is_not_compiled_again(sources, compiles):
    blocks, templates = sources
    registry = TemplateRegistry(blocks, templates, reload=True)
    assert registry.load() == []
    compiles.clear()
    try:
        first = registry.current
        divider = blocks / "divider" / "block.mjml"
        save(divider, divider.read_text() + DIVIDER_MARK)
        second = await registry.refresh()
        assert compiles == ["weekly_picks"] and second.fresh == {"weekly_picks"}
        assert second.version != first.version
        # The others carried over, at the new version.
        welcome = registry.compiled("welcome")
        assert welcome.version == second.version and welcome.html is first.compiled["welcome"].html

        compiles.clear()
        os.utime(divider, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, not changed
        third = await registry.refresh()
        assert third.version != second.version and compiles == [] and third.fresh == set()

        save(templates / "theme.amp.css", (templates / "theme.amp.css").read_text() + "\n")
        await registry.refresh()
        assert sorted(compiles) == ["abandoned_cart", "weekly_picks", "welcome"]

        compiles.clear()
        tpl = templates / "welcome" / "template.json"
        save(tpl, tpl.read_text().replace('"subject": "', '"subject": "Live ', 1))
        await registry.refresh()
        assert compiles == ["welcome"]
        assert registry.compiled("welcome").source.subject.startswith("Live ")
    finally:
        registry.close()


async def test_a_page_slower_than_the_saves_gets_the_latest_change_only(settings, sources):
    blocks, templates = sources
    app = create_app(
        settings(
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_SEGMENTS_FILE=templates / "segments.toml",
            KAIROS_RELOAD_TEMPLATES="true",
        )
    )
    live = app.state.live
    async with serve(app):
        await live.start()  # as the first page listening does
        divider = blocks / "divider" / "block.mjml"
        for i in range(3):  # three saves while a page does not read
            save(divider, divider.read_text() + f"<!-- save {i} -->\n")
            deadline = time.monotonic() + EVENT_WAIT_S
            while live.latest is None or live.latest.seq < i + 1:
                assert time.monotonic() < deadline, "the save was not announced"
                await asyncio.sleep(0.01)
        change = await live.next_change(0, 0.01)
        assert change is not None and change.seq == 3
        data = orjson.loads(change.data)
        assert data["version"] == live.version and data["files"] == ["blocks/divider/block.mjml"]
        assert await live.next_change(3, 0.01) is None  # nothing newer: the wait times out


async def test_a_recompile_reusing_unchanged_pieces_renders_as_a_fresh_compile(
    settings, sources, monkeypatch
):
    """The pieces of unchanged blocks are reused by a recompile (app/render/memo.py):
    what it renders is, byte for byte, what a compile from nothing renders."""
    blocks, templates = sources
    env = {
        "KAIROS_BLOCKS_DIR": blocks,
        "KAIROS_TEMPLATES_DIR": templates,
        "KAIROS_PUBLIC_URL": "https://kairos.example.com",  # with the AMP part
        "KAIROS_RELOAD_TEMPLATES": "true",
    }
    names = ("abandoned_cart", "weekly_picks", "welcome")
    readers = [
        (f"reader-{i}", {**ADA, "tier": "gold", "loyalty_points": 100 * i}) for i in range(8)
    ]
    hero = blocks / "hero" / "block.mjml"
    # A loop over products before the product grid's: the grid's shared loop bodies
    # come later in the template's table than in the last compile.
    benefits = blocks / "benefits" / "block.mjml"
    loop = (
        "<mj-raw>{% for product in recommendations[:2] %}</mj-raw><mj-section><mj-column>"
        "<mj-text>LOOPMARK {{ product.title }}</mj-text></mj-column></mj-section>"
        "<mj-raw>{% endfor %}</mj-raw>\n"
    )

    async def answers(client: httpx.AsyncClient) -> list[Any]:
        found = []
        for name in names:
            for user_id, profile in readers:
                body = {"template": name, "user_id": user_id, "profile": profile}
                r = await client.post("/v1/render", json=body, headers=AUTH)
                assert r.status_code == 200, r.text
                found.append(unstamped(r.json()))
        return found

    reusing = create_app(settings(**env))
    async with serve(reusing) as client:
        registry = reusing.state.services.renderer.templates
        save(hero, hero.read_text().replace("</mj-section>", "</mj-section>" + DIVIDER_MARK, 1))
        assert (await registry.refresh()).fresh == {"weekly_picks", "welcome"}
        save(templates / "theme.css", (templates / "theme.css").read_text() + "\n")
        assert len((await registry.refresh()).fresh) == 3
        save(benefits, benefits.read_text() + loop)
        assert (await registry.refresh()).fresh == {"abandoned_cart", "welcome"}
        after = await answers(client)
    assert any("LIVEMARK divider" in a["html"] for a in after)
    assert any("LOOPMARK" in a["html"] for a in after)
    assert {a["variant"] for a in after} == {"A", "B"}  # (welcome shows a hero in each)
    # The reference: compiled with no memo at all.
    monkeypatch.setattr(memo, "current", lambda: None)
    async with serve(create_app(settings(**env))) as client:
        assert await answers(client) == after


async def test_saves_leave_no_garbage_behind(sources):
    """A compile leaves reference cycles, and the app collects rarely (app/app.py): the
    registry collects them after each recompile, so a thousand saves do not pile up."""
    blocks, templates = sources
    registry = TemplateRegistry(blocks, templates, reload=True)
    registry.load()
    divider = blocks / "divider" / "block.mjml"
    gc.collect()
    gc.disable()  # as if the app's collector never ran during the saves
    try:
        for n in range(10):
            save(divider, divider.read_text() + f"<!-- save {n} -->\n")
            assert (await registry.refresh()).fresh == {"weekly_picks"}
        # Measured: none; without the registry's collection, 54 (and ~20 KB a save).
        assert gc.collect() < 10
    finally:
        gc.enable()
        registry.close()
