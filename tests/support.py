"""Helpers shared by the test modules: constants, a real redis-server process, the ASGI
client with the app's lifespan, and a thin profile store wrapper (a real store that
counts or sleeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import redis
import redis.asyncio
from starlette.applications import Starlette

from app.settings import PROJECT_ROOT, Secret
from app.stores.bundle import Stores
from app.stores.protocols import Profile, ProfileStore, Updater
from app.stores.redis.backend import RedisBackend
from app.stores.redis.keys import CHANGES_CHANNEL
from app.tokens import Grant, Tokens

# Random-looking, >= 32 characters: production refuses a key of placeholder's words.
SECRET = "Hq3Vn8Rx2Lk7Wp4Zt9Jc6Bm1Ns5Dy0Gf"
OLD_SECRET = "Pw6Tz1Kd8Qm3Xr5Vb9Hn2Lc7Jf4Sg0Ya"
API_KEY = "test-api-key-0123456789"
BASE_URL = "http://kairos.test"
FALLBACKS_DIR = PROJECT_ROOT / "fallbacks"
FEED_NAMES = ("profile", "cart", "recommendations")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

TOKENS = Tokens((Secret(SECRET),))
AUTH = {"Authorization": f"Bearer {API_KEY}"}

ADA_PROFILE_ITEM = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "tier": "gold",
    "loyalty_points": 1234,
    "locale": "en-GB",
}
GRACE_PROFILE_ITEM = {
    "first_name": "Grace",
    "last_name": "Hopper",
    "tier": "silver",
    "loyalty_points": 310,
    "locale": "en-US",
}


def click_grants(url: str, tokens: Tokens = TOKENS) -> tuple[Grant, Grant | None]:
    """A click URL's link grant and its reader grant (None without `r`), both verified."""
    parts = urlsplit(url)
    link = tokens.verify("click", parts.path.rsplit("/", 1)[1])
    reader = parse_qs(parts.query).get("r")
    return link, tokens.verify("reader", reader[0]) if reader else None


def feed_url(
    feed: str,
    user: str,
    *,
    tokens: Tokens = TOKENS,
    resource: str | None = None,
    campaign: str | None = None,
    **query: Any,
) -> str:
    """The path and query of a signed feed URL; `resource` signs for another feed name."""
    ttl = query.pop("ttl_s", None)
    token = tokens.sign("feed", user, resource or feed, ttl_s=ttl, campaign=campaign)
    return f"/v1/feeds/{feed}?{urlencode({'t': token, **query})}"


IMAGE_FORMATS = {"countdown": "gif", "banner": "png", "product": "png"}


def image_url(
    image: str,
    user: str,
    *,
    tokens: Tokens = TOKENS,
    campaign: str | None = None,
    ttl_s: int | None = None,
    fmt: str | None = None,
    resource: str | None = None,
    **params: Any,
) -> str:
    """The path and query of a signed live-image URL. Signed directly, without the
    parameter checks of a render, so tests can also sign what a render would refuse."""
    token = tokens.sign(
        "image", user, resource or image, campaign=campaign, ttl_s=ttl_s, params=params or None
    )
    return f"/v1/img/{image}.{fmt or IMAGE_FORMATS.get(image, 'png')}?{urlencode({'t': token})}"


def fallback_image(image: str) -> bytes:
    return (FALLBACKS_DIR / "images" / f"{image}.{IMAGE_FORMATS[image]}").read_bytes()


def fallback_body(feed: str) -> Any:
    return json.loads((FALLBACKS_DIR / "feeds" / f"{feed}.json").read_text())


async def render_json(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """`POST /v1/render` with `body` (API key): its JSON answer, which must be a 200."""
    r = await client.post("/v1/render", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is a JSON error `{"error": {"code": str, "message": str}}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    # A designer's mistake is located too (app/studio/diagnostics.py).
    located = {"file", "line", "snippet"} if error["code"] == "template_broken" else set()
    assert set(error) <= {"code", "message", "field", *located}
    if code is not None:
        assert error["code"] == code, error
    return error


@contextlib.asynccontextmanager
async def serve(
    app: Starlette, *, raise_app_exceptions: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and yield a client speaking HTTP to it in-process.

    On Redis, start-up is over once the app listens for other servers' changes (a real
    server is never stopped a millisecond after it started). Shutdown must finish within
    SHUTDOWN_LIMIT_S: a hang fails the test instead of freezing the suite. (The app stops
    its change follower with a flag and cancels it only after app.app.SHUTDOWN_WAIT_S, so
    this guard should never fire; it stays as a safety net.)
    """
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        await _listening_for_changes(app)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
    finally:
        await _shut_down(app, lifespan)


SHUTDOWN_LIMIT_S = 10.0


def redis_of(stores: Stores) -> redis.asyncio.Redis | None:
    """The pooled client of Redis stores (to look at the server), None when embedded."""
    backend = stores.backend
    return backend.connection.redis if isinstance(backend, RedisBackend) else None


async def _listening_for_changes(app: Starlette, within_s: float = 3.0) -> None:
    client = redis_of(app.state.services.stores)
    if client is None:
        return
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            [(_channel, count)] = await client.pubsub_numsub(CHANGES_CHANNEL)
        except (redis.exceptions.RedisError, OSError):
            return  # redis is not there: nothing to wait for
        if count >= 1:
            await asyncio.sleep(0.01)  # past SUBSCRIBE, into its read loop
            return
        await asyncio.sleep(0.005)


# Published on the changes channel to wake the follower at shutdown; not a valid user id.
WAKE_UP = "(test shutdown)"


async def _shut_down(app: Starlette, lifespan: Any) -> None:
    exit_task = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
    await _wake_follower(app, exit_task)
    done, _ = await asyncio.wait({exit_task}, timeout=SHUTDOWN_LIMIT_S)
    if done:
        exit_task.result()
        return
    # Unstick it so the rest of the suite runs, then fail this test. (A cancellation can
    # be lost inside redis-py's subscribe on Python 3.11, hence the repeats.)
    for _ in range(20):
        for task in asyncio.all_tasks():
            if task.get_coro().__qualname__.endswith("follow_changes"):  # type: ignore[union-attr]
                task.cancel()
        done, _ = await asyncio.wait({exit_task}, timeout=1.0)
        if done:
            break
    raise AssertionError(
        f"the app's lifespan shutdown did not finish within {SHUTDOWN_LIMIT_S}s "
        "(the pub/sub follower ignored its stop flag and its cancellation)"
    )


async def _wake_follower(app: Starlette, exit_task: asyncio.Future[Any]) -> None:
    """On Redis, the app's change follower sees its stop flag between waits of up to 1 s
    for a message: one message after the flag is set ends it at once. A real server may
    well take that second to stop; hundreds of test lifespans should not. (test_cache
    checks the unaided shutdown, without this.)"""
    client = redis_of(app.state.services.stores)
    if client is None:
        return
    await asyncio.sleep(0)  # the lifespan's exit sets the flag in its first step
    if exit_task.done():
        return
    with contextlib.suppress(redis.exceptions.RedisError, OSError):
        await client.publish(CHANGES_CHANNEL, WAKE_UP)


async def profile_counters(client: httpx.AsyncClient, user: str) -> dict[str, int]:
    """The reader's event counters as the profiles API shows them ({} without a profile)."""
    r = await client.get(f"/v1/profiles/{user}", headers=AUTH)
    return dict(r.json().get("counters", {})) if r.status_code == 200 else {}


@contextlib.asynccontextmanager
async def listening(handle: Any) -> AsyncIterator[int]:
    """A local TCP server whose connections `handle(reader, writer)` answers: its port."""
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A real redis-server process on 127.0.0.1, no persistence, in its own directory."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0, extra: Iterable[str] = ()) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--daemonize",
                "no",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)


def _cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10,000) is free too."""
    for _ in range(200):
        port = random.randrange(20_000, 40_000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class RedisClusterServers:
    """A real Redis Cluster on 127.0.0.1: `masters` redis-server processes with cluster
    mode on, their slots assigned by `redis-cli --cluster create`, no replicas."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", port=_cluster_port()) for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """The URL Kairos takes: the cluster scheme and one node (it finds the rest)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start(extra=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "0"]
            + ["--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )
        # Every node must know every slot's owner before a client is pointed at it.
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            with node.client() as client:
                while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not come up in time")
                    time.sleep(0.05)

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class KairosProcess:
    """`uvicorn --factory app.app:factory` in a process of its own, on a free port."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, args: Iterable[str] = ()
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"server-{name}.log"
        argv = [sys.executable, "-m", "uvicorn", "--factory", "app.app:factory"]
        argv += ["--http", "app.protocol:KairosProtocol", "--loop", "uvloop"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*argv, "--no-access-log", *args],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, deadline: float, path: str = "/readyz") -> None:
        """Until `path` answers 200 (`/healthz`: the server listens, its store may be
        down)."""
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base}{path}", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"server {self.name}: {path} never answered 200"
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.proc)


class BlackHole:
    """A TCP listener on 127.0.0.1 that accepts connections and never answers (a host
    that went silent), counting the connections it accepted. Its own thread: it works
    beside sync and async tests alike. Use as `with BlackHole(port) as hole:`."""

    def __init__(self, port: int) -> None:
        self.port, self.accepted = port, 0
        self._listener = socket.create_server(("127.0.0.1", port))
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> BlackHole:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the accept() blocked in the thread; close() alone may not.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)
        for held in self._held:
            held.close()

    def _accept(self) -> None:
        while True:
            try:
                held, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            self._held.append(held)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Ask `proc` to end; after 10 s, make it."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def process_env(tmp: Path, redis_url: str, write_key: str) -> dict[str, str]:
    """The environment of a `KairosProcess` on `redis_url`: test keys, no demo data,
    profiles cached for a minute (only the change channel shows a write elsewhere)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_WRITE_KEYS": write_key,
        "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
        "KAIROS_CACHE_TTL_MS": "60000",
        "KAIROS_DEMO_DATA": "false",
        "KAIROS_LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
    }


class CountingProfiles:
    """A real profile store that counts `get` calls per reader and can be made slow."""

    def __init__(self, inner: ProfileStore, delay: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.delay = delay
        self.get_calls: Counter[str] = Counter()
        self.active = 0

    async def get(self, user_id: str) -> Profile | None:
        self.get_calls[user_id] += 1
        self.active += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return await self.inner.get(user_id)
        finally:
            self.active -= 1

    async def put(self, user_id: str, profile: Profile) -> None:
        await self.inner.put(user_id, profile)

    async def put_many(self, profiles: Iterable[tuple[str, Profile]]) -> int:
        return await self.inner.put_many(profiles)

    async def update(self, user_id: str, change: Updater) -> Profile | None:
        return await self.inner.update(user_id, change)

    async def delete(self, user_id: str) -> bool:
        return await self.inner.delete(user_id)

    async def drain(self, within_s: float = 5.0) -> None:
        """Wait for reads still sleeping (loads that outlived a request's budget)."""
        deadline = time.monotonic() + within_s
        while self.active:
            assert time.monotonic() < deadline, "store reads did not finish"
            await asyncio.sleep(0.01)


def counting(stores: Stores, delay: float = 0.0) -> tuple[Stores, CountingProfiles]:
    """`stores` with their profile store counted (and slowed by `delay`), and that
    counting store."""
    profiles = CountingProfiles(stores.profiles, delay)
    return replace(stores, profiles=profiles), profiles


class Upstream:
    """A real HTTP server on 127.0.0.1 for upstream images: each path answers with a
    status, a body and optional headers, or hangs until the server closes (`hang=True`).
    Counts the requests per path. Use as `async with Upstream() as up:`."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, dict[str, str], bool, bool]] = {}
        self.requests: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    def route(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        hang: bool = False,
        length: bool = True,
    ) -> str:
        """Serve `path`; returns its absolute URL. `length=False` leaves Content-Length
        out: the body ends when the connection closes."""
        headers = headers or {"Content-Type": "image/png"}
        self.routes[path] = (status, body, headers, hang, length)
        return f"http://127.0.0.1:{self.port}{path}"

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            self.requests[path] += 1
            status, body, headers, hang, length = self.routes.get(path, (404, b"", {}, False, True))
            if hang:
                await asyncio.sleep(3600)  # until the test ends and cancels it
            lines = [f"HTTP/1.1 {status} X", "Connection: close"]
            if length:
                lines.append(f"Content-Length: {len(body)}")
            lines += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


def unstamped(answer: dict[str, Any]) -> dict[str, Any]:
    """A JSON render answer without the Message-ID and Date every render stamps anew."""
    headers = {k: v for k, v in answer["headers"].items() if k not in ("Message-ID", "Date")}
    return {**answer, "headers": headers}
