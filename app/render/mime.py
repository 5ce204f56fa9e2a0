"""A render as one MIME message: multipart/alternative with text, AMP and HTML parts."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from app.render.result import RenderResult


def mime_message(result: RenderResult) -> bytes:
    """RFC 5322 bytes; parts in the order mail clients expect (the last they can show
    wins): text/plain, text/x-amp-html, text/html."""
    message = EmailMessage(policy=SMTP)
    message["Subject"] = result.subject
    message["MIME-Version"] = "1.0"
    message.set_content(result.text or "", subtype="plain", charset="utf-8")
    if result.amp:
        message.add_alternative(result.amp, subtype="x-amp-html", charset="utf-8")
    if result.html:
        message.add_alternative(result.html, subtype="html", charset="utf-8")
    return message.as_bytes()
