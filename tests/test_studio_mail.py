"""The studio's "Send a test" (`POST /v1/preview/send`) against a real SMTP server
(aiosmtpd on a free port, with a login): what arrives is the preview's MIME message,
parsed back with the email package; the failures answer as the contract says."""

from __future__ import annotations

import asyncio
import email
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from conftest import SettingsFactory
from support import API_KEY, AUTH, assert_error, free_port, serve

from app.app import create_app
from app.settings import PROJECT_ROOT
from app.settings.smtp import smtp_url
from app.studio.mail import TESTS_PER_MINUTE, Mailer, RateLimit, SmtpFailed

USER, PASSWORD = "designer", "p@ss:w0rd/secret"
# As KAIROS_SMTP_URL carries them: percent-encoded.
LOGIN = "designer:p%40ss%3Aw0rd%2Fsecret"
SENDER = "studio@shop.example.com"
TO = "reviewer@example.com"
PUBLIC_URL = "https://kairos.example.com"  # https: renders have their AMP part

# The tests' SMTP server takes a login over plain SMTP, which aiosmtpd warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


class Inbox:
    """An aiosmtpd handler keeping what it was sent, and a login check."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[str] = []
        self.delay_s = 0.0  # a slow server's pause before it answers DATA
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay_s)
        with self._lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == USER.encode()
            and data.password == PASSWORD.encode()
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok, handled=False)

    def messages(self) -> list[EmailMessage]:
        return [
            email.message_from_bytes(e.original_content or b"", policy=default)
            for e in self.envelopes
        ]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 that requires a login (over plain SMTP, as a
    test's server may)."""
    handler, port = Inbox(), free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=handler.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def smtp_setting(port: int, login: str = LOGIN) -> str:
    return f"smtp://{login}@127.0.0.1:{port}?from={SENDER}"


@pytest.fixture
async def client(
    settings: SettingsFactory, inbox: tuple[Inbox, int]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_SMTP_URL=smtp_setting(inbox[1])))
    async with serve(app) as c:
        yield c


async def send(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/preview/send", json=body, headers=AUTH)


async def test_a_test_arrives_as_the_previews_mime_message(client, inbox, caplog):
    handler, _ = inbox
    body = {"template": "welcome", "sample": "full"}
    preview = await client.post(
        "/v1/preview", json=body, headers={**AUTH, "Accept": "message/rfc822"}
    )
    assert preview.status_code == 200
    shown = email.message_from_bytes(preview.content, policy=default)
    with caplog.at_level(logging.INFO, logger="kairos"):
        r = await send(client, **body, to=TO)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["sent"] is True and answer["to"] == TO

    [envelope] = handler.envelopes
    assert handler.logins == [USER]
    assert envelope.mail_from == SENDER and envelope.rcpt_tos == [TO]
    [message] = handler.messages()
    assert message["To"] == TO and message["From"] == SENDER
    assert message["Message-ID"] == answer["message_id"]
    assert message["Subject"] == f"[Test] {shown['Subject']}"
    assert "Ada" in message["Subject"] or "Kairos" in message["Subject"]
    # The parts a render's MIME has, in its order, with the same content.
    assert message.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in message.iter_parts()]
    assert types == [p.get_content_type() for p in shown.iter_parts()]
    assert types == ["text/plain", "text/x-amp-html", "text/html"]
    text, amp, html = (part.get_content() for part in message.iter_parts())
    assert "Ada" in text and "Ada" in html
    assert "<html ⚡4email" in amp and "<amp-list" in amp
    assert html.lstrip().lower().startswith("<!doctype html")
    # A mail client's unsubscribe button must not unsubscribe the reader previewed.
    assert "List-Unsubscribe" in shown
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message

    logged = [rec.getMessage() for rec in caplog.records if rec.name == "kairos.studio"]
    assert len(logged) == 1 and "welcome" in logged[0]
    every_line = "\n".join(rec.getMessage() for rec in caplog.records)
    assert TO not in every_line and PASSWORD not in every_line and "p%40ss" not in every_line

    metrics = (await client.get("/metrics")).text
    assert 'kairos_studio_tests_sent_total{result="sent"} 1.0' in metrics


async def test_an_unsaved_edit_is_sent_as_the_preview_shows_it(client, inbox):
    handler, _ = inbox
    source = json.loads((PROJECT_ROOT / "templates/welcome/template.json").read_text())
    source["subject"] = "Edited for {{ first_name }}"
    r = await send(
        client,
        template="welcome",
        sample="new_member",
        files={"template.json": json.dumps(source)},
        annotate=True,
        to=TO,
    )
    assert r.status_code == 200, r.text
    [message] = handler.messages()
    assert message["Subject"] == "[Test] Edited for Grace"
    # Sent mail never carries the studio's block marks.
    html = message.get_body(preferencelist=("html",))
    assert html is not None and "data-kairos-block" not in html.get_content()


async def test_an_inline_profile_is_the_reader_of_the_test(client, inbox):
    handler, _ = inbox
    profile = {"first_name": "Lin", "email": "lin@example.org"}
    r = await send(client, template="welcome", profile=profile, to=TO)
    assert r.status_code == 200, r.text
    [message] = handler.messages()
    text = message.get_body(preferencelist=("plain",))
    assert text is not None and "Lin" in text.get_content()


async def test_without_smtp_url_tests_are_off(settings, inbox):
    async with serve(create_app(settings())) as c:
        r = await send(c, template="welcome", sample="full", to=TO)
    assert_error(r, 409, "smtp_not_configured")
    assert inbox[0].envelopes == []


@pytest.mark.parametrize(
    "to",
    [
        None,
        "",
        42,
        ["a@example.com"],
        "not-an-address",
        "someone@localhost",
        "someone@example.com\r\nBcc: victim@example.org",
        "someone@example.com, other@example.com",
        "Someone <someone@example.com>",
        '"quoted"@example.com',
        "émile@example.com",
        "a..b@example.com",
        "a@-example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
async def test_a_bad_address_is_422(client, inbox, to):
    body: dict[str, Any] = {"template": "welcome", "sample": "full"}
    if to is not None:
        body["to"] = to
    r = await send(client, **body)
    error = assert_error(r, 422, "invalid_address")
    assert error["field"] == "to"
    assert inbox[0].envelopes == []


async def test_a_broken_preview_body_is_refused_before_sending(client, inbox):
    r = await send(client, template="welcome", sample="no_such_sample", to=TO)
    assert_error(r, 404)
    r = await send(client, template="no_such_template", to=TO)
    assert_error(r, 404)
    r = await send(client, template="welcome", sample="full", to=TO, colour="red")
    assert_error(r, 422)
    assert inbox[0].envelopes == []


async def test_the_route_needs_an_api_key(client, inbox):
    body = {"template": "welcome", "sample": "full", "to": TO}
    r = await client.post("/v1/preview/send", json=body)
    assert_error(r, 401)
    r = await client.post(
        "/v1/preview/send", json=body, headers={"Authorization": f"Bearer {API_KEY}x"}
    )
    assert_error(r, 401)
    assert inbox[0].envelopes == []


async def test_a_server_that_is_down_is_502_without_the_password(settings):
    port = free_port()  # nothing listens there
    app = create_app(settings(KAIROS_SMTP_URL=smtp_setting(port)))
    async with serve(app) as c:
        r = await send(c, template="welcome", sample="full", to=TO)
        metrics = (await c.get("/metrics")).text
    error = assert_error(r, 502, "smtp_failed")
    assert "could not reach" in error["message"]
    assert PASSWORD not in r.text and "p%40ss" not in r.text and USER not in r.text
    assert 'kairos_studio_tests_sent_total{result="failed"} 1.0' in metrics


async def test_a_refused_login_is_502_without_the_password(settings, inbox):
    wrong = "designer:not-the-password"
    app = create_app(settings(KAIROS_SMTP_URL=smtp_setting(inbox[1], wrong)))
    async with serve(app) as c:
        r = await send(c, template="welcome", sample="full", to=TO)
    error = assert_error(r, 502, "smtp_failed")
    assert "refused the login (535)" in error["message"]
    assert "not-the-password" not in r.text and PASSWORD not in r.text
    assert inbox[0].envelopes == []


@pytest.mark.parametrize("scheme", ["smtps", "smtp+starttls"])
async def test_tls_asked_of_a_plain_server_is_502(settings, inbox, scheme):
    # The server speaks plain SMTP only: a TLS handshake or STARTTLS cannot succeed,
    # and the login is never sent in the clear instead.
    url = f"{scheme}://{LOGIN}@127.0.0.1:{inbox[1]}"
    async with serve(create_app(settings(KAIROS_SMTP_URL=url))) as c:
        r = await send(c, template="welcome", sample="full", to=TO)
    assert_error(r, 502, "smtp_failed")
    assert inbox[0].logins == [] and inbox[0].envelopes == []


async def test_more_than_the_limit_a_minute_is_429(client, inbox):
    body = {"template": "welcome", "sample": "full", "to": TO}
    for _ in range(TESTS_PER_MINUTE):
        r = await send(client, **body)
        assert r.status_code == 200, r.text
    r = await send(client, **body)
    assert_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert len(inbox[0].envelopes) == TESTS_PER_MINUTE
    metrics = (await client.get("/metrics")).text
    assert 'kairos_studio_tests_sent_total{result="limited"} 1.0' in metrics


async def test_a_slow_server_does_not_hold_up_other_requests(client, inbox):
    handler, _ = inbox
    handler.delay_s = 2.0  # long enough for a loaded machine to answer /healthz first
    sending = asyncio.create_task(send(client, template="welcome", sample="full", to=TO))
    await asyncio.sleep(0.2)  # the send is in its DATA, waiting for the server
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert not sending.done(), "the send should still be waiting for the slow server"
    r = await sending
    assert r.status_code == 200, r.text
    assert len(handler.envelopes) == 1


def test_a_server_that_never_answers_times_out():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections, never says hello
        port = silent.getsockname()[1]
        mailer = Mailer(smtp_url("KAIROS_SMTP_URL", f"smtp://127.0.0.1:{port}"), SENDER, 0.3)
        message = EmailMessage()
        message["Subject"] = "[Test] x"
        message.set_content("x")
        with pytest.raises(SmtpFailed, match=r"did not answer within 0.3 s"):
            mailer.send(message, TO)


def test_the_limit_frees_a_slot_a_window_after_each_send():
    now = [0.0]
    limit = RateLimit(2, 60.0, clock=lambda: now[0])
    assert limit.take() == 0.0
    now[0] = 1.0
    assert limit.take() == 0.0
    now[0] = 2.0
    assert limit.take() == pytest.approx(58.0)  # until the first send is a minute old
    now[0] = 60.0
    assert limit.take() == 0.0
    assert limit.take() == pytest.approx(1.0)  # the second still counts until 61 s
    now[0] = 121.0
    assert limit.take() == 0.0 and limit.take() == 0.0
