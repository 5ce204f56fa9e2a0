"""`uvicorn --factory studio_amp_server:factory`: Kairos, plus the studio's AMP frame
script at `/designer/static/amp-frame.js`, for tests/test_studio_amp.py. The studio's
page serves its whole static folder there; this stands in for that one file."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.app import factory as kairos_factory
from app.asgi import KairosApp
from app.settings import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "app" / "studio" / "static" / "amp-frame.js"


async def amp_frame(request: Request) -> Response:
    return Response(SCRIPT.read_bytes(), media_type="text/javascript; charset=utf-8")


def factory() -> KairosApp:
    app = kairos_factory()
    app.router.routes.insert(0, Route("/designer/static/amp-frame.js", amp_frame))
    return app
