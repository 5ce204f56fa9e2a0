"""Baseline (b) for bench/render.py: the same render, with MJML compiled per render.

`naive_app` answers `POST /v1/render` with Kairos's JSON body and Kairos's JSON answer,
the way a renderer without a compile step would do it. Per request:

1. Kairos's own request validation (`RenderRequest`, the inline profile checked) and
   Kairos's own data step (cart and recommendations completed from the same catalog);
2. Kairos's `render_data` over the template compiled by Kairos, except for the HTML
   part: there, Jinja runs over the template's MJML source (the blocks assembled as
   app/render/compiler.py does, with the Jinja left in place), then `mjml.mjml2html`
   compiles the reader's MJML, then `css_inline` inlines theme.css. That is the work
   Kairos does once per template version instead of once per reader.

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
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import css_inline  # noqa: E402
import mjml  # noqa: E402
import orjson  # noqa: E402
from jinja2 import Template  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from app.demo import load_demo  # noqa: E402
from app.errors import KairosError, NotFound  # noqa: E402
from app.render.compiler import Compiled  # noqa: E402
from app.render.renderer import Renderer, RenderResult  # noqa: E402
from app.render.sources import Block, TemplateSource  # noqa: E402
from app.routes.render import RenderRequest  # noqa: E402
from app.services import build_services  # noqa: E402
from app.settings import Settings  # noqa: E402

PIXEL = (
    '<mj-raw><img src="{{ links.pixel() }}" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px"></mj-raw>'
)


def naive_mjml_source(source: TemplateSource, used: tuple[Block, ...]) -> str:
    """The template's whole MJML document with its Jinja left in: the document
    app/render/compiler.py::_compile_html assembles (same head, attributes, blocks in
    order with their fallbacks, pixel), but with each block's main/fallback/hidden choice
    written as Jinja instead of markers, so that Jinja runs before MJML."""
    body = []
    for i, block in enumerate(used):
        main = block.mjml.text
        fallback = block.fallback_mjml.text if block.fallback_mjml else ""
        body.append(
            f'{{% if _mode[{i}] == "main" %}}{{% with params = _params[{i}] %}}{main}'
            f'{{% endwith %}}{{% elif _mode[{i}] == "fallback" %}}'
            f"{{% with params = _params[{i}] %}}{fallback}{{% endwith %}}{{% endif %}}"
        )
    return (
        "<mjml><mj-head>"
        "<mj-title>{{ _subject }}</mj-title><mj-preview>{{ _preheader }}</mj-preview>"
        '<mj-attributes><mj-all font-family="Helvetica, Arial, sans-serif"/>'
        '<mj-text font-size="16px" line-height="24px" color="#1f2933"/></mj-attributes>'
        '</mj-head><mj-body background-color="#f4f5f7" width="600px">'
        + "".join(body)
        + PIXEL
        + "</mj-body></mjml>"
    )


class NaiveHtml:
    """Stands in for the precompiled HTML template: Jinja over MJML, then MJML, then
    CSS inlining, on every render."""

    def __init__(self, template: Template, theme_css: str) -> None:
        self._template = template
        self._inliner = (
            css_inline.CSSInliner(
                extra_css=theme_css,
                inline_style_tags=False,
                keep_style_tags=True,
                load_remote_stylesheets=False,
            )
            if theme_css
            else None
        )

    def render(self, ctx: dict[str, Any]) -> str:
        document = self._template.render(ctx)
        html: str = mjml.mjml2html(document)
        if self._inliner is not None:
            html = self._inliner.inline(html)
        return html


class ExpandedMjml:
    """Stands in for the HTML template and returns the reader's MJML before compiling."""

    def __init__(self, template: Template) -> None:
        self._template = template

    def render(self, ctx: dict[str, Any]) -> str:
        return self._template.render(ctx)


def _theme_css(renderer: Renderer) -> str:
    path = renderer.templates_dir / "theme.css"
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _jinja_mjml(renderer: Renderer, compiled: Compiled) -> Template:
    return renderer.environments.html.from_string(
        naive_mjml_source(compiled.source, compiled.blocks)
    )


def naive_compiled(renderer: Renderer, name: str) -> Compiled:
    """Kairos's compiled template `name` with its HTML part made per render."""
    compiled = renderer.compiled(name)
    html = NaiveHtml(_jinja_mjml(renderer, compiled), _theme_css(renderer))
    return dataclasses.replace(compiled, html=html)  # type: ignore[arg-type]


async def expanded_mjml(
    renderer: Renderer,
    name: str,
    user_id: str,
    profile: dict[str, Any],
    campaign: str | None,
) -> RenderResult:
    """A render of `name` for one reader whose `html` is the reader's MJML document
    (Jinja applied, MJML not compiled yet); the other parts are as Kairos renders them."""
    compiled = renderer.compiled(name)
    capture = dataclasses.replace(compiled, html=ExpandedMjml(_jinja_mjml(renderer, compiled)))  # type: ignore[arg-type]
    data = await renderer._data(profile, asyncio.get_running_loop().time() + 5.0)
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
        deadline = asyncio.get_running_loop().time() + renderer._budget_s
        data = await renderer._data(req.profile or {}, deadline)
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
        await load_demo(services.store)
    renderer = services.renderer
    _state["renderer"] = renderer
    _state["naive"] = {}
    for name in renderer.names():
        with contextlib.suppress(KairosError):
            _state["naive"][name] = naive_compiled(renderer, name)
    try:
        yield
    finally:
        await services.store.close()
        _state.clear()


naive_app = Starlette(
    routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/render", render, methods=["POST"]),
    ],
    lifespan=_lifespan,
)
