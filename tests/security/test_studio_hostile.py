"""One-click unsubscribe and the designer's studio as an attacker reaches them, through the
real app: forged, flipped, re-spelled and expired unsubscribe tokens, GET against POST
(RFC 8058), the reader only ever the token's; forged session cookies, cookies signed for
another purpose or by another server, writes without the session's CSRF token, a session
planted before login (fixation), and the login's key comparison. Complements
tests/test_unsubscribe.py and tests/test_studio_access.py."""

from __future__ import annotations

import contextlib
import hmac
import html
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer
from starlette.applications import Starlette
from support import API_KEY, AUTH, SECRET, TOKENS, assert_error, serve

from app import auth
from app.app import create_app
from app.settings import Secret, Settings
from app.studio.access import COOKIE, SALT
from app.tokens import Tokens

ONE_CLICK = {"Content-Type": "application/x-www-form-urlencoded"}
BODY = b"List-Unsubscribe=One-Click"
PRODUCTION = {
    "KAIROS_ENV": "production",
    "KAIROS_PUBLIC_URL": "https://kairos.example.com",
    "KAIROS_AMP_SENDERS": "*@news.example.com",
    "KAIROS_DEMO_DATA": "true",
    "KAIROS_DESIGNER": "on",
}
REMOTE = ("203.0.113.9", 50000)
CSRF_META = re.compile(r'<meta name="kairos-csrf" content="([^"]+)">')
OTHER_SECRET = "Zt4Gq9Lm2Xv7Rc1Nb6Hw3Pk8Jd5Sy0Fa"


@pytest.fixture
async def client(settings: Callable[..., Settings]) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(KAIROS_DEMO_DATA="true", KAIROS_PUBLIC_URL="https://k.example"))
    async with serve(app) as c:
        c.app = app  # type: ignore[attr-defined]
        yield c


async def email_consent(client: httpx.AsyncClient, user: str) -> Any:
    profile = await client.app.state.services.stores.profiles.get(user)  # type: ignore[attr-defined]
    return None if profile is None else (profile.get("consent") or {}).get("email")


# --- unsubscribe: tokens -----------------------------------------------------------------------


def unsubscribe_token(user: str = "ada", **options: Any) -> str:
    return TOKENS.sign("unsubscribe", user, "email", **options)


def forged_unsubscribe_tokens() -> dict[str, str]:
    good = unsubscribe_token()
    body, _, signature = good.rpartition(".")
    flip = "A" if signature[-2] != "A" else "B"
    return {
        "flipped signature": f"{body}.{signature[:-2]}{flip}{signature[-1]}",
        "flipped payload": f"{body[:5]}{'A' if body[5] != 'A' else 'B'}{body[6:]}.{signature}",
        "truncated": good[:-3],
        "padded": good + "==",
        "payload only": body,
        "another reader's signature": f"{body}.{unsubscribe_token('grace').rpartition('.')[2]}",
        "signed by another server": Tokens((Secret(OTHER_SECRET),)).sign(
            "unsubscribe", "ada", "email"
        ),
        "a click token": TOKENS.sign("click", "ada", "email"),
        "a reader token": TOKENS.sign("reader", "ada", "email"),
        "a pixel token": TOKENS.sign("pixel", "ada", "email"),
        "for another list": TOKENS.sign("unsubscribe", "ada", "sms"),
        "oversized": "A" * 5000 + "." + signature,
        "dot": ".",
        "percent-encoded slash": body + "%2F" + signature,
    }


FORGED = list(forged_unsubscribe_tokens().items())


@pytest.mark.parametrize(("name", "token"), FORGED, ids=[n for n, _ in FORGED])
async def test_a_forged_unsubscribe_token_changes_nothing(
    client: httpx.AsyncClient, name: str, token: str
) -> None:
    path = f"/v1/unsubscribe/{token}"
    r = await client.post(path, content=BODY, headers=ONE_CLICK)
    assert r.status_code in (403, 404), (name, r.text)
    assert_error(r, r.status_code)
    page = await client.get(path)
    assert page.status_code in (403, 404) and "<form" not in page.text
    assert "ada" not in r.text.lower() and "ada" not in page.text.lower()
    assert await email_consent(client, "ada") is None


async def test_an_expired_unsubscribe_link_is_still_honoured(client: httpx.AsyncClient) -> None:
    """Documented: an opt-out is never refused for its age (RFC 8058 links in old mail
    must keep working; only the server's key can sign one at all)."""
    path = f"/v1/unsubscribe/{unsubscribe_token(ttl_s=-3600)}"
    assert (await client.get(path)).status_code == 200
    r = await client.post(path, content=BODY, headers=ONE_CLICK)
    assert r.status_code == 200 and r.json() == {"unsubscribed": True}
    assert await email_consent(client, "ada") is False


async def test_the_reader_is_only_ever_the_tokens(client: httpx.AsyncClient) -> None:
    path = f"/v1/unsubscribe/{unsubscribe_token('ada')}?user_id=grace&u=grace"
    r = await client.post(
        path,
        content=b"List-Unsubscribe=One-Click&user_id=grace",
        headers={**ONE_CLICK, "X-User-Id": "grace", "Cookie": "user_id=grace"},
    )
    assert r.status_code == 200, r.text
    assert (await email_consent(client, "ada"), await email_consent(client, "grace")) == (
        False,
        None,
    )


# --- unsubscribe: which methods unsubscribe ----------------------------------------------------

NEVER = [
    ("GET", None), ("GET", "?List-Unsubscribe=One-Click"), ("HEAD", None),
    ("PUT", BODY), ("PATCH", BODY), ("DELETE", None), ("OPTIONS", None),
]  # fmt: skip


@pytest.mark.parametrize(("method", "extra"), NEVER, ids=[f"{m} {e!r}" for m, e in NEVER])
async def test_only_a_post_unsubscribes(client: httpx.AsyncClient, method: str, extra: Any) -> None:
    path = f"/v1/unsubscribe/{unsubscribe_token()}"
    query = extra if isinstance(extra, str) else ""
    content = extra if isinstance(extra, bytes) else None
    r = await client.request(method, path + query, content=content, headers=ONE_CLICK)
    if method in ("GET", "HEAD"):
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    else:
        assert_error(r, 405)
        assert set(r.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert await email_consent(client, "ada") is None


ONE_CLICK_BODIES = [
    (BODY, ONE_CLICK), (b"", {}), (b"garbage\x00\xff", {"Content-Type": "text/plain"}),
    (b'{"List-Unsubscribe": "One-Click"}', {"Content-Type": "application/json"}),
]  # fmt: skip


@pytest.mark.parametrize(("body", "headers"), ONE_CLICK_BODIES)
async def test_a_post_unsubscribes_whatever_its_body_and_names_nobody(
    client: httpx.AsyncClient, body: bytes, headers: dict[str, str]
) -> None:
    # A mail client's one-click POST carries no cookie and may come from anywhere.
    headers = {**headers, "Origin": "https://mail.example.net"}
    r = await client.post(f"/v1/unsubscribe/{unsubscribe_token()}", content=body, headers=headers)
    assert r.status_code == 200 and r.json() == {"unsubscribed": True}
    assert "access-control-allow-origin" not in r.headers and "set-cookie" not in r.headers
    assert await email_consent(client, "ada") is False


# --- the studio: cookies -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def browser(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A browser on another machine, over plain HTTP (its cookies come back)."""
    async with serve(app):
        transport = httpx.ASGITransport(app=app, client=REMOTE)
        async with httpx.AsyncClient(transport=transport, base_url="http://kairos.test") as c:
            yield c


@pytest.fixture
def studio_app(settings: Callable[..., Settings]) -> Starlette:
    return create_app(settings(**PRODUCTION))


def cookie_of(response: httpx.Response) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(COOKIE + "=")]
    return header.split(";")[0].split("=", 1)[1]


def csrf_of(page: httpx.Response) -> str:
    found = CSRF_META.search(page.text)
    assert found, page.text[:300]
    return html.unescape(found.group(1))


def signed(payload: Any, *, secret: str = SECRET, salt: str = SALT, at: float | None = None) -> str:
    """A cookie value as the studio signs one, with any payload, key, salt or time."""
    serializer = URLSafeTimedSerializer(secret, salt=salt)
    if at is None:
        return serializer.dumps(payload)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("itsdangerous.timed.time.time", lambda: at)
        return serializer.dumps(payload)


FORGED_COOKIES = {
    "a feed token": TOKENS.sign("feed", "ada", "cart"),
    "another salt": signed({"csrf": "x" * 43}, salt="kairos.other"),
    "another server's key": signed({"csrf": "x" * 43}, secret=OTHER_SECRET),
    "untimed": URLSafeSerializer(SECRET, salt=SALT).dumps({"csrf": "x" * 43}),
    "from the future": signed({"csrf": "x" * 43}, at=time.time() + 3600),
    "a list payload": signed(["csrf"]),
    "an empty token": signed({"csrf": ""}),
    "a number token": signed({"csrf": 7}),
    "no token": signed({"user": "admin"}),
    "unsigned": "eyJjc3JmIjoieCJ9",
    "quoted": '"' + signed({"csrf": "x" * 43}, secret=OTHER_SECRET) + '"',
}


@pytest.mark.parametrize("cookie", FORGED_COOKIES.values(), ids=FORGED_COOKIES.keys())
async def test_a_forged_session_cookie_opens_nothing(studio_app: Starlette, cookie: str) -> None:
    async with browser(studio_app) as client:
        headers = {"Cookie": f"{COOKIE}={cookie}", "X-Kairos-CSRF": "x" * 43}
        assert_error(await client.get("/v1/templates", headers=headers), 401)
        r = await client.put("/v1/profiles/ada", json={"first_name": "Eve"}, headers=headers)
        assert r.status_code in (401, 403)
        page = await client.get("/designer", headers=headers)
        assert 'id="login"' in page.text and "kairos-csrf" not in page.text
        ada = await client.get("/v1/profiles/ada", headers=AUTH)
        assert ada.json()["first_name"] == "Ada"


# --- the studio: CSRF ----------------------------------------------------------------------------

WRITES = [
    ("PATCH", "/v1/profiles/ada", {"first_name": "Eve"}),
    ("DELETE", "/v1/suppressions/ada", None),
    ("POST", "/v1/preview/send", {"template": "welcome", "sample": "full", "to": "e@evil.test"}),
    ("POST", "/v1/render", {"template": "welcome", "user_id": "ada"}),
    ("OPTIONS", "/v1/profiles/ada", None),
]


def wrong_tokens(token: str) -> dict[str, dict[str, str]]:
    return {
        "no header": {},
        "a prefix": {"X-Kairos-CSRF": token[:-1]},
        "padded": {"X-Kairos-CSRF": token + " "},
        "upper-cased": {"X-Kairos-CSRF": token.upper()},
        "in another header": {"X-CSRF-Token": token},
        "twice": {"X-Kairos-CSRF": f"{token}, {token}"},
    }


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
async def test_a_write_without_the_token_is_403(
    studio_app: Starlette, method: str, path: str, body: Any
) -> None:
    async with browser(studio_app) as client:
        await client.post("/designer/login", json={"key": API_KEY})
        token = csrf_of(await client.get("/designer"))
        for name, headers in wrong_tokens(token).items():
            # The token in the query or a form field is not the header either.
            r = await client.request(method, f"{path}?csrf={token}", json=body, headers=headers)
            if method == "OPTIONS":
                assert r.status_code in (403, 405), name
                continue
            error = assert_error(r, 403, "csrf")
            assert token not in error["message"], name
        assert (await client.get("/v1/profiles/ada")).json()["first_name"] == "Ada"


async def test_a_cross_site_form_cannot_log_a_browser_in(studio_app: Starlette) -> None:
    # A form of another site can post text/plain or a form without a preflight: the
    # login reads only application/json, so it cannot plant the attacker's session.
    async with browser(studio_app) as client:
        for content_type, body in [
            ("text/plain", f'{{"key": "{API_KEY}"}}'),
            ("application/x-www-form-urlencoded", f"key={API_KEY}"),
            (
                "multipart/form-data; boundary=x",
                f'--x\r\nContent-Disposition: form-data; name="key"\r\n\r\n{API_KEY}\r\n--x--',
            ),
        ]:
            r = await client.post(
                "/designer/login", content=body, headers={"Content-Type": content_type}
            )
            assert_error(r, 415)
            assert "set-cookie" not in r.headers


# --- the studio: session fixation and the login's comparison ---------------------------------


async def test_a_login_never_adopts_a_planted_session(studio_app: Starlette) -> None:
    async with browser(studio_app) as client:
        # The attacker's own valid session, planted in the victim's browser beforehand,
        # and a value of the attacker's choosing.
        attacker = cookie_of(await client.post("/designer/login", json={"key": API_KEY}))
        attacker_csrf = csrf_of(await client.get("/designer"))
        for planted in (attacker, "chosen-by-the-attacker"):
            client.cookies.clear()
            client.cookies.set(COOKIE, planted)
            r = await client.post("/designer/login", json={"key": API_KEY})
            fresh = cookie_of(r)
            assert fresh != planted
            client.cookies.clear()
            client.cookies.set(COOKIE, fresh)
            token = csrf_of(await client.get("/designer"))
            assert token != attacker_csrf
            # The planted session's token does not write for the fresh one.
            r = await client.put(
                "/v1/profiles/ada",
                json={"first_name": "Eve"},
                headers={"X-Kairos-CSRF": attacker_csrf},
            )
            assert_error(r, 403, "csrf")


async def test_loopback_development_replaces_a_bad_cookie(
    settings: Callable[..., Settings],
) -> None:
    app = create_app(settings(KAIROS_ENV="development", KAIROS_API_KEYS=None))
    async with serve(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            planted = signed({"csrf": "attacker-knows-this"}, secret=OTHER_SECRET)
            page = await c.get("/designer", headers={"Cookie": f"{COOKIE}={planted}"})
            assert cookie_of(page) != planted
            assert csrf_of(page) != "attacker-knows-this"


@pytest.mark.parametrize(
    "presented",
    [API_KEY, "k2-" + "0" * 40, "wrong", "", "x" * 10_000],
    ids=["first", "last", "wrong", "empty", "long"],
)
async def test_the_login_compares_every_key_in_constant_time(
    settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    keys = [API_KEY, "k1-" + "0" * 40, "k2-" + "0" * 40]
    app = create_app(settings(**PRODUCTION, KAIROS_API_KEYS=",".join(keys)))
    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    async with browser(app) as client:
        r = await client.post("/designer/login", json={"key": presented})
    assert r.status_code == (200 if presented in keys else 401), r.text
    # Every key compared, none skipped once one matched, never with `==`.
    assert len(compared) == (len(keys) if presented else 0)
    assert {b for _, b in compared} == {k.encode() for k in keys} or not presented
