"""`KAIROS_SMTP_URL` parsed at start-up (app/settings/smtp.py): schemes, ports, the login
percent-decoded, the sender; a bad URL stops the server without repeating the URL."""

from __future__ import annotations

import pytest

from app.settings import ConfigError
from app.settings.smtp import smtp_url, valid_address

PASSWORD = "s3cret-pa55"


@pytest.mark.parametrize(
    ("url", "host", "port", "security", "user", "password", "sender"),
    [
        ("smtp://mail.example.com", "mail.example.com", 25, "plain", None, None, None),
        ("smtp://127.0.0.1:2525", "127.0.0.1", 2525, "plain", None, None, None),
        ("smtp+starttls://mail.example.com", "mail.example.com", 587, "starttls", None, None, None),
        ("SMTPS://Mail.Example.com", "mail.example.com", 465, "tls", None, None, None),
        ("smtp://[::1]:1025", "::1", 1025, "plain", None, None, None),
        ("smtps://[2001:db8::1]", "2001:db8::1", 465, "tls", None, None, None),
        (
            "smtps://me%40example.com:p%40ss%3Aw%2Fd@smtp.example.com:465?from=studio@example.com",
            "smtp.example.com", 465, "tls", "me@example.com", "p@ss:w/d", "studio@example.com",
        ),
        ("smtp://apikey:@smtp.example.com", "smtp.example.com", 25, "plain", "apikey", "", None),
    ],
)  # fmt: skip
def test_a_valid_url(url, host, port, security, user, password, sender):
    parsed = smtp_url("KAIROS_SMTP_URL", url)
    assert (parsed.host, parsed.port, parsed.security) == (host, port, security)
    assert parsed.user == user and parsed.sender == sender
    if password is None:
        assert parsed.password is None
    else:
        assert parsed.password is not None and parsed.password.reveal() == password
        assert user is None or user not in repr(parsed)
        assert not password or password not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        (f"http://me:{PASSWORD}@mail.example.com", "must start with smtp://"),
        (f"mail.example.com:{PASSWORD}", "must start with smtp://"),
        (f"smtp://me:{PASSWORD}@", "names no host"),
        (f"smtp://me:{PASSWORD}@mail.example.com:25x", "port that is not a number"),
        (f"smtp://me:{PASSWORD}@mail.example.com:٢٥", "port that is not a number"),
        (f"smtp://me:{PASSWORD}@mail.example.com:0", "port out of range"),
        (f"smtp://me:{PASSWORD}@mail.example.com:65536", "port out of range"),
        (f"smtp://me:{PASSWORD}@mail.example.com/inbox", "takes no path"),
        (f"smtp://me:{PASSWORD}@mail.example.com?to=a@example.com", "one query parameter"),
        (f"smtp://me:{PASSWORD}@mail.example.com?from=nobody", "from= is not a plain"),
        (f"smtp://me:{PASSWORD}@mail.example.com?from=a@b.com%0d%0aBcc:c@d.com", "from= is not"),
    ],
)
def test_a_bad_url_is_refused_without_repeating_it(url, says):
    with pytest.raises(ConfigError) as info:
        smtp_url("KAIROS_SMTP_URL", url)
    message = str(info.value)
    assert message.startswith("KAIROS_SMTP_URL") and says in message
    assert PASSWORD not in message and "mail.example.com" not in message


def test_the_setting_is_read_and_never_shows_its_password(settings):
    s = settings(KAIROS_SMTP_URL=f"smtp://me:{PASSWORD}@127.0.0.1:2525?from=studio@example.com")
    assert s.smtp_url is not None and s.smtp_url.port == 2525
    assert s.smtp_url.sender == "studio@example.com"
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    assert settings().smtp_url is None
    with pytest.raises(ConfigError, match="^KAIROS_SMTP_URL must start with"):
        settings(KAIROS_SMTP_URL=f"ftp://me:{PASSWORD}@host")


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "first.last+tag@mail.example.co.uk", "x_y-z@sub-domain.example.org"],
)
def test_plain_addresses_pass(address):
    assert valid_address(address)
