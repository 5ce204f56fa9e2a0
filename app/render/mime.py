"""A render as one MIME message: multipart/alternative with text, AMP and HTML parts."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP

from app.render.result import RenderResult

# Raw header values (set_raw) are written unfolded; the headers set by name still fold.
POLICY = SMTP.clone(refold_source="none")


def mime_message(result: RenderResult) -> bytes:
    """RFC 5322 bytes with the render's headers; parts in the order mail clients expect
    (the last they can show wins): text/plain, text/x-amp-html, text/html."""
    return mime(result).as_bytes()


def mime(result: RenderResult) -> EmailMessage:
    """The message of `mime_message`, for a sender to address before it goes."""
    message = EmailMessage(policy=POLICY)
    for name, value in result.headers.items():  # Message-ID, Date, List-Unsubscribe
        # As they are: folding would turn a long List-Unsubscribe into encoded words,
        # which mail clients do not read as a URL (each is one line under 998 bytes).
        message.set_raw(name, value)
    message["Subject"] = result.subject
    message["MIME-Version"] = "1.0"
    message.set_content(result.text or "", subtype="plain", charset="utf-8")
    if result.amp:
        message.add_alternative(result.amp, subtype="x-amp-html", charset="utf-8")
    if result.html:
        message.add_alternative(result.html, subtype="html", charset="utf-8")
    return message
