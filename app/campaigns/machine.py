"""Was this open or click made by a person, or by a machine acting before one?

Open and click rates are only honest when fetches nobody asked for are kept out of them.
The rules look at the request alone (user agent, headers, method), first match wins:

| # | Rule (name returned)  | Signal                                           | Open    | Click   |
|---|-----------------------|--------------------------------------------------|---------|---------|
| 1 | `no_user_agent`       | User-Agent missing or blank                      | machine | machine |
| 2 | `head_request`        | method HEAD (clicks only: a browser GETs)        | -       | machine |
| 3 | `prefetch_header`     | `Sec-Purpose: prefetch…`, `Purpose: prefetch`,   | machine | machine |
|   |                       | `X-Moz: prefetch`, `X-Purpose: preview`          |         |         |
| 4 | `apple_mpp`           | User-Agent exactly `Mozilla/5.0`                 | machine | machine |
| 5 | `mail_proxy_prefetch` | `YahooMailProxy` (Yahoo and AOL)                 | machine | machine |
| 6 | `security_scanner`    | `Barracuda`, `Mimecast`, `Proofpoint`,           | machine | machine |
|   |                       | `urldefense`, `Safe Links` / `SafeLinks`         |         |         |
| 7 | `http_library`        | curl, Wget, python-requests, urllib, aiohttp,    | machine | machine |
|   |                       | httpx, Go-http-client, Java, libwww-perl,        |         |         |
|   |                       | HeadlessChrome, PhantomJS                        |         |         |
| 8 | `office_link_probe`   | `ms-office` / `MSOffice` token                   | human   | machine |
| 9 | `gmail_proxy`         | `GoogleImageProxy`                               | human   | machine |
|   | (none)                | anything else: Apple Mail with MPP off, Outlook, | human   | human   |
|   |                       | Thunderbird, webmail in a browser                |         |         |

Why each rule, and where it comes from:

1. Every mail client and browser names itself; a fetch without a name is a script or a
   scanner.
2. Link scanners check a URL with HEAD; a person's browser navigates with GET (Apple Mail
   16's background URL check is a HEAD, live-direct-marketing.online "Apple Mail v16
   click reporting changes"; jusso-dev/Collie PR #50 uses the same rule).
3. Browsers mark speculative fetches: `Sec-Purpose: prefetch` (MDN, "Sec-Purpose";
   Chromium `prefetch_headers.cc`), the legacy `Purpose: prefetch` (Chrome) and
   `X-Moz: prefetch` (old Firefox) (MDN browser-compat data for Sec-Purpose).
4. Apple Mail Privacy Protection downloads every remote image when the message arrives,
   opened or not, through Apple's relays (SocketLabs, "Identifying Apple MPP opens";
   Word to the Wise, "Apple MPP", 2021), with a bare `Mozilla/5.0` user agent (the
   signal named in issue 12 and used by ESPs; no primary Apple source found). Apple
   Mail with MPP off sends a full WebKit string, so only the bare token is matched.
5. Yahoo's proxy is a "content fetch proxy that retrieves the page content of URLs that
   are embedded within emails" (Yahoo help SLN28749, quoted by botcrawl.com), Yahoo and
   AOL share it, and Litmus saw it retry one pixel up to 4 times ("Why do I see a spike
   in Yahoo! Mail opens?"). Counted as machine: some Yahoo readers' real opens are
   under-counted rather than prefetches counted as readers.
6. Secure email gateways open and click mail on its way to the inbox (Suped, "Which
   corporate filter appliances follow links in emails"; live-direct-marketing.online,
   "Bot clicks from security scanners: a field guide": Barracuda, Proofpoint URL
   Defense, Mimecast, Microsoft Safe Links).
7. A person does not read mail with an HTTP library or a headless browser.
8. Outlook for Windows loads images with a user agent carrying `ms-office; MSOffice 16`,
   so on an open it is a reader. On a click the same token is Office probing the link
   before it hands it to the browser, which then makes its own request; Safe Links'
   time-of-click check sends `ms-office` too (live-direct-marketing.online, "Microsoft
   Defender link click pattern"). The person's click is the browser's request.
9. Gmail fetches images through `GoogleImageProxy` when the reader opens the message, not
   on delivery (darkvisitors.com "GoogleImageProxy": a fetcher dispatched on demand;
   BotScope: "When someone opens an email ... Google fetches the image via this proxy"),
   so a Gmail proxy open is a person's open; Gmail caches the image, so later opens by
   the same reader are not seen, which unique opens do not need. The proxy does not
   follow links, so on a click URL it is a preview fetch, not a click.

Not used: IP ranges. MPP egresses through Apple and partner CDN ranges that also carry
iCloud Private Relay browsing (Word to the Wise, "Apple MPP reporting and geolocation"),
so an address says little, and which address is the client's is the route's business.
Nor timing (a click seconds after delivery): that needs the send time, which a request
does not carry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MPP_USER_AGENT = "Mozilla/5.0"

# (header, value prefix), both lower case: a browser's speculative fetch.
PREFETCH_HEADERS = (
    ("sec-purpose", "prefetch"),
    ("purpose", "prefetch"),
    ("x-moz", "prefetch"),
    ("x-purpose", "preview"),
)

MAIL_PROXY_PREFETCH = re.compile(r"YahooMailProxy", re.IGNORECASE)
SECURITY_SCANNER = re.compile(
    r"Barracuda|Mimecast|Proofpoint|urldefense|Safe ?Links", re.IGNORECASE
)
# Anchored at a token start so "curl" inside a word (or a device name) does not match.
HTTP_LIBRARY = re.compile(
    r"(?:^|[\s(;])(?:curl|Wget|python-requests|Python-urllib|aiohttp|python-httpx|"
    r"Go-http-client|Java|libwww-perl|HeadlessChrome|PhantomJS)/",
    re.IGNORECASE,
)
OFFICE_LINK_PROBE = re.compile(r"ms-?office", re.IGNORECASE)
GMAIL_PROXY = re.compile(r"GoogleImageProxy", re.IGNORECASE)


def machine_open_reason(user_agent: str | None, headers: Mapping[str, str]) -> str | None:
    """The rule that marks a pixel fetch as a machine's (a name from the table in the
    module docstring), or None when a person opened the message."""
    return _common_reason(user_agent, headers)


def machine_click_reason(
    user_agent: str | None, headers: Mapping[str, str], method: str = "GET"
) -> str | None:
    """The rule that marks a click redirect as a machine's, or None for a person's click.
    `method` matters because Starlette answers HEAD on a GET route."""
    if not (user_agent or "").strip():
        return "no_user_agent"
    if method.upper() == "HEAD":
        return "head_request"
    reason = _common_reason(user_agent, headers)
    if reason is not None:
        return reason
    ua = user_agent or ""
    if OFFICE_LINK_PROBE.search(ua):
        return "office_link_probe"
    if GMAIL_PROXY.search(ua):
        return "gmail_proxy"
    return None


def is_machine_open(user_agent: str | None, headers: Mapping[str, str]) -> bool:
    """True when the open pixel was fetched by a proxy, prefetcher or scanner rather than
    on a person's open: such an open is recorded with `machine_open` and kept out of
    the open rate."""
    return machine_open_reason(user_agent, headers) is not None


def is_machine_click(
    user_agent: str | None, headers: Mapping[str, str], method: str = "GET"
) -> bool:
    """True when a click redirect was followed by a scanner or prefetcher, not a person."""
    return machine_click_reason(user_agent, headers, method) is not None


def _common_reason(user_agent: str | None, headers: Mapping[str, str]) -> str | None:
    """Rules 1 and 3-7, shared by opens and clicks."""
    ua = (user_agent or "").strip()
    if not ua:
        return "no_user_agent"
    if _is_prefetch(headers):
        return "prefetch_header"
    if ua == MPP_USER_AGENT:
        return "apple_mpp"
    if MAIL_PROXY_PREFETCH.search(ua):
        return "mail_proxy_prefetch"
    if SECURITY_SCANNER.search(ua):
        return "security_scanner"
    if HTTP_LIBRARY.search(ua):
        return "http_library"
    return None


def _is_prefetch(headers: Mapping[str, str]) -> bool:
    # Any mapping is accepted: Starlette's Headers are lower-cased already, a dict from a
    # test or another caller may not be.
    for key, value in headers.items():
        name = key.lower()
        for header, prefix in PREFETCH_HEADERS:
            if name == header and value.strip().lower().startswith(prefix):
                return True
    return False
