"""Signed open-time URLs for one reader of one campaign, as embedded in a render."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from app.tokens import Tokens

IMAGE_FORMATS = {"countdown": "gif"}


class UnsafeTarget(ValueError):
    """A click target that is not an absolute http(s) URL."""


def check_target(url: str) -> str:
    """`url` if a click may redirect there: absolute http(s) only, so never `javascript:`,
    `data:` or a scheme-relative `//host` that would borrow our scheme."""
    if not isinstance(url, str) or len(url) > 2048 or any(c in url for c in "\r\n\t "):
        raise UnsafeTarget("a click target must be one absolute http(s) URL")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UnsafeTarget(f"refusing click target {url[:80]!r}: only absolute http(s) URLs")
    return url


class Links:
    """Every URL of one render, signed once and reused across HTML, AMP and text."""

    def __init__(
        self,
        tokens: Tokens,
        base_url: str,
        user_id: str,
        campaign: str | None,
        home: str,
        *,
        tracking: bool = True,
    ) -> None:
        self._tracking = tracking
        self._tokens = tokens
        self._base = base_url
        self._user = user_id
        self._campaign = campaign
        self._home = home
        self._memo: dict[tuple[str, ...], str] = {}
        self.unsafe: list[str] = []

    def feed(self, name: str) -> str:
        key = ("feed", name)
        url = self._memo.get(key)
        if url is None:
            token = self._tokens.sign("feed", self._user, name, campaign=self._campaign)
            url = self._memo[key] = f"{self._base}/v1/feeds/{name}?t={token}"
        return url

    def image(self, name: str, **params: str) -> str:
        key = ("image", name, *sorted(f"{k}={v}" for k, v in params.items()))
        url = self._memo.get(key)
        if url is None:
            token = self._tokens.sign(
                "image", self._user, name, campaign=self._campaign, params=params or None
            )
            fmt = IMAGE_FORMATS.get(name, "png")
            url = self._memo[key] = f"{self._base}/v1/img/{name}.{fmt}?t={token}"
        return url

    def click(self, target: str) -> str:
        key = ("click", target)
        url = self._memo.get(key)
        if url is None:
            try:
                check_target(target)
            except UnsafeTarget:
                # Reader data must never turn a link into a script: send them home.
                self.unsafe.append(str(target)[:200])
                return self.click(self._home) if target != self._home else self._home
            if not self._tracking:
                # The reader declined tracking: the link goes straight to its target.
                self._memo[key] = target
                return target
            token = self._tokens.sign("click", self._user, target, campaign=self._campaign)
            url = self._memo[key] = f"{self._base}/c/{token}"
        return url

    def pixel(self) -> str:
        key = ("pixel",)
        url = self._memo.get(key)
        if url is None:
            token = self._tokens.sign("pixel", self._user, "open", campaign=self._campaign)
            url = self._memo[key] = f"{self._base}/v1/px/{quote(token)}.gif"
        return url
