"""Compile once, render many: MJML runs when a template's files change, never per reader;
with reload on, a changed block is recompiled once and served; with it off, never.
Designers' mistakes (a template syntax error, Jinja reaching for Python internals) are
reported by `kairos check` as `file:line: message`, and a render of the broken template
answers 422 naming it, while the other templates go on serving.

Everything here runs on private copies of the real blocks and templates."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from support import AUTH, assert_error, serve

import app.render.compiler as compiler
import app.render.registry as registry
from app.app import create_app
from app.cli import main
from app.render.check import check_all

PUBLIC_URL = "https://kairos.example.com"
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
HERO = {
    "image_url": "https://shop.example.com/img/x.jpg",
    "image_alt": "x",
    "eyebrow": "Eyebrow",
    "headline": "The headline",
    "body": "Body copy",
    "cta_label": "Go",
    "cta_url": "https://shop.example.com/go",
}
SOLO = {
    "subject": "Hello{% if first_name %} {{ first_name }}{% endif %}",
    "links": {"home": "https://shop.example.com/"},
    "blocks": ["header", {"block": "hero", "params": HERO}, "greeting", "footer"],
}
NEW_HERO_MJML = (
    "<mj-section><mj-column><mj-text>FRESHMARK {{ params.headline }}</mj-text>"
    "</mj-column></mj-section>\n"
)


def write_template(templates: Path, name: str, doc: dict[str, Any]) -> None:
    (templates / name).mkdir()
    (templates / name / "template.json").write_text(json.dumps(doc))


def write_block(blocks: Path, name: str, files: dict[str, str]) -> Path:
    folder = blocks / name
    folder.mkdir()
    (folder / "block.json").write_text(files.pop("block.json", "{}"))
    for filename, text in files.items():
        (folder / filename).write_text(text)
    return folder


def bump(path: Path) -> None:
    """Move the file's mtime forward (a save within the same clock tick is still seen)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


@pytest.fixture
def mjml_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the MJML compiler's runs (the real one still runs)."""
    calls: list[int] = []
    real = compiler.mjml.mjml2html

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(compiler.mjml, "mjml2html", counting)
    return calls


@pytest.fixture
def solo(sources_copy) -> tuple[Path, Path]:
    """Copied blocks and a templates folder with the one template `solo`."""
    blocks, templates = sources_copy(templates=False)
    write_template(templates, "solo", SOLO)
    return blocks, templates


async def render(client: Any, template: str, user_id: str, **extra: Any) -> Any:
    return await client.post(
        "/v1/render", json={"template": template, "user_id": user_id, **extra}, headers=AUTH
    )


async def served(client: Any, template: str, seen: Callable[[Any], bool]) -> Any:
    """Renders `template` until an answer is `seen` (within 10 s): changed files are
    recompiled in the background while the last version goes on serving."""
    deadline = time.monotonic() + 10
    while True:
        r = await render(client, template, "ada")
        if seen(r):
            return r
        assert r.status_code in (200, 404, 422) and time.monotonic() < deadline, r.text
        await asyncio.sleep(0.01)


# --- compile once ---------------------------------------------------------------------------


async def test_many_readers_no_mjml_after_load(settings, solo, mjml_calls, monkeypatch):
    monkeypatch.setattr(registry, "RELOAD_CHECK_S", 0.0)  # check files on every render
    blocks, templates = solo
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates
        )
    )
    assert len(mjml_calls) == 1  # the one template, compiled at start-up
    async with serve(app) as client:
        htmls = set()
        for i in range(30):
            r = await render(client, "solo", f"reader-{i}", profile={"first_name": f"Reader{i}"})
            assert r.status_code == 200, r.text
            htmls.add(r.json()["html"])
        r = await client.post(
            "/v1/render/batch?template=solo",
            content=b"".join(b'{"user_id": "r%d"}\n' % i for i in range(100)),
            headers=NDJSON,
        )
        assert r.status_code == 200 and r.content.count(b"\n") == 100
    assert len(htmls) == 30  # 30 different emails...
    assert len(mjml_calls) == 1  # ...and MJML never ran for any of them


async def test_a_changed_block_is_recompiled_once_and_served(
    settings, solo, mjml_calls, monkeypatch
):
    monkeypatch.setattr(registry, "RELOAD_CHECK_S", 0.0)
    blocks, templates = solo
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_RELOAD_TEMPLATES="true",
        )
    )
    async with serve(app) as client:
        r = await render(client, "solo", "ada")
        assert "FRESHMARK" not in r.json()["html"]
        version = app.state.services.renderer.compiled("solo").version
        assert len(mjml_calls) == 1

        hero = blocks / "hero" / "block.mjml"
        hero.write_text(NEW_HERO_MJML)
        bump(hero)
        # Recompiled in the background: the last version serves until the new one is in.
        await served(client, "solo", lambda r: "FRESHMARK The headline" in r.json()["html"])
        for i in range(10):
            r = await render(client, "solo", f"reader-{i}")
            assert r.status_code == 200
            assert "FRESHMARK The headline" in r.json()["html"]
        assert len(mjml_calls) == 2  # recompiled once, for all ten readers
        recompiled = app.state.services.renderer.compiled("solo").version
        assert recompiled != version

        bump(hero)  # touched, not changed: still a new version of the files
        await served(
            client,
            "solo",
            lambda r: app.state.services.renderer.compiled("solo").version != recompiled,
        )
        for i in range(5):
            assert (await render(client, "solo", f"reader-{i}")).status_code == 200
        assert len(mjml_calls) == 2  # the same inputs: carried over, not compiled again

        # a new template appears, and a broken save is reported, then fixed
        write_template(templates, "duo", {**SOLO, "subject": "Duo"})
        r = await served(client, "duo", lambda r: r.status_code == 200)
        assert r.json()["subject"] == "Duo"
        hero.write_text("<mj-section><mj-column><mj-text>{% if x %}</mj-text>\n")
        bump(hero)
        r = await served(client, "solo", lambda r: r.status_code != 200)
        assert "solo" in assert_error(r, 422, "template_error")["message"]
        hero.write_text(NEW_HERO_MJML)
        bump(hero)
        await served(client, "solo", lambda r: r.status_code == 200)


async def test_with_reload_off_changes_are_not_picked_up(settings, solo, mjml_calls, monkeypatch):
    monkeypatch.setattr(registry, "RELOAD_CHECK_S", 0.0)
    blocks, templates = solo
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_RELOAD_TEMPLATES="false",
        )
    )
    async with serve(app) as client:
        before = (await render(client, "solo", "ada")).json()["html"]
        hero = blocks / "hero" / "block.mjml"
        hero.write_text(NEW_HERO_MJML)
        bump(hero)
        for _ in range(5):
            r = await render(client, "solo", "ada")
            assert r.status_code == 200
            assert "FRESHMARK" not in r.json()["html"]
        assert r.json()["html"] == before
    assert len(mjml_calls) == 1


# --- designers' mistakes -------------------------------------------------------------------

# (file in the block, its text, the line `kairos check` must name, what it must say)
EVIL_MJML = (
    "<mj-section><mj-column>\n"
    "<mj-text>Hello</mj-text>\n"
    "<mj-text>{{ ''.__class__.__mro__ }}</mj-text>\n"
    "</mj-column></mj-section>\n"
)
TYPO_AMP = '<div class="typo">\n  <p>{% if first_name %}Hi {{ first_name }}</p>\n</div>\n'
TYPO_MJML = "<mj-section><mj-column><mj-text>ok</mj-text></mj-column></mj-section>\n"
# passes the static check, fails in the sandbox at render time
RUNTIME_MJML = (
    "<mj-section><mj-column><mj-text>{{ (''|attr('__class__')).mro }}</mj-text>"
    "</mj-column></mj-section>\n"
)


@pytest.fixture(scope="module")
def broken(module_sources_copy) -> tuple[Path, Path]:
    """Copied blocks and templates, plus a sandbox escape, a syntax error and a runtime
    sandbox error, each in a block used by its own template."""
    blocks, templates = module_sources_copy()
    write_block(blocks, "evil", {"block.mjml": EVIL_MJML})
    write_block(blocks, "typo", {"block.mjml": TYPO_MJML, "block.amp.html": TYPO_AMP})
    write_block(blocks, "sneaky", {"block.mjml": RUNTIME_MJML})
    for name in ("evil", "typo", "sneaky"):
        write_template(
            templates,
            f"{name}_t",
            {
                "subject": name,
                "links": {"home": "https://shop.example.com/"},
                "blocks": ["header", name, "footer"],
            },
        )
    return blocks, templates


@pytest.fixture(scope="module")
def broken_env(broken) -> dict[str, str]:
    blocks, templates = broken
    return {"KAIROS_BLOCKS_DIR": str(blocks), "KAIROS_TEMPLATES_DIR": str(templates)}


@pytest.fixture(scope="module")
def broken_problems(module_settings, broken_env) -> list[str]:
    return check_all(module_settings(**broken_env), amp=False)


def test_check_all_names_file_and_line_of_each_mistake(broken, broken_problems):
    blocks, templates = broken
    evil = [p for p in broken_problems if "sandbox" in p and str(blocks / "evil") in p]
    assert evil, broken_problems
    assert evil[0].startswith(f"{blocks / 'evil' / 'block.mjml'}:3: sandbox: access to '__")
    assert "is not allowed" in evil[0]
    typo = [p for p in broken_problems if str(blocks / "typo") in p]
    assert typo, broken_problems
    assert typo[0].startswith(f"{blocks / 'typo' / 'block.amp.html'}:2: template syntax error")
    sneaky = [p for p in broken_problems if str(templates / "sneaky_t") in p]
    assert sneaky and all("sandbox" in p and "sneaky_t" in p for p in sneaky), broken_problems
    # only the broken ones are reported: the real templates in the copy are fine
    assert all(any(n in p for n in ("evil", "typo", "sneaky")) for p in broken_problems), (
        broken_problems
    )


def test_kairos_check_exits_1_and_lists_the_problems(
    clean_environ, broken, broken_env, monkeypatch, capsys
):
    blocks, _ = broken
    for name, value in broken_env.items():
        monkeypatch.setenv(name, value)
    assert main(["check", "--no-amp"]) == 1
    out, err = capsys.readouterr()
    assert "problem(s)" in out
    assert f"{blocks / 'evil' / 'block.mjml'}:3: sandbox" in err
    assert f"{blocks / 'typo' / 'block.amp.html'}:2: template syntax error" in err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def broken_app(module_settings, broken_env) -> Starlette:
    return create_app(module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, **broken_env))


@pytest.mark.parametrize(
    ("template", "says"),
    [("evil_t", "sandbox"), ("typo_t", "syntax"), ("sneaky_t", "sandbox")],
)
async def test_rendering_a_broken_template_is_422_naming_it(broken_app, template, says):
    async with serve(broken_app, raise_app_exceptions=False) as client:
        for request in (
            client.post("/v1/render", json={"template": template, "user_id": "ada"}, headers=AUTH),
            client.get(f"/v1/render/{template}", params={"user_id": "ada"}, headers=AUTH),
        ):
            error = assert_error(await request, 422, "template_error")
            assert template in error["message"] and says in error["message"], error
        # The studio's preview names the file at fault (tests/test_studio_api.py).
        r = await client.post("/v1/preview", json={"template": template}, headers=AUTH)
        error = assert_error(r, 422, "template_broken")
        assert says in error["message"] and error["file"].startswith(("blocks/", "templates/"))
        # the server is still up: the real templates render
        for name in ("welcome", "abandoned_cart", "weekly_picks"):
            r = await render(client, name, "ada")
            assert r.status_code == 200, (name, r.text)


async def test_broken_templates_in_listing_and_batch(broken_app):
    async with serve(broken_app, raise_app_exceptions=False) as client:
        r = await client.get("/v1/templates", headers=AUTH)
        listing = {t["name"]: t for t in r.json()["templates"]}
        for name in ("evil_t", "typo_t"):
            assert listing[name]["ok"] is False and name in listing[name]["error"]
        assert listing["welcome"]["ok"] is True
        body = (
            b'{"template": "welcome", "user_id": "ada"}\n'
            b'{"template": "evil_t", "user_id": "ada"}\n'
            b'{"template": "sneaky_t", "user_id": "ada"}\n'
            b'{"template": "weekly_picks", "user_id": "grace"}\n'
        )
        r = await client.post("/v1/render/batch", content=body, headers=NDJSON)
        answers = [json.loads(line) for line in r.content.splitlines()]
        assert [a["line"] for a in answers] == [1, 2, 3, 4]
        assert "html" in answers[0] and "html" in answers[3]
        assert answers[1]["error"]["code"] == answers[2]["error"]["code"] == "template_error"


# --- known bugs -------------------------------------------------------------------------------

ZERO_DIVISION_MJML = (
    "<mj-section><mj-column><mj-text>{{ 100 // params.per_row }} per row</mj-text>"
    "</mj-column></mj-section>\n"
)


@pytest.fixture
def zero_division(sources_copy) -> tuple[Path, Path]:
    """A block whose arithmetic fails for the params a template gives it."""
    blocks, templates = sources_copy(templates=False)
    write_block(
        blocks,
        "rows",
        {"block.json": '{"params": {"per_row": 0}}', "block.mjml": ZERO_DIVISION_MJML},
    )
    links = {"home": "https://shop.example.com/"}
    write_template(templates, "rows_t", {"subject": "r", "links": links, "blocks": ["rows"]})
    write_template(templates, "fine_t", {"subject": "f", "links": links, "blocks": ["header"]})
    return blocks, templates


async def test_a_template_failing_with_zero_division_is_422(settings, zero_division):
    # Regression: Renderer.render_data (app/render/renderer.py, `except (TemplateError,
    # TypeError, ValueError, AttributeError, KeyError)`) lets ArithmeticError (and any
    # other exception from a designer's Jinja) through: 500 instead of 422 template_error
    blocks, templates = zero_division
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates
        )
    )
    async with serve(app, raise_app_exceptions=False) as client:
        r = await render(client, "rows_t", "ada")
        assert "rows_t" in assert_error(r, 422, "template_error")["message"]


async def test_a_batch_survives_a_template_failing_at_render_time(settings, zero_division):
    # Regression: one line whose template raises something other than a KairosError kills
    # the whole NDJSON answer (app/routes/render.py _render_chunk catches KairosError
    # only): 200 with an empty body, the good lines' renders lost
    blocks, templates = zero_division
    app = create_app(
        settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates
        )
    )
    body = b"".join(
        b'{"template": "%s", "user_id": "r%d"}\n' % (b"rows_t" if i == 5 else b"fine_t", i)
        for i in range(10)
    )
    async with serve(app, raise_app_exceptions=False) as client:
        r = await client.post("/v1/render/batch", content=body, headers=NDJSON)
    answers = [json.loads(line) for line in r.content.splitlines()]
    assert [a["line"] for a in answers] == list(range(1, 11))
    assert answers[5]["error"]["code"] == "template_error"
    assert all("html" in a for i, a in enumerate(answers) if i != 5)


def test_kairos_check_reports_a_template_failing_at_render_time(
    clean_environ, zero_division, monkeypatch, capsys
):
    # Regression: `kairos check` crashes with a traceback (ZeroDivisionError out of
    # check_all) instead of reporting the template: app/render/check.py only catches
    # KairosError around renderer.render
    blocks, templates = zero_division
    monkeypatch.setenv("KAIROS_BLOCKS_DIR", str(blocks))
    monkeypatch.setenv("KAIROS_TEMPLATES_DIR", str(templates))
    assert main(["check", "--no-amp"]) == 1
    assert "rows_t" in capsys.readouterr().err


def test_kairos_check_names_the_block_file_and_line_of_an_unknown_filter(
    module_settings, sources_copy: Callable[..., tuple[Path, Path]]
):
    # Regression: an unknown filter in a block is reported as 'templates/<t>/(html):
    # template error: No filter named ...', naming neither the block file nor its line:
    # app/render/jinja.py check_part only parses (env.parse), and unknown filters are
    # found when compiling
    blocks, templates = sources_copy(templates=False)
    write_block(
        blocks,
        "filtered",
        {
            "block.mjml": "<mj-section><mj-column>\n<mj-text>\n{{ first_name | shout }}"
            "</mj-text></mj-column></mj-section>\n"
        },
    )
    write_template(
        templates,
        "filtered_t",
        {"subject": "f", "links": {"home": "https://shop.example.com/"}, "blocks": ["filtered"]},
    )
    problems = check_all(
        module_settings(KAIROS_BLOCKS_DIR=blocks, KAIROS_TEMPLATES_DIR=templates), amp=False
    )
    assert any(
        p.startswith(f"{blocks / 'filtered' / 'block.mjml'}:3: ") and "shout" in p for p in problems
    ), problems
