"""The studio's "Send a test" (`POST /v1/preview/send`): what a preview shows, as the
MIME message a reader gets, sent to one address through `KAIROS_SMTP_URL`.

smtplib blocks, so a send runs in a worker thread with a timeout, never on the event
loop. Sends are few by design: at most TESTS_PER_MINUTE per process."""

from __future__ import annotations

import asyncio
import logging
import math
import smtplib
import ssl
import time
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.errors import NO_STORE, Conflict, KairosError, Unprocessable
from app.render.mime import mime
from app.render.result import RenderResult
from app.responses import JSONResponse
from app.routes.profiles import _json_body
from app.services import Services
from app.settings.smtp import SmtpUrl, valid_address

log = logging.getLogger("kairos.studio")

SMTP_TIMEOUT_S = 10.0
TESTS_PER_MINUTE = 10
SUBJECT_PREFIX = "[Test] "
# A mail client's unsubscribe button on a test would unsubscribe the reader previewed.
NOT_IN_TESTS = ("List-Unsubscribe", "List-Unsubscribe-Post")
# What only changes the preview's answer, never the message.
PREVIEW_ONLY = ("annotate", "validate_amp")


class SmtpFailed(KairosError):
    """The SMTP server could not be reached or refused the message: 502, and a message
    of our own (never the server's reply, which may echo a login)."""

    status, code = 502, "smtp_failed"


class RateLimit:
    """At most `limit` takes in any `window_s` seconds."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit, self._window_s, self._clock = limit, window_s, clock
        self._taken: deque[float] = deque()

    def take(self) -> float:
        """0 when taken; else the seconds until one is free (nothing taken)."""
        now = self._clock()
        while self._taken and self._taken[0] <= now - self._window_s:
            self._taken.popleft()
        if len(self._taken) >= self._limit:
            return self._taken[0] + self._window_s - now
        self._taken.append(now)
        return 0.0


class Mailer:
    """One SMTP server, as `KAIROS_SMTP_URL` names it."""

    def __init__(self, url: SmtpUrl, sender: str, timeout_s: float = SMTP_TIMEOUT_S) -> None:
        self.url, self.sender, self.timeout_s = url, sender, timeout_s

    def send(self, message: EmailMessage, to: str) -> None:
        """Deliver `message` to `to` (blocking: call it in a thread); SmtpFailed if not."""
        url = self.url
        where = f"the SMTP server {url.host}:{url.port}"
        try:
            smtp = self._connect()
            with smtp:
                if url.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if url.user is not None:
                    password = "" if url.password is None else url.password.reveal()
                    smtp.login(url.user, password)
                smtp.send_message(message, from_addr=self.sender, to_addrs=[to])
        except smtplib.SMTPAuthenticationError as exc:
            raise SmtpFailed(f"{where} refused the login ({exc.smtp_code})") from None
        except smtplib.SMTPRecipientsRefused:
            raise SmtpFailed(f"{where} refused the recipient") from None
        except smtplib.SMTPResponseException as exc:
            raise SmtpFailed(f"{where} refused the message ({exc.smtp_code})") from None
        except smtplib.SMTPServerDisconnected:
            # smtplib's word for a reply that never came within the timeout, too.
            raise SmtpFailed(
                f"{where} closed the connection or did not answer within {self.timeout_s:g} s"
            ) from None
        except smtplib.SMTPException as exc:
            raise SmtpFailed(f"{where} failed: {type(exc).__name__}") from None
        except OSError as exc:  # refused, timed out, TLS
            reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
            raise SmtpFailed(f"could not reach {where} ({reason})") from None

    def _connect(self) -> smtplib.SMTP:
        url = self.url
        if url.security == "tls":
            context = ssl.create_default_context()
            return smtplib.SMTP_SSL(url.host, url.port, timeout=self.timeout_s, context=context)
        return smtplib.SMTP(url.host, url.port, timeout=self.timeout_s)


def addressed(result: RenderResult, sender: str, to: str, domain: str) -> EmailMessage:
    """The render's MIME message addressed to `to`, its subject marked as a test."""
    message = mime(result)
    for name in NOT_IN_TESTS:
        del message[name]
    message.replace_header("Subject", SUBJECT_PREFIX + result.subject)
    message["From"] = sender
    message["To"] = to
    if "Message-ID" not in message:
        message["Message-ID"] = make_msgid(domain=domain)
    return message


def routes(services: Services) -> list[Route]:
    settings = services.settings
    url = settings.smtp_url
    mailer = None
    if url is not None:
        mailer = Mailer(url, url.sender or f"studio@{settings.message_id_domain}")
    limit = RateLimit(TESTS_PER_MINUTE, 60.0)
    sent = services.metrics.studio_tests
    previews = services.previews

    async def send(request: Request) -> Response:
        """`POST /v1/preview/send`: a preview body plus `to`."""
        if mailer is None:
            raise Conflict("sending tests is off: set KAIROS_SMTP_URL", code="smtp_not_configured")
        doc = await _json_body(request)
        if not isinstance(doc, dict):
            raise Unprocessable("the body must be a JSON object", code="invalid_body")
        to = doc.pop("to", None)
        if not valid_address(to):
            raise Unprocessable(
                "to: one plain email address, like someone@example.com",
                code="invalid_address",
                field="to",
            )
        for key in PREVIEW_ONLY:
            doc.pop(key, None)
        template = doc.get("template")
        # What the page shows, never annotated: the message a reader would get.
        result = (await previews.preview(doc, annotated=False)).result
        wait = limit.take()
        if wait:
            sent.labels("limited").inc()
            refusal = f"at most {TESTS_PER_MINUTE} tests a minute: retry later"
            return JSONResponse(
                {"error": {"code": "rate_limited", "message": refusal}},
                status_code=429,
                headers={"Retry-After": str(max(1, math.ceil(wait))), **NO_STORE},
            )
        message = addressed(result, mailer.sender, to, settings.message_id_domain)
        started = time.perf_counter()
        try:
            await asyncio.to_thread(mailer.send, message, to)
        except SmtpFailed as exc:
            sent.labels("failed").inc()
            log.warning("test of template %s not sent: %s", template, exc.message)
            raise
        sent.labels("sent").inc()
        # Never the address: the log names the template alone.
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("test of template %s sent in %.0f ms", template, elapsed_ms)
        return JSONResponse({"sent": True, "to": to, "message_id": message["Message-ID"]})

    return [Route("/v1/preview/send", send, methods=["POST"])]
