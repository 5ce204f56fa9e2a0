"""Access log and request metrics (app/middleware/observe.py): labelled by route
template, never by the raw path, which may hold a token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.types import Message, Receive, Scope, Send
from support import BASE_URL

from app.fallbacks import Reason
from app.metrics import Metrics
from app.middleware.edge import Edge
from app.middleware.observe import FALLBACK_SCOPE_KEY, Observer

TOKEN = "eyJ1IjoiYWRhIn0.c2VjcmV0LXNpZ25hdHVyZQ"  # what a signed token looks like


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


async def created(request: Request) -> Response:
    return PlainTextResponse("made", status_code=201)


async def with_fallback(request: Request) -> Response:
    request.scope[FALLBACK_SCOPE_KEY] = Reason.BUDGET
    return PlainTextResponse("fallback")


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug")


ROUTER = Router(
    [
        Route("/c/{token}", ok),
        Route("/v1/px/{token}.gif", ok),
        Route("/v1/feeds/{feed}", with_fallback),
        Route("/v1/profiles/{user_id}", created, methods=["PUT"]),
        Route("/healthz", ok),
        Route("/boom", broken),
    ]
)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kairos.access")
    return caplog


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The access log lines written so far."""
    return [r.getMessage() for r in caplog.records if r.name == "kairos.access"]


@pytest.fixture
async def client(metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    """Observe -> the one error path -> the router, as in the app."""
    app = Edge(ROUTER, Observer(metrics))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


def requests_counted(metrics: Metrics) -> dict[tuple[str, str, str], float]:
    """kairos_requests_total by (route, method, status), read from the exposition."""
    counted = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == "kairos_requests_total":
                counted[(s.labels["route"], s.labels["method"], s.labels["status"])] = s.value
    return counted


def latency_count(metrics: Metrics, route: str) -> float | None:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == "kairos_request_seconds_count" and s.labels["route"] == route:
                return s.value
    return None


async def test_requests_are_counted_by_template_method_and_status(client, metrics):
    await client.get("/v1/feeds/cart")
    await client.get("/v1/feeds/profile")
    await client.put("/v1/profiles/ada")
    await client.get("/healthz")
    assert requests_counted(metrics) == {
        ("/v1/feeds/{feed}", "GET", "200"): 2,
        ("/v1/profiles/{user_id}", "PUT", "201"): 1,
        ("/healthz", "GET", "200"): 1,
    }
    assert latency_count(metrics, "/v1/feeds/{feed}") == 2
    assert latency_count(metrics, "/healthz") == 1


async def test_an_unmatched_path_is_counted_as_unmatched(client, metrics):
    r = await client.get(f"/no/such/{TOKEN}")
    assert r.status_code == 404
    assert requests_counted(metrics) == {("unmatched", "GET", "404"): 1}
    assert TOKEN not in metrics.render().decode()


async def test_a_wrong_method_is_counted_under_the_routes_template(client, metrics):
    r = await client.delete("/v1/profiles/ada")
    assert r.status_code == 405
    assert requests_counted(metrics) == {("/v1/profiles/{user_id}", "DELETE", "405"): 1}


@pytest.mark.parametrize(
    ("path", "template"),
    [(f"/c/{TOKEN}", "/c/{token}"), (f"/v1/px/{TOKEN}.gif", "/v1/px/{token}.gif")],
)
async def test_a_token_in_the_path_is_in_neither_metrics_nor_access_log(
    client, metrics, access_log, path: str, template: str
):
    r = await client.get(path)
    assert r.status_code == 200
    assert requests_counted(metrics) == {(template, "GET", "200"): 1}
    assert TOKEN not in metrics.render().decode()
    [line] = lines(access_log)
    assert line.startswith(f"GET {template} 200 "), line
    assert TOKEN not in line


async def test_the_access_log_names_the_path_of_other_routes_but_never_the_query(
    client, access_log
):
    await client.get(f"/healthz?t={TOKEN}")
    await client.put("/v1/profiles/ada")
    first, second = lines(access_log)
    assert first.startswith("GET /healthz 200 ") and first.endswith("ms")
    assert TOKEN not in first
    # A reader's id never reaches the logs: its path is logged as the route's template.
    assert second.startswith("PUT /v1/profiles/{user_id} 201 ")
    assert "ada" not in second


async def test_a_fallback_is_named_at_the_end_of_the_access_log_line(client, access_log):
    r = await client.get("/v1/feeds/cart")
    assert r.text == "fallback"
    await client.get("/healthz")
    with_reason, without = lines(access_log)
    assert with_reason.startswith("GET /v1/feeds/cart 200 ")
    assert with_reason.endswith("ms fallback=budget")
    assert "fallback" not in without


async def test_an_exception_answered_by_the_error_path_is_counted_500(client, metrics, access_log):
    r = await client.get("/boom")
    assert r.status_code == 500
    assert requests_counted(metrics) == {("/boom", "GET", "500"): 1}
    [line] = lines(access_log)
    assert line.startswith("GET /boom 500 ")


async def test_an_exception_after_the_answer_started_counts_the_status_sent(metrics):
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 206, "headers": []})
        raise RuntimeError("mid-stream")

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        pass

    scope: Scope = {"type": "http", "method": "GET", "path": "/x", "headers": []}
    with pytest.raises(RuntimeError):
        await Edge(app, Observer(metrics))(scope, receive, send)
    assert requests_counted(metrics) == {("unmatched", "GET", "206"): 1}


async def test_other_scope_types_are_neither_counted_nor_logged(metrics, access_log):
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    await Edge(app, Observer(metrics))({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]
    assert requests_counted(metrics) == {}
    assert lines(access_log) == []


async def test_a_made_up_method_is_counted_as_other_not_as_itself():
    """Metric labels stay bounded whatever methods clients invent."""
    metrics = Metrics()

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 405, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    observed = Edge(app, Observer(metrics))
    transport = httpx.ASGITransport(app=observed)
    async with httpx.AsyncClient(transport=transport, base_url="http://k") as client:
        await client.request("BREW", "/pot")
    text = metrics.render().decode()
    assert 'method="OTHER"' in text
    assert "BREW" not in text
