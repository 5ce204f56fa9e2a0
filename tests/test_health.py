"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route
from support import SECRET, feed_url, free_port, serve

from app.app import create_app
from app.settings import Settings


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by (name, sorted labels)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(all_samples, metric: str, /, **labels: str) -> float | None:
    return all_samples.get((metric, tuple(sorted(labels.items()))))


async def test_healthz(client):
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_embedded(client):
    r = await client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "store": {"backend": "embedded", "ok": True}}


async def test_readyz_redis(redis_app_client):
    r = await redis_app_client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ready",
        "store": {"backend": "redis", "ok": True, "breaker": "closed"},
    }


async def test_readyz_redis_unreachable(settings):
    app = create_app(settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        r = await client.get("/readyz")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"
        body = r.json()
        # Refused connections count as failures: the breaker may have opened already.
        assert body["store"].pop("breaker") in ("closed", "open")
        assert body == {"status": "unavailable", "store": {"backend": "redis", "ok": False}}
        assert (await client.get("/healthz")).status_code == 200  # alive, though not ready
        text = (await client.get("/metrics")).text
        assert value(samples(text), "kairos_store_up") == 0


async def test_metrics(client):
    await client.get(feed_url("profile", "ada"))  # miss
    await client.get(feed_url("profile", "ada"))  # hit
    await client.get(feed_url("cart", "nobody"))  # miss + fallback
    await client.get("/healthz")

    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    s = samples(r.text)

    feed_route = "/v1/feeds/{feed}"
    assert value(s, "kairos_requests_total", route=feed_route, method="GET", status="200") == 3
    assert value(s, "kairos_requests_total", route="/healthz", method="GET", status="200") == 1
    assert value(s, "kairos_request_seconds_count", route=feed_route) == 3
    assert value(s, "kairos_request_seconds_bucket", route=feed_route, le="+Inf") == 3
    assert value(s, "kairos_request_seconds_sum", route=feed_route) > 0
    assert value(s, "kairos_profile_cache_total", result="hit") == 1
    assert value(s, "kairos_profile_cache_total", result="miss") == 2
    assert (
        value(s, "kairos_fallbacks_total", kind="feed", name="cart", reason="missing-profile") == 1
    )
    assert value(s, "kairos_store_up") == 1
    # the raw path (with its token) never becomes a label
    assert "?t=" not in r.text


async def test_metrics_count_each_fallback_reason(client):
    await client.get(feed_url("profile", "ada", ttl_s=-1))
    await client.get(feed_url("profile", "ada", ttl_s=-1))
    s = samples((await client.get("/metrics")).text)
    reason = "expired-token"
    assert value(s, "kairos_fallbacks_total", kind="feed", name="profile", reason=reason) == 2


async def test_metrics_label_unmatched_routes_by_template_not_path(client):
    await client.get("/no/such/path/with-a-secret-looking-bit")
    s = samples((await client.get("/metrics")).text)
    assert value(s, "kairos_requests_total", route="unmatched", method="GET", status="404") == 1
    assert not any("secret-looking" in str(key) for key in s)


async def test_metrics_are_per_app(settings):
    first, second = create_app(settings()), create_app(settings())
    async with serve(first) as client:
        await client.get("/healthz")
    async with serve(second) as client:
        s = samples((await client.get("/metrics")).text)
        assert (
            value(s, "kairos_requests_total", route="/healthz", method="GET", status="200") is None
        )


# --- OpenAPI -----------------------------------------------------------------------------


def _routes() -> list[tuple[str, str]]:
    """(path, method) of every route of an app, collected at import time."""
    app = create_app(Settings.from_env({"KAIROS_ENV": "test", "KAIROS_SECRET_KEYS": SECRET}))
    found = []
    for route in app.routes:
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((route.path, method))
    return found


ROUTES = _routes()


def test_the_app_has_the_routes_we_expect():
    paths = {path for path, _ in ROUTES}
    assert {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/feeds/{feed}",
        "/v1/profiles/{user_id}",
    } <= paths


@pytest.mark.parametrize(
    ("path", "method"),
    [
        # Regression: spec() documented every route but /openapi.json itself.
        pytest.param(path, method, id=f"{method} {path}")
        for path, method in ROUTES
    ],
)
async def test_openapi_documents_every_route(client, path: str, method: str):
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    assert path in doc["paths"]
    assert method.lower() in doc["paths"][path]


async def test_openapi_has_no_undocumented_extras(client):
    doc = (await client.get("/openapi.json")).json()
    served = {path for path, _ in ROUTES}
    assert set(doc["paths"]) <= served
    assert doc["servers"] == [{"url": "http://127.0.0.1:8000"}]
