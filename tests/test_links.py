"""Signed open-time URLs of one render (app/links.py): click links signed once per
campaign and target and shared by readers, a reader token per reader, unsafe targets
sent home, feed, image and pixel URLs for the right purpose and reader."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from support import BASE_URL, SECRET, TOKENS, click_grants

from app.images import ImageChecks, ParamError
from app.links import MAX_SLOT, Links, LinkSigner
from app.settings import Secret
from app.tokens import BadToken, Grant, Tokens

HOME = "https://shop.example/"
TARGET = "https://shop.example/p/lamp?colour=red&size=2"
CAMPAIGN = "spring-sale"
DEADLINE = "2026-12-24T23:59:59Z"


class CountingTokens(Tokens):
    """Real tokens that count what they sign, by purpose."""

    def __init__(self) -> None:
        super().__init__((Secret(SECRET),))
        self.signed: Counter[str] = Counter()

    def sign(self, purpose: str, *args: Any, **kwargs: Any) -> str:
        self.signed[purpose] += 1
        return super().sign(purpose, *args, **kwargs)


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(TOKENS, BASE_URL, ImageChecks())


def links_for(
    signer: LinkSigner, user: str = "ada", campaign: str | None = CAMPAIGN, **kw: Any
) -> Links:
    return Links(signer, BASE_URL, user, campaign, HOME, **kw)


def token_of(url: str, prefix: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE_URL
    assert parts.path.startswith(prefix), url
    return parts.path.removeprefix(prefix)


def query_token(url: str) -> str:
    [token] = parse_qs(urlsplit(url).query)["t"]
    return token


# --- click links ---------------------------------------------------------------------


def test_a_click_url_carries_the_target_the_campaign_and_the_reader(signer):
    url = links_for(signer).click(TARGET)
    assert url.startswith(f"{BASE_URL}/c/")
    link, reader = click_grants(url)
    assert (link.purpose, link.user_id, link.resource, link.campaign) == (
        "click",
        "",
        TARGET,
        CAMPAIGN,
    )
    assert link.params is None
    assert reader is not None
    assert (reader.user_id, reader.resource, reader.campaign) == ("ada", "", CAMPAIGN)


def test_a_click_url_does_not_verify_for_another_purpose(signer):
    url = links_for(signer).click(TARGET)
    token = urlsplit(url).path.rsplit("/", 1)[1]
    for purpose in ("feed", "image", "pixel", "reader"):
        with pytest.raises(BadToken):
            TOKENS.verify(purpose, token)


def test_a_click_url_without_a_campaign(signer):
    link, reader = click_grants(links_for(signer, campaign=None).click(TARGET))
    assert link.campaign is None and reader is not None and reader.campaign is None


UNSAFE = [
    ("javascript", "javascript:alert(document.cookie)"),
    ("javascript upper case", "JavaScript:alert(1)"),
    ("javascript with a tab", "java\tscript:alert(1)"),
    ("vbscript", "vbscript:msgbox(1)"),
    ("data", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
    ("scheme-relative", "//evil.example/phish"),
    ("relative", "/account"),
    ("no host", "https:///path"),
    ("host-less https", "https:evil.example"),
    ("ftp", "ftp://files.example/x"),
    ("mailto", "mailto:someone@example.com"),
    ("header injection CRLF", "https://shop.example/\r\nSet-Cookie: session=evil"),
    ("LF", "https://shop.example/a\nb"),
    ("CR", "https://shop.example/a\rb"),
    ("leading space", " https://shop.example/"),
    ("over 2048 characters", "https://shop.example/" + "a" * 2028),
    ("empty", ""),
]


@pytest.mark.parametrize("target", [t for _, t in UNSAFE], ids=[name for name, _ in UNSAFE])
def test_an_unsafe_target_sends_the_reader_home_and_is_listed(signer, target: str):
    links = links_for(signer)
    url = links.click(target)
    link, reader = click_grants(url)
    assert link.resource == HOME
    assert reader is not None and reader.user_id == "ada"
    assert links.unsafe == [target[:200]]


async def test_a_long_target_makes_a_working_click(signer, client):
    target = "https://shop.example/p?" + "utm=x&" * 200
    url = links_for(signer).click(target)
    r = await client.get(url.removeprefix(BASE_URL))
    assert (r.status_code, r.headers["location"]) == (302, target)


@pytest.mark.parametrize("length", [1490, 2048])
async def test_every_target_check_target_accepts_makes_a_working_click(signer, client, length: int):
    target = "https://shop.example/" + "a" * (length - len("https://shop.example/"))
    links = links_for(signer)
    url = links.click(target)
    assert links.unsafe == []
    r = await client.get(url.removeprefix(BASE_URL))
    assert (r.status_code, r.headers.get("location")) == (302, target), r.text


@pytest.mark.parametrize("target", [t for _, t in UNSAFE[:6]])
def test_a_reader_who_declined_tracking_gets_the_plain_target_or_home(signer, target: str):
    links = links_for(signer, tracking=False)
    assert links.click(TARGET) == TARGET
    assert links.click(target) == HOME
    assert links.unsafe == [target]


def test_with_no_safe_home_an_unsafe_target_loses_its_link(signer):
    # As the feeds build them: home is "", so an unsafe item URL becomes "".
    links = Links(signer, BASE_URL, "ada", CAMPAIGN, "")
    assert links.click("javascript:alert(1)") == ""
    assert links.unsafe == ["javascript:alert(1)"]


def test_the_link_token_is_signed_once_per_campaign_and_target_and_shared_by_readers():
    tokens = CountingTokens()
    signer = LinkSigner(tokens, BASE_URL, ImageChecks())
    ada, grace = links_for(signer, "ada"), links_for(signer, "grace")
    ada_url, grace_url = ada.click(TARGET), grace.click(TARGET)
    ada.click("https://shop.example/other")
    grace.click("https://shop.example/other")
    assert tokens.signed == Counter({"click": 2, "reader": 2})

    ada_prefix, _, ada_reader = ada_url.partition("?r=")
    grace_prefix, _, grace_reader = grace_url.partition("?r=")
    assert ada_prefix == grace_prefix
    assert ada_reader != grace_reader
    assert TOKENS.verify("reader", ada_reader).user_id == "ada"
    assert TOKENS.verify("reader", grace_reader).user_id == "grace"

    # Another campaign is another link.
    other = links_for(signer, "ada", campaign="autumn").click(TARGET)
    assert other.partition("?r=")[0] != ada_prefix
    assert click_grants(other)[0].campaign == "autumn"
    assert tokens.signed["click"] == 3


def test_a_reader_token_is_signed_once_per_render():
    tokens = CountingTokens()
    links = links_for(LinkSigner(tokens, BASE_URL, ImageChecks()))
    urls = {links.click(f"https://shop.example/p/{i}") for i in range(5)}
    assert len(urls) == 5
    assert tokens.signed["reader"] == 1
    assert {url.partition("?r=")[2] for url in urls} == {links.reader()}


# --- product click links -------------------------------------------------------------


@pytest.mark.parametrize("slot", [0, 1, MAX_SLOT])
def test_a_product_click_signs_its_slot(signer, slot: int):
    link, reader = click_grants(links_for(signer).product_click(slot, TARGET))
    assert (link.resource, link.campaign, link.params) == (TARGET, CAMPAIGN, {"slot": slot})
    assert reader is not None and reader.user_id == "ada"


@pytest.mark.parametrize("slot", [-1, MAX_SLOT + 1, 1000, True, False, 1.0, "1", None])
def test_a_product_click_refuses_a_slot_out_of_bounds_or_not_an_int(signer, slot: Any):
    with pytest.raises(ValueError, match="slot"):
        links_for(signer).product_click(slot, TARGET)


def test_product_clicks_of_different_slots_are_different_links(signer):
    links = links_for(signer)
    first, second = links.product_click(0, TARGET), links.product_click(1, TARGET)
    assert first.partition("?r=")[0] != second.partition("?r=")[0]
    assert links.click(TARGET).partition("?r=")[0] not in (first, second)


def test_a_product_click_is_tracked_even_for_readers_who_declined(signer):
    # The redirect is what finds the product the reader saw in that slot.
    link, reader = click_grants(links_for(signer, tracking=False).product_click(2, TARGET))
    assert link.params == {"slot": 2} and reader is not None


def test_a_product_click_to_an_unsafe_target_goes_home(signer):
    links = links_for(signer)
    link, _ = click_grants(links.product_click(3, "javascript:alert(1)"))
    assert (link.resource, link.params) == (HOME, {"slot": 3})
    assert links.unsafe == ["javascript:alert(1)"]


# --- feed, image and pixel URLs ----------------------------------------------------


def verified(purpose: str, token: str) -> Grant:
    grant = TOKENS.verify(purpose, token)
    for other in {"feed", "image", "click", "pixel", "reader"} - {purpose}:
        with pytest.raises(BadToken):
            TOKENS.verify(other, token)
    return grant


def test_a_feed_url_is_for_that_feed_and_reader(signer):
    url = links_for(signer, "grace").feed("cart")
    assert urlsplit(url).path == "/v1/feeds/cart"
    grant = verified("feed", query_token(url))
    assert (grant.user_id, grant.resource, grant.campaign) == ("grace", "cart", CAMPAIGN)


def test_an_image_url_signs_its_parameters_and_names_its_format(signer):
    links = links_for(signer)
    url = links.image("countdown", deadline=DEADLINE, frames=30)
    assert urlsplit(url).path == "/v1/img/countdown.gif"
    grant = verified("image", query_token(url))
    assert (grant.user_id, grant.resource, grant.campaign) == ("ada", "countdown", CAMPAIGN)
    assert grant.params == {"deadline": DEADLINE, "frames": 30}
    product = links.image("product", slot=4)
    assert urlsplit(product).path == "/v1/img/product.png"
    assert verified("image", query_token(product)).params == {"slot": 4}
    assert verified("image", query_token(links.image("banner"))).params is None


BAD_IMAGES = [
    ("unknown image", "sparkles", {}),
    ("missing deadline", "countdown", {}),
    ("bad deadline", "countdown", {"deadline": "tomorrow"}),
    ("deadline not in UTC", "countdown", {"deadline": "2026-12-24T23:59:59+02:00"}),
    ("unknown parameter", "countdown", {"deadline": DEADLINE, "colour": "red"}),
    ("too wide", "countdown", {"deadline": DEADLINE, "width": 5000}),
    ("too many frames", "countdown", {"deadline": DEADLINE, "frames": 121}),
    ("slot above the last", "product", {"slot": MAX_SLOT + 1}),
    ("slot as a bool", "product", {"slot": True}),
    ("bad colour", "banner", {"color": "red; x"}),
    ("unhashable value", "banner", {"headline": ["a"]}),
]


@pytest.mark.parametrize(("name", "params"), [pytest.param(n, p, id=i) for i, n, p in BAD_IMAGES])
def test_a_bad_image_fails_at_send_time(signer, name: str, params: dict[str, Any]):
    links = links_for(signer)
    with pytest.raises(ParamError):
        links.image(name, **params)
    with pytest.raises(ParamError):  # again, from the remembered answer
        links_for(signer, "grace").image(name, **params)


def test_a_pixel_url_is_for_the_reader_and_campaign(signer):
    url = links_for(signer, "grace").pixel()
    token = unquote(token_of(url, "/v1/px/").removesuffix(".gif"))
    assert url.endswith(".gif")
    grant = verified("pixel", token)
    assert (grant.user_id, grant.resource, grant.campaign) == ("grace", "open", CAMPAIGN)


def test_urls_are_made_once_per_render():
    tokens = CountingTokens()
    links = links_for(LinkSigner(tokens, BASE_URL, ImageChecks()))
    for _ in range(3):
        links.feed("cart")
        links.image("countdown", deadline=DEADLINE)
        links.pixel()
    assert tokens.signed == Counter({"feed": 1, "image": 1, "pixel": 1})


def test_resolve_fills_each_kind_of_spec(signer):
    links = links_for(signer)
    assert links.resolve(("reader",)) == links.reader()
    assert links.resolve(("feed", "cart")) == links.feed("cart")
    assert links.resolve(("image", "product", {"slot": 1})) == links.image("product", slot=1)
    assert links.resolve(("pixel",)) == links.pixel()
    # In HTML the URL is escaped: a query's `&` becomes `&amp;`.
    url = links.url("k1", ("image", "countdown", {"deadline": DEADLINE}), html=True)
    assert url == links.image("countdown", deadline=DEADLINE).replace("&", "&amp;")
