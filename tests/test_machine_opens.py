"""Machine opens and clicks (app/campaigns/machine.py), table-driven with real user
agents: a prefetch by a privacy proxy or a scanner is kept out of the rates, a person's
open through Gmail's proxy or Outlook is not."""

from __future__ import annotations

import re

import pytest
from starlette.datastructures import Headers

from app.campaigns import machine
from app.campaigns.machine import (
    is_machine_click,
    is_machine_open,
    machine_click_reason,
    machine_open_reason,
)

APPLE_MPP = "Mozilla/5.0"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
IPHONE_MAIL = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
MAC_MAIL = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
# Outlook for Windows renders with Word and fetches images with this agent.
OUTLOOK_DESKTOP = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; "
    ".NET4.0E; Microsoft Outlook 16.0.5422; ms-office; MSOffice 16)"
)
OUTLOOK_NEW = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)"
THUNDERBIRD = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
ANDROID_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Mobile Safari/537.36"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
# The scanner strings below carry the vendor token the rule looks for; the rest of each
# string varies by version and deployment.
BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
SAFE_LINKS = (
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.12026; ms-office; Safe Links)"
)
PROOFPOINT = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
MIMECAST = "Mimecast-URL-Protect/1.0"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.0.0 Safari/537.36"
)

OPENS = [
    # (user agent, headers, the rule that fires or None for a person)
    (APPLE_MPP, {}, "apple_mpp"),
    (" Mozilla/5.0 ", {}, "apple_mpp"),  # padding does not hide the bare token
    (GMAIL_PROXY, {}, None),  # Gmail proxies on the reader's open: a person
    (IPHONE_MAIL, {}, None),  # Apple Mail with MPP off names its WebKit
    (MAC_MAIL, {}, None),
    (OUTLOOK_DESKTOP, {}, None),  # `ms-office` on an image fetch is Outlook itself
    (OUTLOOK_NEW, {}, None),
    (THUNDERBIRD, {}, None),
    (CHROME, {}, None),  # webmail in a browser
    (ANDROID_CHROME, {}, None),
    (None, {}, "no_user_agent"),
    ("", {}, "no_user_agent"),
    ("   ", {}, "no_user_agent"),
    ("curl/8.5.0", {}, "http_library"),
    ("python-requests/2.31.0", {}, "http_library"),
    ("Go-http-client/1.1", {}, "http_library"),
    ("Wget/1.21.4", {}, "http_library"),
    (HEADLESS, {}, "http_library"),
    (YAHOO_PROXY, {}, "mail_proxy_prefetch"),
    (BARRACUDA, {}, "security_scanner"),
    (SAFE_LINKS, {}, "security_scanner"),
    (PROOFPOINT, {}, "security_scanner"),
    (MIMECAST, {}, "security_scanner"),
    (CHROME, {"sec-purpose": "prefetch"}, "prefetch_header"),
    (CHROME, {"Sec-Purpose": "prefetch;anonymous-client-ip"}, "prefetch_header"),
    (CHROME, {"Purpose": "prefetch"}, "prefetch_header"),
    (THUNDERBIRD, {"X-Moz": "prefetch"}, "prefetch_header"),
    (CHROME, {"X-Purpose": "preview"}, "prefetch_header"),
    (CHROME, {"sec-fetch-dest": "image", "accept": "image/*"}, None),  # an ordinary load
    (CHROME, {"purpose": "navigate"}, None),
]


@pytest.mark.parametrize(("user_agent", "headers", "reason"), OPENS)
def test_opens(user_agent: str | None, headers: dict[str, str], reason: str | None) -> None:
    assert machine_open_reason(user_agent, headers) == reason
    assert is_machine_open(user_agent, headers) is (reason is not None)


CLICKS = [
    # (user agent, headers, method, the rule that fires or None for a person)
    (CHROME, {}, "GET", None),
    (IPHONE_MAIL, {}, "GET", None),  # a tap in Apple Mail opens Safari's request
    (THUNDERBIRD, {}, "GET", None),
    (CHROME, {}, "HEAD", "head_request"),  # scanners check with HEAD; browsers GET
    (CHROME, {}, "head", "head_request"),
    (None, {}, "HEAD", "no_user_agent"),
    (APPLE_MPP, {}, "GET", "apple_mpp"),  # no browser sends the bare token
    # Office probes the link before the browser makes the person's request.
    (OUTLOOK_DESKTOP, {}, "GET", "office_link_probe"),
    ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", {}, "GET", "office_link_probe"),
    (GMAIL_PROXY, {}, "GET", "gmail_proxy"),  # the image proxy does not follow links
    (BARRACUDA, {}, "GET", "security_scanner"),
    (SAFE_LINKS, {}, "GET", "security_scanner"),
    ("curl/8.5.0", {}, "GET", "http_library"),
    (CHROME, {"Sec-Purpose": "prefetch"}, "GET", "prefetch_header"),
]


@pytest.mark.parametrize(("user_agent", "headers", "method", "reason"), CLICKS)
def test_clicks(
    user_agent: str | None, headers: dict[str, str], method: str, reason: str | None
) -> None:
    assert machine_click_reason(user_agent, headers, method) == reason
    assert is_machine_click(user_agent, headers, method) is (reason is not None)


def test_starlette_headers_are_read_as_the_route_will_pass_them() -> None:
    headers = Headers(raw=[(b"sec-purpose", b"prefetch"), (b"user-agent", CHROME.encode())])
    assert is_machine_open(headers.get("user-agent"), headers)
    assert not is_machine_open(CHROME, Headers(raw=[(b"accept", b"image/*")]))


def test_every_reason_is_in_the_docstring_table() -> None:
    """The rule table in the module docstring is the documentation: keep it true."""
    table = set(re.findall(r"^\| \d \| `(\w+)`", machine.__doc__ or "", re.MULTILINE))
    seen = {r for *_, r in OPENS + CLICKS if r is not None}
    assert seen == table
