"""`Links` for the parts of an email shared by every reader of a send."""

from __future__ import annotations

import re
from typing import Any

from app.links import Links, LinkSigner, Spec

# What a shared fragment holds where a reader's own URL goes.
SENTINEL = re.compile("\x00kx(\\d+)\x00")


class FillLinks(Links):
    """`Links` for rendering a fragment shared by every reader of a send: where a
    reader's own URL (or reader token) goes, it writes a sentinel and records what it
    stands for in `specs`; each reader's render puts its own URL there (`Links.resolve`)."""

    def __init__(
        self, signer: LinkSigner, campaign: str | None, home: str, *, tracking: bool
    ) -> None:
        super().__init__(signer, signer.base_url, "", campaign, home, tracking=tracking)
        self.specs: list[Spec] = []
        self.calls = 0  # sentinels handed out, to tell when a filter changed one
        self._sentinels: dict[str, str] = {}

    @classmethod
    def like(cls, links: Links) -> FillLinks:
        """The `FillLinks` for fragments shared with readers like the one of `links`
        (same campaign, home and tracking consent)."""
        return cls(links._signer, links._campaign, links._home, tracking=links._tracking)

    def _sentinel(self, spec: Spec) -> str:
        self.calls += 1
        key = repr(spec)
        sentinel = self._sentinels.get(key)
        if sentinel is None:
            self.specs.append(spec)
            sentinel = self._sentinels[key] = f"\x00kx{len(self.specs) - 1}\x00"
        return sentinel

    def feed(self, name: str) -> str:
        return self._sentinel(("feed", str(name)))

    def image(self, name: str, **params: Any) -> str:
        self._signer.check_image(name, params)  # a bad image fails when the fragment is made
        return self._sentinel(("image", name, params))

    def click(self, target: str) -> str:
        # Not remembered: each use must ask for its sentinel (see `calls`).
        return self._click(target)

    def reader(self) -> str:
        return self._sentinel(("reader",))

    def pixel(self) -> str:
        return self._sentinel(("pixel",))

    def unsubscribe(self) -> str:
        return self._sentinel(("unsubscribe",))
