"""The Kairos ASGI app (app/asgi.py): one middleware stack (observe -> error path ->
body cap -> router) in front of every route, the open-time routes (feeds, live images)
first. Each test goes through `create_app` and real HTTP over ASGI."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, Router, request_response
from starlette.types import Receive, Scope, Send
from support import AUTH, TOKENS, assert_error, feed_url, image_url, serve

from app.app import create_app
from app.asgi import KairosApp

MAX_BODY = 2048
DEADLINE = "2099-12-24T23:59:59Z"
LEAK = "SECRET-DETAIL-db.internal:5432"

FEED_ROUTE = "/v1/feeds/{feed}"
IMAGE_ROUTE = "/v1/img/{image}.{format}"


@pytest.fixture
def app(settings: Any) -> KairosApp:
    return create_app(settings(KAIROS_MAX_BODY_BYTES=MAX_BODY))


@pytest.fixture
async def client(app: KairosApp) -> Any:
    async with serve(app) as c:
        yield c


def requests_total(text: str, route: str, method: str, status: int) -> float | None:
    """The `kairos_requests_total` sample of /metrics for these labels (None: absent)."""
    wanted = {"route": route, "method": method, "status": str(status)}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "kairos_requests_total" and s.labels == wanted:
                return s.value
    return None


def route_at(app: KairosApp, path: str) -> Route:
    [route] = [r for r in app.routes if isinstance(r, Route) and r.path == path]
    return route


# (route template, method, path and query, request kwargs): a valid request to each
# kind of route.
def valid_requests() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (FEED_ROUTE, "GET", feed_url("profile", "ada"), {}),
        (IMAGE_ROUTE, "GET", image_url("countdown", "ada", deadline=DEADLINE, frames=1), {}),
        ("/v1/profiles/{user_id}", "GET", "/v1/profiles/ada", {"headers": AUTH}),
        (
            "/v1/render",
            "POST",
            "/v1/render",
            {"headers": AUTH, "json": {"template": "welcome", "user_id": "ada"}},
        ),
        ("/healthz", "GET", "/healthz", {}),
    ]


# --- the app object ------------------------------------------------------------------


def test_the_app_has_state_a_router_and_the_open_time_routes_first(app: KairosApp):
    assert isinstance(app.state, State)
    assert app.state.services.settings.max_body_bytes == MAX_BODY
    assert isinstance(app.router, Router)
    paths = [r.path for r in app.routes if isinstance(r, Route)]
    assert paths[:2] == [FEED_ROUTE, IMAGE_ROUTE]
    assert {"/healthz", "/metrics", "/v1/profiles/{user_id}", "/v1/render"} <= set(paths)
    # Each route is registered once: the open-time ones are not also in the router.
    assert len(paths) == len(set(paths))
    assert FEED_ROUTE not in [getattr(r, "path", None) for r in app.router.routes]


async def test_the_lifespan_runs_and_loads_the_demo_data(app: KairosApp):
    profiles = app.state.services.stores.profiles
    assert await profiles.get("ada") is None  # nothing before start-up
    async with serve(app) as client:
        assert (await profiles.get("ada") or {}).get("first_name") == "Ada"
        r = await client.get(feed_url("profile", "ada"))
        assert r.status_code == 200
        assert "x-kairos-fallback" not in r.headers
        assert r.json()["items"][0]["first_name"] == "Ada"


async def test_a_handler_reaches_the_app_through_its_scope(app: KairosApp):
    seen: list[object] = []

    async def peek(request: Request) -> Response:
        seen.append(request.app)
        seen.append(request.scope["app"].state.services)
        return Response("ok")

    app.router.routes.insert(0, Route("/peek", peek))
    async with serve(app) as client:
        assert (await client.get("/peek")).text == "ok"
    assert seen == [app, app.state.services]


# --- one stack for every route ---------------------------------------------------------


def oversize_requests() -> list[Any]:
    too_big = b"x" * (MAX_BODY + 1)
    return [
        pytest.param("GET", feed_url("profile", "ada"), {"content": too_big}, id="feed"),
        pytest.param(
            "GET",
            image_url("countdown", "ada", deadline=DEADLINE),
            {"content": too_big},
            id="image",
        ),
        pytest.param("GET", "/healthz", {"content": too_big}, id="healthz"),
        pytest.param(
            "PUT",
            "/v1/profiles/ada",
            {"content": too_big, "headers": {**AUTH, "Content-Type": "application/json"}},
            id="profiles",
        ),
        pytest.param(
            "GET",
            feed_url("cart", "ada"),
            {"headers": {"Content-Length": str(MAX_BODY + 1)}},
            id="feed-declared-only",
        ),
    ]


@pytest.mark.parametrize(("method", "url", "kwargs"), oversize_requests())
async def test_a_declared_oversize_is_the_same_413_on_every_route(
    client: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
):
    r = await client.request(method, url, **kwargs)
    error = assert_error(r, 413, "payload_too_large")
    assert error["message"] == f"request body is larger than {MAX_BODY} bytes"


async def test_a_body_at_the_limit_reaches_the_feed(client: httpx.AsyncClient):
    r = await client.request("GET", feed_url("profile", "ada"), content=b"x" * MAX_BODY)
    assert r.status_code == 200
    assert r.json()["items"][0]["first_name"] == "Ada"


ROUTING_ERRORS = [
    # (method, path, status, Allow)
    ("POST", "/v1/feeds/profile", 405, {"GET", "HEAD"}),
    ("DELETE", "/v1/feeds/cart", 405, {"GET", "HEAD"}),
    ("PUT", "/v1/img/countdown.gif", 405, {"GET", "HEAD"}),
    ("GET", "/v1/feeds/profile/more", 404, None),
    ("GET", "/v1/img/countdown", 404, None),
    ("POST", "/healthz", 405, {"GET", "HEAD"}),
    ("PUT", "/v1/render", 405, {"POST"}),
    ("GET", "/nope", 404, None),
    ("GET", "/v1/feeds", 404, None),
]


@pytest.mark.parametrize(("method", "path", "status", "allow"), ROUTING_ERRORS)
async def test_404_and_405_are_json_on_open_time_and_other_routes(
    client: httpx.AsyncClient, method: str, path: str, status: int, allow: set[str] | None
):
    r = await client.request(method, path)
    code = "method_not_allowed" if status == 405 else "not_found"
    assert_error(r, status, code)
    if allow is None:
        assert "allow" not in r.headers
    else:
        assert set(r.headers["allow"].replace(" ", "").split(",")) == allow


async def boom_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError(LEAK)


async def boom_endpoint(request: Request) -> Response:
    raise RuntimeError(LEAK)


@pytest.mark.parametrize(
    ("template", "method", "url", "kwargs"),
    [pytest.param(*case, id=case[0]) for case in valid_requests()],
)
async def test_an_exception_in_any_route_is_a_500_json_logged_and_counted(
    app: KairosApp,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    template: str,
    method: str,
    url: str,
    kwargs: dict[str, Any],
):
    route = route_at(app, template)
    # The open-time routes are plain ASGI endpoints; the others go through Starlette's
    # request/response wrapper, as in the app.
    broken = boom_asgi if route.app is route.endpoint else request_response(boom_endpoint)
    monkeypatch.setattr(route, "app", broken)
    caplog.set_level(logging.ERROR, logger="kairos.errors")
    async with serve(app) as client:
        r = await client.request(method, url, **kwargs)
        assert_error(r, 500, "internal")
        assert r.json() == {"error": {"code": "internal", "message": "internal error"}}
        assert LEAK not in r.text and "RuntimeError" not in r.text
        metrics = (await client.get("/metrics")).text
    assert requests_total(metrics, template, method, 500) == 1
    [record] = [rec for rec in caplog.records if rec.name == "kairos.errors"]
    assert record.exc_info is not None and LEAK in str(record.exc_info[1])
    assert LEAK in (record.exc_text or "")  # the traceback, formatted


async def test_every_route_is_counted_under_its_template(client: httpx.AsyncClient):
    for _template, method, url, kwargs in valid_requests():
        r = await client.request(method, url, **kwargs)
        assert r.status_code == 200, (url, r.text)
    metrics = (await client.get("/metrics")).text
    for template, method, url, _kwargs in valid_requests():
        assert requests_total(metrics, template, method, 200) == 1, template
        path, _, query = url.partition("?")
        if path != template:
            assert f'route="{path}"' not in metrics
        if query:
            assert query.removeprefix("t=") not in metrics


async def test_routing_errors_are_counted_under_the_template_or_unmatched(
    client: httpx.AsyncClient,
):
    await client.post("/v1/feeds/profile")
    await client.get("/v1/feeds/profile/more")
    metrics = (await client.get("/metrics")).text
    assert requests_total(metrics, FEED_ROUTE, "POST", 405) == 1
    assert requests_total(metrics, "unmatched", "GET", 404) == 1


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/px/{token}.gif", {"Content-Length": str(MAX_BODY + 1)}),
        ("/c/{token}", {"Content-Length": "abc"}),
    ],
)
async def test_a_token_path_refused_before_routing_is_not_logged(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: dict[str, str],
):
    caplog.set_level(logging.INFO, logger="kairos.access")
    token = TOKENS.sign("pixel", "ada", "open", campaign="spring")
    r = await client.get(path.format(token=token), headers=headers)
    assert r.status_code in (400, 413)
    [line] = [rec.getMessage() for rec in caplog.records if rec.name == "kairos.access"]
    assert token not in line, line
