"""The one error path (app/middleware/errors.py, `app.errors.error_response`): whatever a
route raises becomes one JSON answer, unless the answer had already started."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive, Scope, Send
from support import BASE_URL, assert_error

from app.errors import (
    BadRequest,
    CorruptData,
    Forbidden,
    KairosError,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
    error_response,
)
from app.metrics import Metrics
from app.middleware.edge import Edge
from app.middleware.observe import Observer
from app.tokens import BadToken

SECRET_DETAIL = "password=hunter2 at db.internal:5432"


def raising(exc: BaseException) -> Edge:
    """The edge around an app that raises `exc` before answering."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise exc

    return Edge(app, Observer(Metrics()))


Through = Callable[..., Awaitable[httpx.Response]]


@pytest.fixture
async def request_through() -> AsyncIterator[Through]:
    """`await request_through(app, method, path)`: one request to `app` over httpx."""
    clients: list[httpx.AsyncClient] = []

    async def send(app: Edge, method: str = "GET", path: str = "/x") -> httpx.Response:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
        clients.append(client)
        return await client.request(method, path)

    yield send
    for client in clients:
        await client.aclose()


TYPED = [
    # (exception, status, code)
    (BadRequest("limit must be a number"), 400, "bad_request"),
    (Unauthorized("missing API key"), 401, "unauthorized"),
    (Forbidden("not for you"), 403, "forbidden"),
    (BadToken("invalid token signature"), 403, "bad_token"),
    (NotFound("no feed named 'x'"), 404, "not_found"),
    (NotFound("no profile", code="profile_not_found"), 404, "profile_not_found"),
    (PayloadTooLarge("too big"), 413, "payload_too_large"),
    (UnsupportedMediaType("send JSON"), 415, "unsupported_media_type"),
    (Unprocessable("tier is unknown"), 422, "invalid"),
    (KairosError("plain"), 400, "bad_request"),
]


@pytest.mark.parametrize(
    ("exc", "status", "code"), [pytest.param(*case, id=case[2]) for case in TYPED]
)
async def test_typed_errors_answer_their_status_code_and_message(
    request_through, exc: KairosError, status: int, code: str
):
    r = await request_through(raising(exc))
    error = assert_error(r, status, code)
    assert error["message"] == exc.message
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"
    else:
        assert "www-authenticate" not in r.headers


async def test_an_unauthorized_error_with_its_own_code_still_asks_for_a_bearer_key(
    request_through,
):
    r = await request_through(raising(Unauthorized("revoked", code="revoked_key")))
    assert_error(r, 401, "revoked_key")
    assert r.headers["www-authenticate"] == "Bearer"


async def test_a_typed_error_names_the_field_it_is_about(request_through):
    r = await request_through(raising(BadRequest("1 to 20", field="limit")))
    assert assert_error(r, 400, "bad_request")["field"] == "limit"


HTTP = [
    # (exception, status, code, headers expected)
    (HTTPException(404), 404, "not_found", {}),
    (
        HTTPException(405, headers={"Allow": "GET, HEAD"}),
        405,
        "method_not_allowed",
        {"allow": "GET, HEAD"},
    ),
    (HTTPException(400, detail="bad range"), 400, "bad_request", {}),
    (HTTPException(413), 413, "payload_too_large", {}),
    (HTTPException(418), 418, "http_error", {}),
    (HTTPException(409, headers={"X-Why": "conflict"}), 409, "http_error", {"x-why": "conflict"}),
]


@pytest.mark.parametrize(
    ("exc", "status", "code", "headers"),
    [pytest.param(*case, id=str(case[1])) for case in HTTP],
)
async def test_http_exceptions_are_mapped_to_a_code(
    request_through, exc: HTTPException, status: int, code: str, headers: dict[str, str]
):
    r = await request_through(raising(exc))
    error = assert_error(r, status, code)
    assert error["message"] == exc.detail
    for name, value in headers.items():
        assert r.headers[name] == value


async def test_store_unavailable_is_503_with_retry_after(request_through, caplog):
    caplog.set_level(logging.WARNING, logger="kairos.errors")
    r = await request_through(raising(StoreUnavailable(SECRET_DETAIL)), "PUT", "/v1/profiles/ada")
    assert_error(r, 503, "store_unavailable")
    assert r.headers["retry-after"] == "1"
    assert SECRET_DETAIL not in r.text
    [record] = [rec for rec in caplog.records if rec.name == "kairos.errors"]
    assert record.levelno == logging.WARNING
    assert "PUT /v1/profiles/ada" in record.getMessage()


async def test_corrupt_data_is_500_invalid_stored_data(request_through, caplog):
    caplog.set_level(logging.ERROR, logger="kairos.errors")
    r = await request_through(raising(CorruptData(SECRET_DETAIL)))
    assert_error(r, 500, "invalid_stored_data")
    assert "retry-after" not in r.headers
    assert SECRET_DETAIL not in r.text
    assert any(SECRET_DETAIL in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(
    "exc",
    [RuntimeError(SECRET_DETAIL), KeyError(SECRET_DETAIL), ValueError(SECRET_DETAIL), OSError()],
    ids=lambda e: type(e).__name__,
)
async def test_anything_else_is_500_internal_with_no_detail_and_a_logged_traceback(
    request_through, caplog, exc: Exception
):
    caplog.set_level(logging.ERROR, logger="kairos.errors")
    r = await request_through(raising(exc), "POST", "/v1/render")
    assert_error(r, 500, "internal")
    assert r.json()["error"]["message"] == "internal error"
    assert SECRET_DETAIL not in r.text and type(exc).__name__ not in r.text
    [record] = [rec for rec in caplog.records if rec.name == "kairos.errors"]
    assert record.levelno == logging.ERROR
    assert "POST /v1/render" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is exc


async def test_an_app_that_answers_is_left_alone(request_through):
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        await send({"type": "http.response.body", "body": b"made"})

    r = await request_through(Edge(app, Observer(Metrics())))
    assert (r.status_code, r.text, r.headers["x-a"]) == (201, "made", "1")


async def test_an_error_after_the_answer_started_is_raised_not_answered_twice():
    """Once the status line went out, a second answer would be a protocol error: the
    exception goes up to the server, which closes the connection."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise RuntimeError("mid-stream")

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/stream", "headers": []}
    with pytest.raises(RuntimeError, match="mid-stream"):
        await Edge(app, Observer(Metrics()))(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200


async def test_an_error_after_the_answer_started_reaches_the_client_as_an_error():
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("mid-stream")

    transport = httpx.ASGITransport(app=Edge(app, Observer(Metrics())))
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        with pytest.raises(RuntimeError, match="mid-stream"):
            await client.get("/stream")


async def test_other_scope_types_pass_through_untouched():
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("lifespan failed")

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        raise AssertionError(f"nothing may be answered: {message}")

    with pytest.raises(RuntimeError, match="lifespan failed"):
        await Edge(app, Observer(Metrics()))({"type": "lifespan"}, receive, send)


def test_error_response_is_a_plain_function_of_the_exception():
    response = error_response(Unauthorized("no key"), "GET", "/v1/profiles/ada")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    assert response.body == b'{"error":{"code":"unauthorized","message":"no key"}}'
