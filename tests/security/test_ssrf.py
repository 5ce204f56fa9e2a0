"""Server-side fetches never reach what they must not. Kairos fetches by URL in two
places (grep httpx in app/: product images, `app/images/sources.py`; the recommendations
model, `app/recs/upstream.py`; the CLI's clients call the operator's own server). Both
surfaces are driven through the real app, against real local servers that count what
reaches them:

- the allow-list (`KAIROS_UPSTREAM_HOSTS`): loopback, private, link-local, CGNAT and
  IPv4-in-IPv6 addresses, decimal, octal and hex spellings, userinfo tricks and other
  schemes are never fetched, not even tried;
- the address check (`app/upstream_client.py`): an allowed name resolving to any
  non-public address is refused before a connection is made, also when the DNS answer
  changes between two resolutions (rebinding), unless the operator declared the name
  private;
- redirects are never followed; proxies from the environment are never used.

Names are resolved through a stub (`socket.getaddrinfo`; the tests have no network), and
every TCP connection an upstream client opens is seen by `connects`: loopback ones are
really made, to the tests' servers; any other is refused as a machine without a route
would refuse it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from typing import Any

import httpcore
import httpx
import orjson
import pytest
from support import Upstream, feed_url, image_url, listening, serve
from test_images import _with_product, assert_fallback, centre_of_image_area, decode, png

from app.app import create_app
from app.settings import ConfigError

RED = (220, 20, 20)
PUBLIC = "93.184.215.14"  # a public address (not reachable from the tests)
NAME = "images.example.com"
LONG_BUDGET = "2000"  # a loaded test machine must not turn a refusal into a timeout


class Resolver:
    """`socket.getaddrinfo` answering `answers[name]` for the names it knows: one list of
    addresses per call in turn, the last repeated. Counts the calls per name."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: Counter[str] = Counter()
        self._real = real

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in self.answers:
            return self._real(host, port, *args, **kwargs)
        self.asked[name] += 1
        turns = self.answers[name]
        addresses = turns.pop(0) if len(turns) > 1 else turns[0]
        number = int(port or 0)
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, number, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, number))
            for a in addresses
        ]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Resolver:
    resolver = Resolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return resolver


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The address of every TCP connection an upstream client tries."""
    seen: list[str] = []
    real = httpcore.AnyIOBackend.connect_tcp

    async def connect_tcp(
        self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        seen.append(host)
        if host != "127.0.0.1":
            raise httpcore.ConnectError(f"{host}: no route from the tests")
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", connect_tcp)
    return seen


async def product_card(settings: Any, url: str, **env: Any) -> httpx.Response:
    """The product card of a reader whose recommended product's `image_url` is `url`."""
    app = create_app(settings(KAIROS_BUDGET_MS=LONG_BUDGET, **env))
    async with serve(app) as client:
        await _with_product(client, app, "uma", image_url=url)
        r = await client.get(image_url("product", "uma"))
    assert r.status_code == 200, r.text
    return r


def assert_not_fetched(r: httpx.Response) -> None:
    """The card drawn with its placeholder: the URL was not even tried."""
    assert "x-kairos-fallback" not in r.headers, r.headers
    assert centre_of_image_area(decode(r, "png")) != RED


# --- the allow-list: never tried -----------------------------------------------------------

# Each points at the counting server ({port}) or somewhere no fetch may go; the allow-list
# holds a name only, so every one of these must be left untried.
NOT_ALLOWED = {
    "loopback": "http://127.0.0.1:{port}/red.png",
    "loopback, short": "http://127.1:{port}/red.png",
    "loopback, IPv6": "http://[::1]:{port}/red.png",
    "localhost": "http://localhost:{port}/red.png",
    "localhost, trailing dot": "http://localhost.:{port}/red.png",
    "private 10/8": "http://10.0.0.1/red.png",
    "private 172.16/12": "http://172.16.0.1/red.png",
    "private 192.168/16": "http://192.168.1.1/red.png",
    "link-local metadata": "http://169.254.169.254/latest/meta-data/",
    "link-local IPv6": "http://[fe80::1]/red.png",
    "CGNAT 100.64/10": "http://100.64.0.1/red.png",
    "IPv4-mapped IPv6": "http://[::ffff:127.0.0.1]:{port}/red.png",
    "IPv4-mapped IPv6, hex": "http://[::ffff:7f00:1]:{port}/red.png",
    "decimal": "http://2130706433:{port}/red.png",
    "octal": "http://0177.0.0.1:{port}/red.png",
    "hex": "http://0x7f.1:{port}/red.png",
    "hex, dotted": "http://0x7f.0x0.0x0.0x1:{port}/red.png",
    "zero address": "http://0.0.0.0:{port}/red.png",
    "userinfo naming the allowed host": f"http://{NAME}@127.0.0.1:{{port}}/red.png",
    "userinfo with a backslash": f"http://127.0.0.1:{{port}}\\@{NAME}/red.png",
    "allowed name as a subdomain": f"http://{NAME}.127.0.0.1.nip.io:{{port}}/red.png",
    "allowed name as a prefix": f"http://{NAME}x:{{port}}/red.png",
    "scheme-relative": "//127.0.0.1:{port}/red.png",
    "file": "file:///etc/passwd",
    "file with the allowed host": f"file://{NAME}/etc/passwd",
    "gopher": f"gopher://{NAME}:{{port}}/_GET%20/red.png",
    "ftp": f"ftp://{NAME}/red.png",
    "data": "data:image/png;base64,iVBORw0KGgo=",
    "no host": "http:///red.png",
}


@pytest.mark.parametrize("url", NOT_ALLOWED.values(), ids=NOT_ALLOWED.keys())
async def test_an_image_off_the_allow_list_is_never_tried(settings, connects, url):
    async with Upstream() as up:
        up.route("/red.png", png(RED))
        r = await product_card(settings, url.format(port=up.port), KAIROS_UPSTREAM_HOSTS=NAME)
        assert_not_fetched(r)
        assert sum(up.requests.values()) == 0
    assert connects == []


# --- the address check: an allowed name that leads somewhere it must not -------------------

NOT_PUBLIC = {
    "loopback": ["127.0.0.1"],
    "loopback, elsewhere in 127/8": ["127.0.0.2"],
    "loopback IPv6": ["::1"],
    "private 10/8": ["10.1.2.3"],
    "private 172.16/12": ["172.16.5.4"],
    "private 172.16/12, its end": ["172.31.255.255"],
    "private 192.168/16": ["192.168.0.10"],
    "link-local metadata": ["169.254.169.254"],
    "link-local IPv6": ["fe80::1"],
    "unique local IPv6": ["fc00::1"],
    "CGNAT 100.64/10": ["100.64.0.1"],
    "CGNAT 100.64/10, its end": ["100.127.255.254"],
    "IPv4-mapped loopback": ["::ffff:127.0.0.1"],
    "IPv4-mapped private": ["::ffff:10.0.0.1"],
    "NAT64 of the metadata address": ["64:ff9b::a9fe:a9fe"],
    "6to4 of loopback": ["2002:7f00:1::"],
    "unspecified": ["0.0.0.0"],  # noqa: S104 - an answer, not a bind
    "multicast": ["224.0.0.1"],
    "broadcast": ["255.255.255.255"],
    "benchmarking 198.18/15": ["198.18.0.1"],
    "public first, loopback second": [PUBLIC, "127.0.0.1"],
}


@pytest.mark.parametrize("addresses", NOT_PUBLIC.values(), ids=NOT_PUBLIC.keys())
async def test_an_allowed_name_at_a_non_public_address_is_refused_before_connecting(
    settings, dns, connects, addresses
):
    dns.answers[NAME] = [addresses]
    async with Upstream() as up:
        up.route("/red.png", png(RED))
        url = f"http://{NAME}:{up.port}/red.png"
        r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS=NAME)
        assert_fallback(r, "product", "upstream")
        assert sum(up.requests.values()) == 0
    assert dns.asked[NAME] == 1
    assert connects == []


@pytest.mark.parametrize(
    "host", ["localhost", "2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"]
)
async def test_loopback_spelled_otherwise_on_the_allow_list_is_still_refused(
    settings, connects, host
):
    # The system resolver reads these as 127.0.0.1 (no stub here): only an IP address
    # written plainly is reached as written, and none of these is.
    async with Upstream() as up:
        up.route("/red.png", png(RED))
        url = f"http://{host}:{up.port}/red.png"
        r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS=host)
        assert_fallback(r, "product", "upstream")
        assert sum(up.requests.values()) == 0
    assert connects == []


@pytest.mark.parametrize("address", [PUBLIC, f"::ffff:{PUBLIC}"], ids=["IPv4", "IPv4-mapped"])
async def test_a_public_address_is_connected_to_as_resolved(settings, dns, connects, address):
    dns.answers[NAME] = [[address]]
    r = await product_card(settings, f"http://{NAME}/red.png", KAIROS_UPSTREAM_HOSTS=NAME)
    assert_fallback(r, "product", "upstream")  # the tests have no route to it
    assert connects == [str(ip_address(address))]


async def test_a_name_declared_private_is_fetched_at_its_private_address(settings, dns, connects):
    dns.answers[NAME] = [["127.0.0.1"]]
    async with Upstream() as up:
        up.route("/red.png", png(RED))
        url = f"http://{NAME}:{up.port}/red.png"
        r = await product_card(
            settings, url, KAIROS_UPSTREAM_HOSTS=NAME, KAIROS_UPSTREAM_PRIVATE_HOSTS=NAME
        )
        assert "x-kairos-fallback" not in r.headers
        assert centre_of_image_area(decode(r, "png")) == RED
        assert up.requests["/red.png"] == 1
    assert connects == ["127.0.0.1"]


async def test_an_ip_address_on_the_allow_list_is_reached_as_written(settings, connects):
    async with Upstream() as up:
        url = up.route("/red.png", png(RED))
        r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS=f"127.0.0.1:{up.port}")
        assert centre_of_image_area(decode(r, "png")) == RED
    assert connects == ["127.0.0.1"]


def test_a_private_host_that_is_not_an_upstream_host_stops_the_start(settings):
    with pytest.raises(ConfigError, match="KAIROS_UPSTREAM_PRIVATE_HOSTS"):
        create_app(
            settings(KAIROS_UPSTREAM_HOSTS=NAME, KAIROS_UPSTREAM_PRIVATE_HOSTS="intranet.local")
        )


async def test_dns_rebinding_cannot_lead_a_fetch_to_a_private_address(settings, dns, connects):
    # First answer public, every later one loopback (where the counting server listens):
    # a check on one resolution and a connection on another would reach the server.
    dns.answers[NAME] = [[PUBLIC], ["127.0.0.1"]]
    async with Upstream() as up:
        for path in ("/a.png", "/b.png"):  # two servers' first fetches
            up.route(path, png(RED))
            url = f"http://{NAME}:{up.port}{path}"
            r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS=NAME)
            assert_fallback(r, "product", "upstream")
        assert sum(up.requests.values()) == 0
    assert dns.asked[NAME] == 2  # once per connection, and the first went where it said
    assert connects == [PUBLIC]


# --- redirects -----------------------------------------------------------------------------

REDIRECTS = {
    "to loopback": "http://127.0.0.1:{other}/secret",
    "to IPv6 loopback": "http://[::1]:{other}/secret",
    "to the metadata service": "http://169.254.169.254/latest/meta-data/",
    "to a private network": "http://10.0.0.1/",
    "to a file": "file:///etc/passwd",
    "to the same allowed server": "http://127.0.0.1:{port}/red.png",
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", REDIRECTS.values(), ids=REDIRECTS.keys())
async def test_an_image_redirect_is_never_followed(settings, connects, status, target):
    async with Upstream() as up, Upstream() as other:
        other.route("/secret", png(RED))
        up.route("/red.png", png(RED))
        location = target.format(port=up.port, other=other.port)
        url = up.route("/moved.png", status=status, headers={"Location": location})
        r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS="127.0.0.1")
        assert_fallback(r, "product", "upstream")
        assert dict(up.requests) == {"/moved.png": 1}
        assert sum(other.requests.values()) == 0
    assert connects == ["127.0.0.1"]


# --- the recommendations model -------------------------------------------------------------


class Model:
    """A recommendations model on 127.0.0.1 that reads each whole request, counts it and
    answers `answer` (raw HTTP/1.1)."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests: list[bytes] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*([0-9]+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            self.requests.append(head)
            writer.write(self.answer)
            await writer.drain()
        writer.close()


def ranking(status: str = "200 OK", extra: str = "") -> bytes:
    body = orjson.dumps(["SKU-7"])
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@contextlib.asynccontextmanager
async def model_server(answer: bytes) -> AsyncIterator[Model]:
    model = Model(answer)
    async with listening(model.handle) as model.port:
        yield model


async def recs_results(settings: Any, url: str, **env: Any) -> Counter[str]:
    """Ada's recommendations feed asked once with the model at `url`: the model's
    results as counted in /metrics."""
    app = create_app(
        settings(
            KAIROS_RECS_URL=url,
            KAIROS_RECS_TIMEOUT_MS="1000",
            KAIROS_BUDGET_MS=LONG_BUDGET,
            **env,
        )
    )
    async with serve(app) as client:
        r = await client.get(feed_url("recommendations", "ada"))
        assert r.status_code == 200 and "x-kairos-fallback" not in r.headers, r.headers
        metrics = (await client.get("/metrics")).text
    found = re.findall(r'^kairos_recs_upstream_total\{result="(\w+)"\} (\S+)$', metrics, re.M)
    return Counter({result: int(float(n)) for result, n in found if float(n)})


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.0.0.7"], ["169.254.169.254"], ["::ffff:127.0.0.1"], ["100.64.0.1"]],
    ids=["loopback", "private", "metadata", "IPv4-mapped", "CGNAT"],
)
async def test_the_model_at_a_non_public_address_is_never_asked(settings, dns, connects, addresses):
    dns.answers["recs.example.com"] = [addresses]
    async with model_server(ranking()) as model:
        url = f"http://recs.example.com:{model.port}/rank"
        results = await recs_results(settings, url, KAIROS_UPSTREAM_HOSTS="recs.example.com")
        assert model.requests == []
    assert results == {"unavailable": 1}
    assert connects == []


async def test_the_model_declared_private_is_asked(settings, dns, connects):
    dns.answers["recs.example.com"] = [["127.0.0.1"]]
    async with model_server(ranking()) as model:
        url = f"http://recs.example.com:{model.port}/rank"
        results = await recs_results(
            settings,
            url,
            KAIROS_UPSTREAM_HOSTS="recs.example.com",
            KAIROS_UPSTREAM_PRIVATE_HOSTS="recs.example.com",
        )
        assert len(model.requests) == 1
    assert results == {"ok": 1}
    assert connects == ["127.0.0.1"]


async def test_the_models_redirect_is_never_followed(settings, connects):
    async with model_server(b"") as other:
        moved = ranking("307 Temporary Redirect", f"Location: http://127.0.0.1:{other.port}/\r\n")
        async with model_server(moved) as model:
            url = f"http://127.0.0.1:{model.port}/rank"
            results = await recs_results(settings, url, KAIROS_UPSTREAM_HOSTS="127.0.0.1")
            assert len(model.requests) == 1
        assert other.requests == []
    assert results == {"status": 1}
    assert connects == ["127.0.0.1"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/_x",
        "ftp://127.0.0.1/rank",
        "http://127.0.0.1/rank",  # not on the allow-list
        "http://169.254.169.254/latest/meta-data/",
        f"http://{NAME}/rank\x7f",  # allowed, but no HTTP client could send it
    ],
)
def test_a_model_url_that_is_not_allowed_stops_the_start(settings, url):
    with pytest.raises(ConfigError, match="KAIROS_RECS_URL"):
        create_app(settings(KAIROS_RECS_URL=url, KAIROS_UPSTREAM_HOSTS=NAME))


# --- proxies from the environment ------------------------------------------------------------

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Upstream]:
    """A counting server named by every proxy variable of the environment."""
    async with Upstream() as server:
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        for var in PROXY_VARS:
            monkeypatch.setenv(var, f"http://127.0.0.1:{server.port}")
        yield server


async def test_proxies_from_the_environment_are_not_used_for_images(settings, proxy):
    async with Upstream() as up:
        url = up.route("/red.png", png(RED))
        # The environment does name a proxy that a client trusting it would use.
        async with httpx.AsyncClient() as trusting:
            await trusting.get(url)
        assert sum(proxy.requests.values()) == 1
        r = await product_card(settings, url, KAIROS_UPSTREAM_HOSTS="127.0.0.1")
        assert centre_of_image_area(decode(r, "png")) == RED
        assert up.requests["/red.png"] == 1
    assert sum(proxy.requests.values()) == 1


async def test_proxies_from_the_environment_are_not_used_for_the_model(settings, proxy):
    async with model_server(ranking()) as model:
        url = f"http://127.0.0.1:{model.port}/rank"
        results = await recs_results(settings, url, KAIROS_UPSTREAM_HOSTS="127.0.0.1")
        assert len(model.requests) == 1
    assert results == {"ok": 1}
    assert sum(proxy.requests.values()) == 0
