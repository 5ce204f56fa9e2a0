"""Baseline (b) for bench/render.py: the same render, with MJML compiled per render.

`naive_app` answers `POST /v1/render` with Kairos's JSON body and Kairos's JSON answer,
the way a renderer without a compile step would do it. Per request:

1. Kairos's own request validation (`RenderRequest`, the inline profile checked) and
   Kairos's own data step (cart and recommendations completed from the same catalog);
2. Kairos's `render_data` over the template compiled by Kairos, except for the HTML
   part: there, Jinja runs over the template's MJML document (assembled by Kairos's own
   `compiler.mjml_document`, with the Jinja put back in place), then Kairos's own
   `compiler.mrml_html` compiles the reader's MJML (`mjml.mjml2html`, MRML) and inlines
   theme.css (`css_inline`). That is the work Kairos does once per template version
   instead of once per reader.

The AMP and text parts, the subject and the preheader have no MJML in them: they go
through Kairos's precompiled Jinja as in Kairos, so (a)/(b) measures what compiling MJML
per reader costs and nothing else. Unlike Kairos there is no middleware (metrics, access
log, body cap) and no API key check, which if anything flatters (b).

    KAIROS_* as for Kairos   uvicorn --app-dir bench bare_render:naive_app

`expanded_mjml()` is also used by bench/render.py to give the Node baseline (c) the
same reader-specific MJML to compile.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from jinja2 import Template  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from app.demo import load_demo  # noqa: E402
from app.errors import KairosError, NotFound  # noqa: E402
from app.render.compiler import (  # noqa: E402
    MARKER,
    Compiled,
    block_branch,
    mjml_document,
    mrml_html,
)
from app.render.jinja import restore  # noqa: E402
from app.render.layout import Layout  # noqa: E402
from app.render.renderer import Renderer  # noqa: E402
from app.render.request import RenderRequest  # noqa: E402
from app.render.result import RenderResult  # noqa: E402
from app.render.sources import Block, TemplateSource  # noqa: E402
from app.services import build_services  # noqa: E402
from app.settings import Settings  # noqa: E402


def naive_mjml_source(
    source: TemplateSource, used: tuple[Block, ...], theme_css: str, *, inline_style: bool = False
) -> str:
    """The template's whole MJML document with its Jinja in place: Kairos's own
    `mjml_document` (same head, styles, blocks and fallbacks, pixel), with the Jinja
    tags put back and the block markers written as Jinja, so that Jinja runs first and
    MJML compiles what it produced."""
    document, tags, _ = mjml_document(source, used, theme_css, inline_style=inline_style)
    document, _ = restore(document.replace("kjxlangx", "{{ locale }}"), tags)
    return MARKER.sub(block_branch, document)


class NaiveHtml:
    """Stands in for the precompiled HTML layout (as its one piece, rendered per reader):
    Jinja over MJML, then MJML (MRML) and CSS inlining with Kairos's own `mrml_html`, on
    every render."""

    keyed = None
    reusable = False

    def __init__(self, template: Template, theme_css: str, where: Path) -> None:
        self._template, self._theme_css, self._where = template, theme_css, where

    def render(self, ctx: dict[str, Any]) -> str:
        return mrml_html(self._template.render(ctx), self._theme_css, self._where)


class ExpandedMjml:
    """Stands in for the HTML layout (as its one piece) and returns the reader's MJML
    before compiling."""

    keyed = None
    reusable = False

    def __init__(self, template: Template) -> None:
        self._template = template

    def render(self, ctx: dict[str, Any]) -> str:
        return self._template.render(ctx)


def _theme_css(renderer: Renderer) -> str:
    path = renderer.templates.templates_dir / "theme.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _jinja_mjml(renderer: Renderer, compiled: Compiled, *, inline_style: bool) -> Template:
    source = naive_mjml_source(
        compiled.source, compiled.blocks, _theme_css(renderer), inline_style=inline_style
    )
    return renderer.templates.environments.html.from_string(source)


def naive_compiled(renderer: Renderer, name: str) -> Compiled:
    """Kairos's compiled template `name` with its HTML part made per render."""
    compiled = renderer.compiled(name)
    template = _jinja_mjml(renderer, compiled, inline_style=False)
    html = NaiveHtml(template, _theme_css(renderer), compiled.source.folder)
    return dataclasses.replace(compiled, html=Layout((html,)))  # type: ignore[arg-type]


async def expanded_mjml(
    renderer: Renderer,
    name: str,
    user_id: str,
    profile: dict[str, Any],
    campaign: str | None,
) -> RenderResult:
    """A render of `name` for one reader whose `html` is the reader's MJML document
    (Jinja applied, MJML not compiled yet, the theme CSS also in an
    `<mj-style inline="inline">` for compilers that inline it themselves, as Node mjml
    does); the other parts are as Kairos renders them."""
    compiled = renderer.compiled(name)
    template = _jinja_mjml(renderer, compiled, inline_style=True)
    capture = dataclasses.replace(compiled, html=Layout((ExpandedMjml(template),)))  # type: ignore[arg-type]
    data = await renderer.data(profile, asyncio.get_running_loop().time() + 5.0)
    return renderer.render_data(capture, user_id, profile, data, None, campaign)


# --- the app ----------------------------------------------------------------------------

_state: dict[str, Any] = {}


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def render(request: Request) -> Response:
    renderer: Renderer = _state["renderer"]
    try:
        try:
            doc = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return Response(
                b'{"error":{"code":"invalid_json"}}', 400, media_type="application/json"
            )
        req = RenderRequest(doc)
        compiled = _state["naive"].get(req.template)
        if compiled is None:
            raise NotFound(f"no template named {req.template!r}", code="template_not_found")
        deadline = asyncio.get_running_loop().time() + renderer.budget_s
        data = await renderer.data(req.profile or {}, deadline)
        result = renderer.render_data(
            compiled, req.user_id, req.profile, data, None, req.campaign, req.formats
        )
    except KairosError as exc:
        return Response(orjson.dumps(exc.body()), exc.status, media_type="application/json")
    return Response(orjson.dumps(result.body()), media_type="application/json")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    services = build_services(Settings.from_env())
    if services.settings.demo_data:
        await load_demo(services.stores)
    renderer = services.renderer
    _state["renderer"] = renderer
    _state["naive"] = {}
    for name in renderer.names():
        with contextlib.suppress(KairosError):
            _state["naive"][name] = naive_compiled(renderer, name)
    try:
        yield
    finally:
        await services.stores.close()
        _state.clear()


naive_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/render", render, methods=["POST"]),
    ],
    lifespan=_lifespan,
)


# --- the ceiling: no render at all ------------------------------------------------------

_answer: dict[str, Any] = {}


async def static_render(request: Request) -> Response:
    await request.body()
    return Response(orjson.dumps(_answer), media_type="application/json")


def _load_answer() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(Path(os.environ["BENCH_RENDER_ANSWER"]).read_bytes())
    return doc


@contextlib.asynccontextmanager
async def _static_lifespan(app: Starlette) -> AsyncIterator[None]:
    _answer.update(_load_answer())  # once, at start-up
    yield
    _answer.clear()


static_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/render", static_render, methods=["POST"]),
    ],
    lifespan=_static_lifespan,
)
