"""The review's checks of a render as MIME (`Accept: message/rfc822`), parsed with the
standard library's `email`: the structure mail clients need, and the headers bulk
senders need."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re

PARTS_ORDER = ("text/plain", "text/x-amp-html", "text/html")


def mime_message(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def mime_structure_problems(raw: bytes) -> list[str]:
    """A multipart/alternative with a Subject and its parts in the order clients need:
    text/plain, text/x-amp-html (when there is one), text/html."""
    message = mime_message(raw)
    problems = []
    if message.get_content_type() != "multipart/alternative":
        problems.append(f"the message is {message.get_content_type()}, not multipart/alternative")
    subjects = message.get_all("Subject") or []
    if len(subjects) != 1 or not str(subjects[0]).strip():
        problems.append(f"{len(subjects)} Subject headers, or an empty one")
    kinds = tuple(part.get_content_type() for part in message.iter_parts())
    if kinds not in (PARTS_ORDER, (PARTS_ORDER[0], PARTS_ORDER[2])):
        problems.append(f"parts {kinds}, not {PARTS_ORDER}")
    for part in message.iter_parts():
        if part.get_content_charset() != "utf-8":
            problems.append(f"{part.get_content_type()} is not utf-8")
    return problems


def mime_header_problems(raw: bytes) -> list[str]:
    """The headers bulk senders need: Date, Message-ID, and one-click List-Unsubscribe
    (RFC 2369 and RFC 8058)."""
    message = mime_message(raw)
    problems = []
    date = message.get("Date")
    if date is None:
        problems.append("no Date header")
    else:
        try:
            email.utils.parsedate_to_datetime(str(date))
        except (TypeError, ValueError):
            problems.append(f"Date {str(date)!r} does not parse")
    message_id = message.get("Message-ID")
    if message_id is None:
        problems.append("no Message-ID header")
    elif not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(message_id).strip()):
        problems.append(f"Message-ID {str(message_id)!r} is not <left@domain>")
    unsubscribe = message.get("List-Unsubscribe")
    post = message.get("List-Unsubscribe-Post")
    if unsubscribe is None:
        problems.append("no List-Unsubscribe header")
    elif not re.search(r"<https://[^>\s]+>", str(unsubscribe)):
        problems.append(f"List-Unsubscribe {str(unsubscribe)!r} has no <https://…> URL")
    elif post is None or str(post).strip() != "List-Unsubscribe=One-Click":
        problems.append(
            "List-Unsubscribe without List-Unsubscribe-Post: List-Unsubscribe=One-Click"
        )
    return problems
