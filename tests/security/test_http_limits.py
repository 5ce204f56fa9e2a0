"""Hostile HTTP clients against a real uvicorn server running Kairos's protocol: a huge
request head is refused with 431 before it grows the server, and clients that trickle a
head or a body, or send nothing, lose their connection at the deadlines; a shutdown is not
held up by a body that never arrives."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from support import KairosProcess, process_env

HEAD_TIMEOUT_MS = 600
BODY_TIMEOUT_MS = 900


def start(tmp: Path, name: str, **extra: str) -> KairosProcess:
    env = process_env(tmp, "", "test-write-key-0123456789")
    del env["REDIS_URL"]  # the embedded store
    env.update(
        KAIROS_HEAD_TIMEOUT_MS=str(HEAD_TIMEOUT_MS),
        KAIROS_BODY_TIMEOUT_MS=str(BODY_TIMEOUT_MS),
        **extra,
    )
    server = KairosProcess(name, env, tmp)
    server.wait_ready(time.monotonic() + 20)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KairosProcess]:
    started = start(tmp_path_factory.mktemp("http-limits"), "limits")
    try:
        yield started
    finally:
        started.stop()


def connect(server: KairosProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (its head and a Content-Length body) on a kept-alive socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the server closed `sock` (reading to its end), failing past
    `seconds`."""
    started = time.monotonic()
    sock.settimeout(seconds)
    read_all(sock)
    return time.monotonic() - started


def trickle(sock: socket.socket, byte: bytes) -> float:
    """Send `byte` every 0.1 s for 4 s (or until the server closes the connection); how
    long until it was closed."""
    started = time.monotonic()
    try:
        for _ in range(40):
            sock.sendall(byte)
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return time.monotonic() - started + closed_within(sock, 5)


def rss_kb(server: KairosProcess) -> int:
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def test_a_head_within_the_limit_is_served(server):
    with connect(server) as sock:
        filler = "".join(f"X-Filler-{i}: {'a' * 200}\r\n" for i in range(100))  # ~21 KB
        sock.sendall(
            f"GET /healthz HTTP/1.1\r\nHost: x\r\n{filler}Connection: close\r\n\r\n".encode()
        )
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize(
    "head",
    [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * 100_000 + "\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + "".join(f"X-{i}: b\r\n" for i in range(8000))
        + "\r\n",
        "GET /healthz?" + "q" * 100_000 + " HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "c" * 33_000 + "\r\n\r\n",
    ],
    ids=["one huge header", "many headers", "huge request line", "just over, in one read"],
)
def test_a_head_over_the_limit_is_answered_431_and_closed(server, head):
    with connect(server) as sock:
        try:
            sock.sendall(head.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: what we want
        answer = read_all(sock)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large"
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in headers.lower()
    assert b"cache-control: no-store" in headers.lower()
    error = orjson.loads(body)["error"]
    assert error["code"] == "headers_too_large" and "32768" in error["message"]


def test_a_50_mb_header_neither_grows_the_server_nor_gets_an_answer_but_431(server):
    before = rss_kb(server)
    sent = 0
    chunk = b"a" * 65536
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while sent < 50 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = read_all(sock)
        except ConnectionResetError:
            answer = b""
    assert sent < 10 * 1024 * 1024, "the server kept reading the header"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")
    assert rss_kb(server) - before < 8 * 1024  # KB: one read's worth, not the header


def test_a_trickled_head_is_cut_at_the_deadline(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        took = trickle(sock, b"X")
    assert HEAD_TIMEOUT_MS / 1000 - 0.1 < took < HEAD_TIMEOUT_MS / 1000 + 2.0


def test_a_connection_that_sends_nothing_is_closed(server):
    with connect(server) as sock:
        took = closed_within(sock, 5)
    assert took < HEAD_TIMEOUT_MS / 1000 + 2.0


def test_a_trickled_body_is_cut_at_the_deadline(server):
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer test-write-key-0123456789\r\nContent-Length: 1000\r\n\r\n"
            b'{"events": ['
        )
        took = trickle(sock, b" ")
    assert BODY_TIMEOUT_MS / 1000 - 0.1 < took < BODY_TIMEOUT_MS / 1000 + 2.0


def test_keep_alive_requests_each_get_their_own_head_deadline(server):
    with connect(server) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(HEAD_TIMEOUT_MS / 1000 * 0.6)  # idle between requests is keep-alive's
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_a_kept_alive_connections_next_head_has_its_deadline_too(server):
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        took = trickle(sock, b"X")
    assert took < HEAD_TIMEOUT_MS / 1000 + 2.0


def test_a_shutdown_is_not_held_up_by_a_body_that_never_arrives(tmp_path):
    server = start(tmp_path, "shutdown")
    try:
        with connect(server) as sock:
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer test-write-key-0123456789\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            time.sleep(0.2)
            server.proc.send_signal(signal.SIGTERM)
            server.proc.wait(timeout=BODY_TIMEOUT_MS / 1000 + 5)
    finally:
        server.stop()
