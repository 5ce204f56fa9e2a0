"""Who may use the designer's studio (app/studio/access.py, app/routes/guard.py): the
`KAIROS_DESIGNER` switch, the loopback rule of development, the login with an API key,
the signed session cookie and its CSRF token on the server-to-server routes.

Real HTTP through the ASGI app; the browser's address is set per client, as uvicorn
would set it from the socket."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import itsdangerous.timed
import pytest
from starlette.applications import Starlette
from support import API_KEY, SECRET, assert_error, serve

from app.app import create_app
from app.auth import ApiKeys
from app.settings import Secret, Settings
from app.studio.access import COOKIE, MAX_AGE_S, StudioAccess

PRODUCTION = {
    "KAIROS_ENV": "production",
    "KAIROS_PUBLIC_URL": "https://kairos.example.com",
    "KAIROS_AMP_SENDERS": "*@news.example.com",
    "KAIROS_DEMO_DATA": "true",
}
LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.9", 50000)
PREVIEW = {"template": "welcome", "sample": "full"}
CSRF_META = re.compile(r'<meta name="kairos-csrf" content="([^"]+)">')


@contextlib.asynccontextmanager
async def browser(
    app: Starlette, base_url: str = "http://127.0.0.1:8000", peer: tuple[str, int] = LOOPBACK
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running app as a browser at `peer` asking for `base_url`."""
    async with serve(app):
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    """The attributes of the response's session cookie, names lower-cased."""
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    attributes: dict[str, str] = {}
    for part in header.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        attributes[name.lower()] = value
    return attributes


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_META.search(page.text)
    assert found, page.text[:500]
    return html.unescape(found.group(1))


@pytest.fixture
def production_app(settings: Callable[..., Settings]) -> Callable[..., Starlette]:
    def make(**overrides: Any) -> Starlette:
        return create_app(settings(**{**PRODUCTION, **overrides}))

    return make


# --- the switch --------------------------------------------------------------------------


def test_the_studio_is_on_outside_production_and_off_in_it(settings):
    assert settings().designer is True
    assert settings(KAIROS_ENV="development").designer is True
    assert settings(**PRODUCTION).designer is False
    assert settings(**PRODUCTION, KAIROS_DESIGNER="on").designer is True
    assert settings(KAIROS_DESIGNER="off").designer is False


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/designer"),
        ("GET", "/designer/"),
        ("GET", "/designer/static/studio.js"),
        ("GET", "/designer/static/studio.css"),
        ("GET", "/designer/events"),
        ("POST", "/designer/login"),
        ("POST", "/designer/logout"),
    ],
)
async def test_off_every_designer_path_answers_404(production_app, method: str, path: str):
    async with browser(production_app()) as client:
        r = await client.request(method, path, json={"key": API_KEY})
        assert_error(r, 404)
        assert COOKIE not in r.headers.get("set-cookie", "")


async def test_off_a_session_cookie_opens_nothing(settings, production_app):
    # A cookie signed with the server's keys while the studio was on: once it is off,
    # the guard no longer takes it.
    cookie = session_cookie(settings(**PRODUCTION))
    async with browser(production_app()) as client:
        r = await client.get("/v1/templates", headers={"Cookie": f"{COOKIE}={cookie}"})
        assert_error(r, 401)


# --- production: the login ---------------------------------------------------------------


async def test_production_shows_the_login_form_even_on_loopback(production_app):
    async with browser(production_app(KAIROS_DESIGNER="on")) as client:
        r = await client.get("/designer")
        assert r.status_code == 200
        assert 'id="login"' in r.text
        assert "kairos-csrf" not in r.text
        assert "set-cookie" not in r.headers


@pytest.mark.parametrize(
    "key", ["wrong-key-0123456789", API_KEY + "x", API_KEY[:-1], "", " " + API_KEY]
)
async def test_login_with_a_wrong_key_is_401_and_sets_no_cookie(production_app, key: str):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        r = await client.post("/designer/login", json={"key": key})
        assert_error(r, 401, "invalid_api_key")
        assert "set-cookie" not in r.headers
        assert key not in r.text or not key


@pytest.mark.parametrize(
    ("body", "status"),
    [({"key": 42}, 422), ({}, 422), (["key"], 422), ("not json", 415)],
)
async def test_login_without_a_key_is_refused(production_app, body: Any, status: int):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        if isinstance(body, str):
            r = await client.post("/designer/login", content=body)
        else:
            r = await client.post("/designer/login", json=body)
        assert_error(r, status)


async def test_login_with_an_api_key_sets_the_session_cookie(production_app):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        r = await client.post("/designer/login", json={"key": API_KEY})
        assert r.status_code == 200, r.text
        attributes = cookie_attributes(r)
        assert "httponly" in attributes
        assert attributes["samesite"].lower() == "strict"
        assert attributes["path"] == "/"
        assert attributes["max-age"] == str(MAX_AGE_S) == "28800"
        assert "secure" not in attributes  # plain http: a Secure cookie would not come back
        assert API_KEY not in r.headers["set-cookie"]
        page = await client.get("/designer")
        assert 'id="template"' in page.text
        assert "set-cookie" not in page.headers  # the session it has is kept


async def test_the_cookie_is_secure_over_https(production_app):
    app = production_app(KAIROS_DESIGNER="on")
    async with browser(app, base_url="https://kairos.example.com", peer=REMOTE) as client:
        r = await client.post("/designer/login", json={"key": API_KEY})
        assert r.status_code == 200
        assert "secure" in cookie_attributes(r)


# --- the session on the server-to-server routes --------------------------------------------


async def test_the_session_reads_and_writes_with_its_csrf_token(production_app):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        assert_error(await client.get("/v1/templates"), 401)
        await client.post("/designer/login", json={"key": API_KEY})
        token = csrf_of(await client.get("/designer"))
        listing = await client.get("/v1/templates")
        assert listing.status_code == 200
        assert "welcome" in {t["name"] for t in listing.json()["templates"]}
        r = await client.post("/v1/preview", json=PREVIEW, headers={"X-Kairos-CSRF": token})
        assert r.status_code == 200, r.text
        assert "Ada" in r.json()["html"]


@pytest.mark.parametrize("header", [None, "", "wrong", "x" * 43])
async def test_a_write_without_the_sessions_csrf_token_is_403(production_app, header):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        await client.post("/designer/login", json={"key": API_KEY})
        token = csrf_of(await client.get("/designer"))
        headers = {} if header is None else {"X-Kairos-CSRF": header}
        for method, path, body in [
            ("POST", "/v1/preview", PREVIEW),
            ("PUT", "/v1/profiles/mallory", {"first_name": "Mallory"}),
            ("DELETE", "/v1/profiles/ada", None),
        ]:
            r = await client.request(method, path, json=body, headers=headers)
            error = assert_error(r, 403, "csrf")
            assert token not in error["message"]
        # Nothing was written: Ada is still there, Mallory never was.
        assert (await client.get("/v1/profiles/ada")).status_code == 200
        assert_error(await client.get("/v1/profiles/mallory"), 404)


async def test_another_sessions_token_does_not_do(settings, production_app):
    other = StudioAccess(settings(**PRODUCTION, KAIROS_DESIGNER="on"), ApiKeys([]))
    other_session, _ = other.new_session()
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        await client.post("/designer/login", json={"key": API_KEY})
        r = await client.post(
            "/v1/preview", json=PREVIEW, headers={"X-Kairos-CSRF": other_session.csrf}
        )
        assert_error(r, 403, "csrf")


def session_cookie(settings: Settings, *, at: float | None = None) -> str:
    """A session cookie as the studio of `settings` signs it (at time `at`)."""
    access = StudioAccess(settings, ApiKeys([Secret(API_KEY)]))
    if at is None:
        return access.new_session()[1]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(itsdangerous.timed.time, "time", lambda: at)
        return access.new_session()[1]


async def test_forged_expired_and_foreign_cookies_are_401(settings, production_app):
    import time

    on = settings(**PRODUCTION, KAIROS_DESIGNER="on")
    good = session_cookie(on)
    payload, stamp, signature = good.split(".")
    foreign = settings(
        **PRODUCTION, KAIROS_DESIGNER="on", KAIROS_SECRET_KEYS="Zt4Gq9Lm2Xv7Rc1Nb6Hw3Pk8Jd5Sy0Fa"
    )
    forged = [
        payload + "." + stamp + "." + signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB"),
        payload.replace("e", "f", 1) + "." + stamp + "." + signature,
        session_cookie(foreign),
        session_cookie(on, at=time.time() - MAX_AGE_S - 60),
        "x" * 600,
        "",
    ]
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        assert (
            await client.get("/v1/templates", headers={"Cookie": f"{COOKIE}={good}"})
        ).status_code == 200
        for cookie in forged:
            r = await client.get("/v1/templates", headers={"Cookie": f"{COOKIE}={cookie}"})
            assert_error(r, 401)
            page = await client.get("/designer", headers={"Cookie": f"{COOKIE}={cookie}"})
            assert 'id="login"' in page.text


async def test_a_key_decides_alone_even_with_a_session(production_app):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        await client.post("/designer/login", json={"key": API_KEY})
        r = await client.get("/v1/templates", headers={"Authorization": "Bearer not-the-key"})
        assert_error(r, 401, "invalid_api_key")


async def test_a_session_from_an_old_signing_key_still_opens(settings, production_app):
    # Keys rotate as `new,old`: a session signed before the rotation stays good.
    old = session_cookie(settings(**PRODUCTION, KAIROS_DESIGNER="on"))
    rotated = production_app(
        KAIROS_DESIGNER="on", KAIROS_SECRET_KEYS="Mx5Bn0Qw7Kt2Vr9Lc4Gz8Hd1Pj6Fs3Ya," + SECRET
    )
    async with browser(rotated, peer=REMOTE) as client:
        assert (
            await client.get("/v1/templates", headers={"Cookie": f"{COOKIE}={old}"})
        ).status_code == 200


async def test_logout_needs_the_token_and_ends_the_session(production_app):
    async with browser(production_app(KAIROS_DESIGNER="on"), peer=REMOTE) as client:
        await client.post("/designer/login", json={"key": API_KEY})
        token = csrf_of(await client.get("/designer"))
        assert_error(await client.post("/designer/logout"), 403, "csrf")
        assert (await client.get("/v1/templates")).status_code == 200
        r = await client.post("/designer/logout", headers={"X-Kairos-CSRF": token})
        assert r.status_code == 200
        assert cookie_attributes(r)["max-age"] == "0"
        assert_error(await client.get("/v1/templates"), 401)
        assert 'id="login"' in (await client.get("/designer")).text


# --- development: loopback needs no login --------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"]
)
async def test_loopback_in_development_opens_without_login(settings, base_url: str):
    app = create_app(settings(KAIROS_ENV="development", KAIROS_API_KEYS=None))
    async with browser(app, base_url=base_url) as client:
        page = await client.get("/designer")
        assert page.status_code == 200
        assert 'id="template"' in page.text
        attributes = cookie_attributes(page)
        assert "httponly" in attributes and attributes["samesite"].lower() == "strict"
        # The page's session works with no API key configured at all.
        token = csrf_of(page)
        assert (await client.get("/v1/templates")).status_code == 200
        r = await client.post("/v1/preview", json=PREVIEW, headers={"X-Kairos-CSRF": token})
        assert r.status_code == 200, r.text
        assert_error(await client.post("/v1/preview", json=PREVIEW), 403, "csrf")


@pytest.mark.parametrize(
    ("peer", "base_url"),
    [
        (REMOTE, "http://127.0.0.1:8000"),  # another machine
        (REMOTE, "http://kairos.internal:8000"),
        # A page of another site whose name was made to resolve to 127.0.0.1.
        (LOOPBACK, "http://rebound.example.com:8000"),
        (LOOPBACK, "http://127.0.0.1.example.com:8000"),
    ],
)
async def test_outside_loopback_development_asks_for_a_login(settings, peer, base_url):
    app = create_app(settings(KAIROS_ENV="development"))
    async with browser(app, base_url=base_url, peer=peer) as client:
        page = await client.get("/designer")
        assert 'id="login"' in page.text
        assert "set-cookie" not in page.headers
        assert_error(await client.get("/v1/templates"), 401)
