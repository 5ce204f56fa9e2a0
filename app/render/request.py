"""A render request as ESPs send it (one JSON object, or one line of a batch), validated
before anything is looked up: `Unprocessable` names the first bad field."""

from __future__ import annotations

import re
from typing import Any

from app.errors import Unprocessable
from app.profiles.schema import USER_ID, inline_profile
from app.render.headers import BadUnsubscribe, esp_unsubscribe
from app.render.result import FORMATS

CAMPAIGN = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
RENDER_KEYS = frozenset(
    {"template", "user_id", "profile", "campaign", "formats", "unsubscribe_url"}
)


class RenderRequest:
    """A validated render request; `Unprocessable` names the first bad field."""

    __slots__ = ("template", "user_id", "profile", "campaign", "formats", "unsubscribe_url")

    def __init__(self, doc: Any, *, template: str | None = None) -> None:
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        unknown = set(doc) - RENDER_KEYS
        if unknown:
            field = sorted(unknown)[0]
            raise Unprocessable(f"{field}: is not a known field", field=field)
        name = doc.get("template", template)
        if not isinstance(name, str) or not name:
            raise Unprocessable("template: a template name is required", field="template")
        self.template: str = name
        user_id = doc.get("user_id")
        if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
            raise Unprocessable(
                "user_id: 1-128 letters, digits and _ . : - are required", field="user_id"
            )
        self.user_id: str = user_id
        self.campaign: str | None = doc.get("campaign")
        if self.campaign is not None and (
            not isinstance(self.campaign, str) or not CAMPAIGN.fullmatch(self.campaign)
        ):
            raise Unprocessable("campaign: 1-128 letters, digits and _ . : -", field="campaign")
        formats = doc.get("formats", list(FORMATS))
        if not isinstance(formats, list) or not formats or any(f not in FORMATS for f in formats):
            raise Unprocessable(f"formats: a list drawn from {list(FORMATS)}", field="formats")
        self.formats = tuple(formats)
        unsubscribe = doc.get("unsubscribe_url")
        if unsubscribe is not None:
            try:
                unsubscribe = esp_unsubscribe(unsubscribe)
            except BadUnsubscribe as exc:
                raise Unprocessable(f"unsubscribe_url: {exc}", field="unsubscribe_url") from None
        # The ESP's own unsubscribe URL or merge tag for this reader, over the template's.
        self.unsubscribe_url: str | None = unsubscribe
        profile = doc.get("profile")
        # Too long text is let through: the render cuts it to fit, and says so.
        self.profile = None if profile is None else inline_profile(profile, render=True)
