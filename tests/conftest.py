"""Shared fixtures: settings factory, apps and clients on the embedded store, on a real
redis-server and on a real Redis Cluster (one of each per session, flushed between
tests)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis
from starlette.applications import Starlette
from support import API_KEY, SECRET, RedisClusterServers, RedisServer, serve

from app.app import create_app
from app.settings import ENV_VARS, Settings
from app.stores.bundle import Stores, embedded_stores, redis_stores

SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="session")
def amp_validator_dir() -> Path:
    """Where `.ci/amp-validator` installed the AMP validator, as this machine's own
    environment says: the tests' cleared environments keep pointing there."""
    machine = ("KAIROS_AMP_VALIDATOR_DIR", "XDG_CACHE_HOME", "HOME")
    environ = {k: v for k, v in os.environ.items() if k in machine}
    return Settings.from_env(environ).amp_validator_dir


@pytest.fixture
def test_env(tmp_path: Path, amp_validator_dir: Path) -> dict[str, str]:
    """The environment every test settings object starts from."""
    return {
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp_path / "dev-secret"),
        "KAIROS_AMP_VALIDATOR_DIR": str(amp_validator_dir),
    }


def _settings_factory(base: dict[str, str]) -> SettingsFactory:
    def make(**overrides: Any) -> Settings:
        env = dict(base)
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        return Settings.from_env(env)

    return make


@pytest.fixture
def settings(test_env: dict[str, str]) -> SettingsFactory:
    """`settings(KAIROS_BUDGET_MS=50, ...)` -> validated Settings; a value of None unsets."""

    return _settings_factory(test_env)


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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A real three-master Redis Cluster, started once a session (when a test asks)."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to pause, stop and start."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def on_cluster(request: pytest.FixtureRequest) -> bool:
    """Whether this test runs on the Redis Cluster (its `backend` is "cluster")."""
    return "backend" in request.fixturenames and request.getfixturevalue("backend") == CLUSTER


@pytest.fixture
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of the session's redis-server, or of its Redis Cluster for a test on the
    cluster backend, with nothing stored."""
    if on_cluster(request):
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flush()
        yield cluster.url
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as r:
        r.flushdb()
    yield server.url


@pytest.fixture
def redis_client(redis_url: str, request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A synchronous client (a cluster client on the cluster), to look at what the app
    stored."""
    if on_cluster(request):
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        with cluster.client() as c:
            yield cast(redis.Redis, c)  # the same commands, sent to each key's node
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    with server.client() as r:
        yield r


@pytest.fixture
def redis_app(settings: SettingsFactory, redis_url: str) -> Starlette:
    """The app on the real redis-server, the demo data loaded into it at start-up."""
    return create_app(settings(REDIS_URL=redis_url, KAIROS_DEMO_DATA="true"))


@pytest.fixture
async def redis_app_client(redis_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(redis_app) as c:
        yield c


CLUSTER = "cluster"
# The suites that also run on a real Redis Cluster: the store contracts, events and
# segments (what scale-out must keep). Others run on the embedded store and one Redis.
CLUSTER_SUITES = ("test_stores_", "test_events_", "test_segments_")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marks = metafunc.definition.iter_markers("parametrize")
    chosen = any("backend" in str(mark.args[0]) for mark in marks)  # a test's own choice
    if "backend" in metafunc.fixturenames and not chosen:
        names = ["embedded", "redis"]
        if metafunc.module.__name__.rpartition(".")[2].startswith(CLUSTER_SUITES):
            names.append(CLUSTER)
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """"embedded", "redis" (one redis-server) or "cluster" (a Redis Cluster)."""
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


@pytest.fixture
async def stores(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[Stores]:
    """Each backend's stores in turn, Redis on the session redis-server, flushed (the
    contract suites, tests/test_stores_*.py, run against both)."""
    if backend == "embedded":
        bundle = embedded_stores()
    else:
        bundle = redis_stores(request.getfixturevalue("redis_url"))
    try:
        yield bundle
    finally:
        await bundle.close()


# --- send-time rendering -------------------------------------------------------------
# Compiling every template costs ~0.3 s per app: the render tests share one app (or one
# compiled renderer) per module and run its lifespan per test.


@pytest.fixture(scope="session", autouse=True)
def shared_compiles() -> Iterator[None]:
    """Every app compiles its templates (app/render/registry.py), and the tests build
    hundreds of apps over the same files: within the test session they share what the
    first one compiled for those files (same folders, fingerprint and folding; the
    compiled templates then keep that app's Jinja environments, which hold nothing of
    an app's own). A test that patches `registry.compile_folder` sees its own."""
    from app.render import registry

    compile_folder = registry.compile_folder
    done: dict[tuple[Any, ...], registry.TemplateSet] = {}

    def shared(
        blocks_dir: Path,
        templates_dir: Path,
        envs: Any,
        *,
        version: str,
        fold: bool,
        last: registry.TemplateSet = registry.NOTHING,
    ) -> registry.TemplateSet:
        if last is not registry.NOTHING:  # a recompile: what it carries over is its own
            return compile_folder(
                blocks_dir, templates_dir, envs, version=version, fold=fold, last=last
            )
        key = (blocks_dir, templates_dir, version, fold)
        found = done.get(key)
        if found is None:
            found = compile_folder(blocks_dir, templates_dir, envs, version=version, fold=fold)
            if len(done) >= 16:
                del done[next(iter(done))]
            done[key] = found
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "compile_folder", shared)
        yield


RENDER_PUBLIC_URL = "https://kairos.example.com"


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory) -> SettingsFactory:
    """`settings` for module-scoped fixtures (same test environment, own key file)."""
    base = {
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp_path_factory.mktemp("keys") / "dev-secret"),
    }

    return _settings_factory(base)


@pytest.fixture(scope="module")
def render_app(module_settings: SettingsFactory) -> Starlette:
    """The demo app on the real blocks and templates, with an https public URL (so that
    renders have their AMP part), compiled once per module. Tests that write profiles
    use their own user ids: the app and its store live as long as the module."""
    return create_app(module_settings(KAIROS_PUBLIC_URL=RENDER_PUBLIC_URL))


@pytest.fixture
async def render_client(render_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(render_app) as c:
        yield c


def copy_sources(dest: Path, *, templates: bool = True) -> tuple[Path, Path]:
    """A private copy of the real `blocks/` (and `templates/`, or only its theme files)
    under `dest`: tests add broken or probing blocks there, and touch files, without
    racing the designers' edits."""
    from app.settings import PROJECT_ROOT

    blocks, tmpl = dest / "blocks", dest / "templates"
    shutil.copytree(PROJECT_ROOT / "blocks", blocks)
    if templates:
        shutil.copytree(PROJECT_ROOT / "templates", tmpl)
    else:
        tmpl.mkdir()
        for css in (PROJECT_ROOT / "templates").glob("*.css"):
            shutil.copy(css, tmpl / css.name)
    return blocks, tmpl


@pytest.fixture
def sources_copy(tmp_path: Path) -> Callable[..., tuple[Path, Path]]:
    """`sources_copy(templates=True)` -> (blocks dir, templates dir), copies in tmp_path."""
    return lambda templates=True: copy_sources(tmp_path, templates=templates)


@pytest.fixture(scope="module")
def module_sources_copy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., tuple[Path, Path]]:
    """`sources_copy` for module-scoped fixtures: each call makes a fresh copy."""
    return lambda templates=True: copy_sources(
        tmp_path_factory.mktemp("sources"), templates=templates
    )
