"""Who may use the designer's studio: the session cookie, the login with an API key,
the CSRF token, and the loopback rule of development.

The session is a cookie signed with the server's keys under a salt of its own
(itsdangerous, timed: 8 hours), HttpOnly and SameSite=Strict, carrying nothing but a
random CSRF token. The page embeds that token; the guard of the server-to-server routes
(app/routes/guard.py) accepts the cookie for GET and HEAD, and for any other method only
with the token in `X-Kairos-CSRF`, so another site can neither read the studio's
answers nor make it write.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from app.auth import ApiKeys
from app.errors import Forbidden
from app.settings import Settings

COOKIE = "kairos_studio"
CSRF_HEADER = "x-kairos-csrf"
MAX_AGE_S = 8 * 3600
SALT = "kairos.studio-session"
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_ADDRESSES = frozenset({"127.0.0.1", "::1"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A signed cookie of ours is some 120 characters; anything much longer is refused
# before its signature is computed.
MAX_COOKIE_LENGTH = 512


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the CSRF token its page sends back on every write."""

    csrf: str


class StudioAccess:
    """The studio's access rules, built once per app from the settings."""

    def __init__(self, settings: Settings, api_keys: ApiKeys) -> None:
        self.enabled = settings.designer
        self._loopback_open = not settings.production
        # itsdangerous signs with the last key and verifies with all: the first one signs.
        keys = [key.reveal() for key in reversed(settings.secret_keys)]
        self._signer = URLSafeTimedSerializer(keys, salt=SALT)
        self._api_keys = api_keys

    def session(self, request: Request) -> Session | None:
        """The request's session, if its cookie is ours, unexpired and the studio is on."""
        raw = request.cookies.get(COOKIE)
        if not self.enabled or not raw or len(raw) > MAX_COOKIE_LENGTH:
            return None
        try:
            payload = self._signer.loads(raw, max_age=MAX_AGE_S)
        except BadData:
            return None
        csrf = payload.get("csrf") if isinstance(payload, dict) else None
        return Session(csrf) if isinstance(csrf, str) and csrf else None

    def new_session(self) -> tuple[Session, str]:
        """A new session and the cookie value that carries it."""
        csrf = secrets.token_urlsafe(32)
        return Session(csrf), self._signer.dumps({"csrf": csrf})

    def open_without_login(self, request: Request) -> bool:
        """Whether the page opens without a login: outside production, for a browser on
        this machine (a loopback address) asking for a loopback host name. The name
        matters: a page of another site whose name is made to resolve to 127.0.0.1
        (DNS rebinding) comes from loopback too, but under its own name."""
        if not self._loopback_open or request.client is None:
            return False
        host = urlsplit("//" + request.headers.get("host", "")).hostname
        return request.client.host in LOOPBACK_ADDRESSES and host in LOOPBACK_HOSTS

    def login(self, key: object) -> bool:
        """Whether `key` is one of the server's API keys."""
        return isinstance(key, str) and self._api_keys.valid(key)

    def authorize(self, request: Request, session: Session) -> None:
        """Return if `session` may make this request: GET and HEAD alone, any other
        method with the session's CSRF token in `X-Kairos-CSRF`; 403 otherwise."""
        if request.method in SAFE_METHODS:
            return
        presented = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
            raise Forbidden(
                "a studio session writes only with its token in the X-Kairos-CSRF header",
                code="csrf",
            )


def set_cookie(response: Response, request: Request, value: str) -> None:
    """Put the session cookie `value` on `response`."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE_S,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request) -> None:
    """End the session on `response`."""
    response.delete_cookie(
        COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )
