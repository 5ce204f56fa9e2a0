"""Signed open-time URLs for one reader of one campaign, as embedded in a render."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from app import images
from app.picks import MAX_SLOT
from app.targets import UnsafeTarget, check_target
from app.tokens import Tokens

__all__ = ["Links", "UnsafeTarget", "check_target"]


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

    def image(self, name: str, **params: Any) -> str:
        """The reader's live image `name`, its parameters signed in: checked here, so a
        template asking for an unknown image, a bad parameter or a size above the
        limits fails at send time (`images.ParamError`), not at open time."""
        key = ("image", name, *sorted(f"{k}={v!r}" for k, v in params.items()))
        url = self._memo.get(key)
        if url is None:
            images.check(name, params)
            token = self._tokens.sign(
                "image", self._user, name, campaign=self._campaign, params=params or None
            )
            fmt = images.KINDS[name].format
            url = self._memo[key] = f"{self._base}/v1/img/{name}.{fmt}?t={token}"
        return url

    def product_click(self, slot: int, target: str) -> str:
        """The click link of recommendation slot `slot`: it goes to the product the
        reader saw in that slot's live image (`image('product', slot=...)`), or to
        `target` when they have not seen one. Signed even for readers who declined
        tracking: the redirect is what finds the product."""
        key = ("slot", str(slot), target)
        url = self._memo.get(key)
        if url is None:
            if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= MAX_SLOT:
                raise ValueError(f"slot must be an integer from 0 to {MAX_SLOT}")
            try:
                check_target(target)
            except UnsafeTarget:
                self.unsafe.append(str(target)[:200])
                target = self._home
            token = self._tokens.sign(
                "click", self._user, target, campaign=self._campaign, params={"slot": slot}
            )
            url = self._memo[key] = f"{self._base}/c/{token}"
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
