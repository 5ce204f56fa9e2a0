"""Shared fixtures: settings factory, apps and clients on the embedded store and on a real
redis-server (one per session, flushed between tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from support import API_KEY, SECRET, RedisServer, serve

from app.app import create_app
from app.settings import ENV_VARS, Settings

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def test_env(tmp_path: Path) -> dict[str, str]:
    """The environment every test settings object starts from."""
    return {
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp_path / "dev-secret"),
    }


@pytest.fixture
def settings(test_env: dict[str, str]) -> SettingsFactory:
    """`settings(KAIROS_BUDGET_MS=50, ...)` -> validated Settings; a value of None unsets."""

    def make(**overrides: Any) -> Settings:
        env = dict(test_env)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return Settings.from_env(env)

    return make


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch, test_env: dict[str, str]) -> dict[str, str]:
    """os.environ without any Kairos setting but the test ones (for `Settings.from_env()`
    without arguments, as the CLI calls it)."""
    for name in (*ENV_VARS, "KAIROS_API_KEY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in test_env.items():
        monkeypatch.setenv(name, value)
    return test_env


@pytest.fixture
def app(settings: SettingsFactory) -> Starlette:
    """The app on the embedded store with the demo readers and catalog."""
    return create_app(settings())


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as c:
        yield c


# --- redis ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session redis-server's URL, with an empty database."""
    with redis_server.client() as r:
        r.flushdb()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str, redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, to look at what the app stored."""
    with redis_server.client() as r:
        yield r


@pytest.fixture
def redis_app(settings: SettingsFactory, redis_url: str) -> Starlette:
    """The app on the real redis-server, the demo data loaded into it at start-up."""
    return create_app(settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true"))


@pytest.fixture
async def redis_app_client(redis_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(redis_app) as c:
        yield c


@pytest.fixture(params=["embedded", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def any_app(backend: str, request: pytest.FixtureRequest) -> Starlette:
    """The demo app on each backend in turn (tests using it run twice)."""
    name = "app" if backend == "embedded" else "redis_app"
    app: Starlette = request.getfixturevalue(name)
    return app


@pytest.fixture
async def any_client(any_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(any_app) as c:
        yield c
