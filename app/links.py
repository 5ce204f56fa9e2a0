"""Signed open-time URLs for one reader of one campaign, as embedded in a render.

A click URL is `/c/{link}?r={reader}`: the link token signs the target and the campaign
and is the same for every reader of the campaign (signed once, then reused); the reader
token signs the reader, the campaign and the reader's A/B variant (signed once per
render), as does the open pixel, so opens and clicks count for the variant sent. So an email with
twenty links costs one signature, not twenty, and the parts of an email that are the
same for every reader can be rendered once per send (see `app.render.layout`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote

try:  # HTML-escapes a plain str, without making a Markup of it
    from markupsafe._speedups import _escape_inner as escape_str
except ImportError:  # markupsafe without its C extension
    from markupsafe._native import _escape_inner as escape_str

from app.caching import Bounded
from app.targets import UnsafeTarget, check_target
from app.tokens import Tokens

__all__ = [
    "ImageCheck",
    "LinkSigner",
    "Links",
    "Spec",
    "UnsafeTarget",
    "check_target",
    "escape_str",
]

LINK_CACHE_SIZE = 20_000
# Where a reader's signed one-click unsubscribe URL points (app/routes/unsubscribe.py).
UNSUBSCRIBE_PATH = "/v1/unsubscribe/"
# Recommendation slots a product click link may name (and live product cards show).
MAX_SLOT = 19

# What a reader URL stands for, for a render that fills it in per reader (`Links.resolve`).
Spec = tuple[Any, ...]


class ImageCheck(Protocol):
    def __call__(self, name: str, params: dict[str, Any]) -> str:
        """The format of live image `name` with `params`; `ParamError` when the image is
        unknown or its parameters are invalid."""
        ...

    def reader_params(self, name: str, reader: Mapping[str, Any]) -> dict[str, str]:
        """The parameters live image `name` takes from the reader's profile at send
        time (a countdown: the reader's locale and time zone, when valid)."""
        ...

    def undrawable(
        self, name: str, params: dict[str, Any], profile: Any
    ) -> list[tuple[str, str]]:
        """(parameter, characters) of the text live image `name` will draw for a reader
        with `profile` that no font can draw, as far as send time can tell."""
        ...


class LinkSigner:
    """The reader-independent half of click URLs, signed once per (campaign, target,
    slot) and kept (bounded, first in first out)."""

    def __init__(self, tokens: Tokens, base_url: str, check_image: ImageCheck) -> None:
        self.tokens = tokens
        self.base_url = base_url
        self.check_image = check_image
        self._links: Bounded[tuple[str | None, str, int | None], str | None] = Bounded(
            LINK_CACHE_SIZE
        )

    def link(self, campaign: str | None, target: str, slot: int | None = None) -> str | None:
        """`{base}/c/{link token}?r=` for `target`, or None when the target is unsafe."""
        key = (campaign, target, slot)
        try:
            return self._links[key]
        except KeyError:
            pass
        try:
            check_target(target)
        except UnsafeTarget:
            url = None
        else:
            params = None if slot is None else {"slot": slot}
            token = self.tokens.sign("click", "", target, campaign=campaign, params=params)
            url = f"{self.base_url}/c/{token}?r="
        self._links.put(key, url)
        return url


class Links:
    """Every URL of one render, signed once and reused across HTML, AMP and text."""

    def __init__(
        self,
        signer: LinkSigner,
        base_url: str,
        user_id: str,
        campaign: str | None,
        home: str,
        *,
        tracking: bool = True,
        variant: str | None = None,
        unsubscribe: str | None = None,
        reader: Mapping[str, Any] | None = None,
        language: str | None = None,
    ) -> None:
        self._signer = signer
        self._unsubscribe = unsubscribe
        self._reader = reader or {}
        # Signed into feed URLs: the feed writes prices in the email's language.
        self._feed_params = {"lang": language} if language else None
        self._variant = variant
        self._tokens = signer.tokens
        self._tracking = tracking
        self._base = base_url
        self._user = user_id
        self._campaign = campaign
        self._home = home
        self._memo: dict[Any, str] = {}
        self._clicks: dict[str, str] = {}
        self._html_urls: dict[str, str] = {}
        self._text_urls: dict[str, str] = {}
        self._reader_token: str | None = None
        self.unsafe: list[str] = []
        self.images: list[tuple[str, dict[str, Any]]] = []  # each live image signed

    def feed(self, name: str) -> str:
        key = ("feed", name)
        url = self._memo.get(key)
        if url is None:
            token = self._tokens.sign(
                "feed", self._user, name, campaign=self._campaign, params=self._feed_params
            )
            url = self._memo[key] = f"{self._base}/v1/feeds/{name}?t={token}"
        return url

    def image(self, name: str, **params: Any) -> str:
        """The reader's live image `name`, its parameters signed in: checked here, so a
        template asking for an unknown image, a bad parameter or a size above the
        limits fails at send time (`ParamError`), not at open time."""
        key = ("image", name, *sorted(f"{k}={v!r}" for k, v in params.items()))
        url = self._memo.get(key)
        if url is None:
            check = self._signer.check_image
            fmt = check(name, params)
            self.images.append((name, params))
            signed = {**params, **check.reader_params(name, self._reader)}
            token = self._tokens.sign(
                "image", self._user, name, campaign=self._campaign, params=signed or None
            )
            url = self._memo[key] = f"{self._base}/v1/img/{name}.{fmt}?t={token}"
        return url

    def product_click(self, slot: int, target: str) -> str:
        """The click link of recommendation slot `slot`: it goes to the product the
        reader saw in that slot's live image (`image('product', slot=...)`), or to
        `target` when they have not seen one. Signed even for readers who declined
        tracking: the redirect is what finds the product."""
        if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= MAX_SLOT:
            raise ValueError(f"slot must be an integer from 0 to {MAX_SLOT}")
        link = self._signer.link(self._campaign, target, slot)
        if link is None:
            self.unsafe.append(str(target)[:200])
            link = self._signer.link(self._campaign, self._home, slot)
            if link is None:
                return self._home
        return link + self.reader()

    def click(self, target: str) -> str:
        """A click URL that redirects to `target` (the plain target for readers who
        declined tracking); an unsafe target sends the reader home instead."""
        url = self._clicks.get(target)
        if url is None:
            url = self._clicks[target] = self._click(target)
        return url

    def _click(self, target: str) -> str:
        link = self._signer.link(self._campaign, target)
        if link is None:
            # Reader data must never turn a link into a script: send them home.
            self.unsafe.append(str(target)[:200])
            link = self._signer.link(self._campaign, self._home)
            if link is None:
                return self._home
            target = self._home
        if not self._tracking:
            # The reader declined tracking: the link goes straight to its target.
            return target
        return link + self.reader()

    def reader(self) -> str:
        """This reader's token for click URLs (URL-safe as it is)."""
        token = self._reader_token
        if token is None:
            token = self._reader_token = self._tokens.sign(
                "reader", self._user, "", campaign=self._campaign, variant=self._variant
            )
        return token

    def pixel(self) -> str:
        key = ("pixel",)
        url = self._memo.get(key)
        if url is None:
            token = self._tokens.sign(
                "pixel", self._user, "open", campaign=self._campaign, variant=self._variant
            )
            url = self._memo[key] = f"{self._base}/v1/px/{quote(token)}.gif"
        return url

    def unsubscribe(self) -> str:
        """Where the reader unsubscribes: the ESP's URL or merge tag when the template
        or the render gives one, else this reader's signed one-click URL (never a click
        redirect: a merge tag must reach the ESP as it is written)."""
        url = self._unsubscribe
        if url is None:
            key = ("unsubscribe",)
            url = self._memo.get(key)
            if url is None:
                token = self._tokens.sign(
                    "unsubscribe", self._user, "email", campaign=self._campaign
                )
                url = self._memo[key] = f"{self._base}{UNSUBSCRIBE_PATH}{token}"
        return url

    def url(self, key: str, spec: Spec, html: bool) -> str:
        """The URL a `FillLinks` sentinel stands for, for this reader, HTML-escaped when
        `html`; `key` names the spec (once per render)."""
        memo = self._html_urls if html else self._text_urls
        url = memo.get(key)
        if url is None:
            url = self.resolve(spec)
            if html:
                url = escape_str(url)
            memo[key] = url
        return url

    def resolve(self, spec: Spec) -> str:
        """The URL a `FillLinks` sentinel stands for, for this reader."""
        kind = spec[0]
        if kind == "reader":
            return self.reader()
        if kind == "feed":
            return self.feed(spec[1])
        if kind == "image":
            return self.image(spec[1], **spec[2])
        if kind == "unsubscribe":
            return self.unsubscribe()
        return self.pixel()
