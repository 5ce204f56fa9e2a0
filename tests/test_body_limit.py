"""The body-size cap (app/middleware/body_limit.py): a declared oversize is refused before
the app runs, a streamed one as soon as it crosses the cap, inside the handler reading
it; exempt paths cap what they read themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send
from support import BASE_URL, assert_error

from app.errors import PayloadTooLarge
from app.metrics import Metrics
from app.middleware.body_limit import BodyLimit
from app.middleware.edge import Edge
from app.middleware.observe import Observer

CAP = 100
EXEMPT = "/v1/stream"


class Echo:
    """Reads the whole body and answers its length; remembers each run and what
    reading raised."""

    def __init__(self) -> None:
        self.runs = 0
        self.raised: list[BaseException] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.runs += 1
        size = 0
        try:
            while True:
                message = await receive()
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except Exception as exc:
            self.raised.append(exc)
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
async def client(echo: Echo) -> AsyncIterator[httpx.AsyncClient]:
    """The cap behind the one error path, as in the app."""
    app = Edge(echo, Observer(Metrics()), BodyLimit(CAP, (EXEMPT,)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        yield c


async def chunks(total: int, size: int = 30) -> AsyncIterator[bytes]:
    """`total` bytes in chunks of `size`: httpx sends them chunked, with no length."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "GET"])
async def test_a_declared_oversize_is_413_before_the_app_runs(client, echo, method: str):
    r = await client.request(method, "/v1/profiles/ada", content=b"x" * (CAP + 1))
    error = assert_error(r, 413, "payload_too_large")
    assert str(CAP) in error["message"]
    assert echo.runs == 0


async def test_a_huge_declared_length_is_413(client, echo):
    r = await client.get("/v1/feeds/cart", headers={"Content-Length": "9" * 40})
    assert_error(r, 413, "payload_too_large")
    assert echo.runs == 0


@pytest.mark.parametrize(
    "value", ["abc", "-1", "+5", "1e3", "0x10", "10.0", "1_0", "", "½", "１０"]
)
async def test_a_content_length_that_is_not_a_number_is_400(client, echo, value: str):
    # "１０" is fullwidth digits: str.isdigit() says yes, int() reads 10; bytes say no.
    r = await client.get("/v1/feeds/cart", headers={"Content-Length": value.encode()})
    assert_error(r, 400, "bad_request")
    assert echo.runs == 0


async def test_a_chunked_body_crossing_the_cap_is_413_raised_into_the_handler(client, echo):
    r = await client.post("/v1/profiles/ada", content=chunks(CAP * 3))
    assert "content-length" not in r.request.headers  # really streamed
    error = assert_error(r, 413, "payload_too_large")
    assert str(CAP) in error["message"]
    assert echo.runs == 1
    [raised] = echo.raised
    assert isinstance(raised, PayloadTooLarge)


async def test_a_chunked_body_is_refused_at_the_chunk_crossing_the_cap():
    """The handler reads no further than the chunk that crosses the cap."""
    read: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            read.append(len(message["body"]))
            if not message.get("more_body"):
                break

    bodies = [b"x" * 40, b"x" * 40, b"x" * 40, b"x" * 40]
    messages: list[Message] = [
        {"type": "http.request", "body": b, "more_body": i < len(bodies) - 1}
        for i, b in enumerate(bodies)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        pass

    scope = http_scope("POST", "/x", [(b"transfer-encoding", b"chunked")])
    with pytest.raises(PayloadTooLarge):
        await app(scope, BodyLimit(CAP).receive(scope, receive), send)
    assert read == [40, 40]  # the third chunk (80 -> 120 bytes) raised
    assert len(messages) == 1


@pytest.mark.parametrize("size", [0, 1, CAP - 1, CAP])
async def test_a_chunked_body_within_the_cap_passes_whole(client, echo, size: int):
    r = await client.put("/v1/profiles/ada", content=chunks(size))
    assert (r.status_code, r.text) == (200, str(size))
    assert echo.raised == []


@pytest.mark.parametrize("size", [0, 1, CAP])
async def test_a_declared_length_up_to_the_cap_passes(client, echo, size: int):
    r = await client.put("/v1/profiles/ada", content=b"x" * size)
    assert r.request.headers["content-length"] == str(size)
    assert (r.status_code, r.text) == (200, str(size))


async def test_a_get_without_a_body_passes(client, echo):
    r = await client.get("/v1/feeds/cart?t=abc")
    assert (r.status_code, r.text) == (200, "0")
    assert echo.runs == 1


async def test_a_get_smuggling_a_chunked_body_is_capped_too(client, echo):
    r = await client.request("GET", "/v1/feeds/cart", content=chunks(CAP + 1))
    assert_error(r, 413, "payload_too_large")


async def test_a_body_declared_small_but_also_chunked_is_watched():
    """With both Content-Length and Transfer-Encoding (a smuggling classic), the declared
    length is not trusted: the stream is counted."""
    echo = Echo()
    messages: list[Message] = [
        {"type": "http.request", "body": b"x" * 60, "more_body": True},
        {"type": "http.request", "body": b"x" * 60, "more_body": False},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        pass

    headers = [(b"content-length", b"5"), (b"transfer-encoding", b"chunked")]
    with pytest.raises(PayloadTooLarge):
        scope = http_scope("POST", "/x", headers)
        await echo(scope, BodyLimit(CAP).receive(scope, receive), send)


async def test_an_exempt_path_is_not_capped(client, echo):
    r = await client.post(EXEMPT, content=b"x" * (CAP * 5))
    assert (r.status_code, r.text) == (200, str(CAP * 5))
    r = await client.post(EXEMPT, content=chunks(CAP * 5))
    assert (r.status_code, r.text) == (200, str(CAP * 5))
    # Exempt is the exact path, not a prefix.
    assert_error(await client.post(EXEMPT + "/more", content=b"x" * (CAP + 1)), 413)


async def test_other_scope_types_pass_through():
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    await Edge(app, Observer(Metrics()), BodyLimit(1))({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


def http_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    return {"type": "http", "method": method, "path": path, "headers": headers}
