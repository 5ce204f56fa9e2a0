"""`KAIROS_SMTP_URL`: the SMTP server the designer's studio sends its tests through, and
the one check of an email address that both the URL's sender and a test's recipient pass.

`smtp://host:port` speaks plain SMTP, `smtp+starttls://` upgrades with STARTTLS,
`smtps://` is TLS from the first byte. `user:password@` (percent-encoded) logs in;
`?from=studio@example.com` names the sender. The password is a `Secret`, and no message
repeats the URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from urllib.parse import parse_qsl, unquote, urlsplit

from app.settings.values import ConfigError, Secret

# The scheme's security and its default port.
SCHEMES = MappingProxyType(
    {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}
)

# One plain address: a dot-atom local part and a DNS domain with a dot. Quoted local
# parts, comments, display names and non-ASCII addresses are refused: nothing a header
# or an SMTP command could be smuggled through.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"({_LOCAL})@({_LABEL}(?:\.{_LABEL})+)")
MAX_ADDRESS = 254


def valid_address(text: object) -> bool:
    """Whether `text` is one plain email address (`someone@example.com`)."""
    if not isinstance(text, str) or len(text) > MAX_ADDRESS:
        return False
    found = ADDRESS.fullmatch(text)
    return found is not None and len(found.group(1)) <= 64


@dataclass(frozen=True, repr=False)
class SmtpUrl:
    """Where and how to send: `security` is `plain`, `starttls` or `tls`; `sender`
    is None when the URL names none (the studio then picks one)."""

    host: str
    port: int
    security: str
    user: str | None
    password: Secret | None
    sender: str | None

    def __repr__(self) -> str:
        return f"SmtpUrl({self.security}, {self.host}:{self.port})"


def smtp_url(var: str, raw: str) -> SmtpUrl:
    """Parse `raw`; a ConfigError names `var` and what is wrong, never the URL itself."""
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{var} must start with smtp://, smtp+starttls:// or smtps://")
    security, default_port = SCHEMES[scheme]
    host = parts.hostname
    # Past the login and an IPv6 literal's brackets, what follows a colon is the port.
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
    if not host:
        raise ConfigError(f"{var} names no host")
    if port_text and not (port_text.isascii() and port_text.isdigit()):
        raise ConfigError(f"{var} has a port that is not a number")
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65_536:
        raise ConfigError(f"{var} has a port out of range")
    if parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(f"{var} takes no path: smtp://user:password@host:port?from=address")
    user = unquote(parts.username) if parts.username else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    sender = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key != "from":
            raise ConfigError(f"{var} takes one query parameter, from=address")
        if not valid_address(value):
            raise ConfigError(f"{var}: from= is not a plain email address")
        sender = value
    return SmtpUrl(host, port, security, user, password, sender)
