"""The studio's AMP frame (app/studio/static/amp-frame.js) in real headless Chromium.

A real Kairos server runs over https (the AMP part needs an https public URL, so the
signed feed and image URLs of a render point at it) with its demo readers; the test
renders a shipped template's AMP through `POST /v1/render`, puts it in an iframe's
`srcdoc` under the studio page's Content-Security-Policy with the script added, as the
studio's page does, and looks at what the frame shows.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support import API_KEY, AUTH, SECRET, feed_url, free_port, image_url, stop_process

from app.settings import PROJECT_ROOT

SENDER = "news@shop.test"
# The studio page's policy (the frame's srcdoc inherits it there; here it is the frame's own).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: https: http:; frame-src 'self' blob: data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'"
)
HOSTILE = '<script>window.kxPwned=1</script><img src=x onerror="window.kxPwned=2">'
FEEDS_ANSWERED = re.compile(r"^kairos_requests_total\{(.*)\} (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class Server:
    base: str
    log: Path
    tls: ssl.SSLContext

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, verify=self.tls, timeout=10)

    def feeds_answered(self) -> dict[str, int]:
        """Feed requests the server answered so far, by status."""
        with self.client() as client:
            text = client.get("/metrics").text
        answered = {}
        for labels, count in FEEDS_ANSWERED.findall(text):
            label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
            if label["route"] == "/v1/feeds/{feed}" and label["method"] == "GET":
                answered[label["status"]] = int(float(count))
        return answered

    def feeds_since(self, before: dict[str, int], status: str, count: int) -> int:
        """How many feed requests answered `status` since `before`, once `count` have
        (or two seconds have passed: a request is counted just after its answer)."""
        deadline = time.monotonic() + 2
        while True:
            seen = self.feeds_answered().get(status, 0) - before.get(status, 0)
            if seen >= count or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the browser is told to accept it)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("studio-amp")
    cert, key = _certificate(tmp)
    port = free_port()
    base = f"https://127.0.0.1:{port}"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
        "KAIROS_PUBLIC_URL": base,
        "KAIROS_AMP_SENDERS": SENDER,
        "KAIROS_DEMO_DATA": "true",
        # A busy test machine must not turn a live image into its fallback.
        "KAIROS_BUDGET_MS": "10000",
        "KAIROS_LOG_LEVEL": "WARNING",
    }
    argv = [sys.executable, "-m", "uvicorn", "--factory", "app.app:factory"]
    argv += [
        "--http",
        "app.protocol:KairosProtocol",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    argv += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--log-level", "warning"]
    tls = ssl.create_default_context(cafile=cert)
    log = tmp / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/readyz", verify=tls, timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.05)
        yield Server(base, log, tls)
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    # Nothing leaves the machine: the shop's images fail at once.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def render_amp(server: Server, template: str, user_id: str, variant: str | None = None) -> str:
    """The reader's AMP part; of `variant`, found by trying campaigns (a reader's variant
    is drawn per campaign)."""
    with server.client() as client:
        for campaign in (f"studio-{n}" for n in range(40)):
            body = {"template": template, "user_id": user_id, "campaign": campaign}
            r = client.post("/v1/render", json={**body, "formats": ["amp"]}, headers=AUTH)
            assert r.status_code == 200, r.text
            if variant in (None, r.json()["variant"]):
                amp: str = r.json()["amp"]
                assert amp.startswith("<!doctype html>"), r.json().get("warnings")
                return amp
    raise AssertionError(f"no campaign draws variant {variant} for {user_id}")


def put_profile(server: Server, user_id: str, profile: dict[str, Any]) -> None:
    with server.client() as client:
        r = client.put(f"/v1/profiles/{user_id}", json=profile, headers=AUTH)
    assert r.status_code in (200, 201), r.text


def show_in_frame(
    browser: WebDriver, server: Server, amp: str, sender: str = SENDER, poll_s: float = 0.5
) -> None:
    """Open a page of the server with `amp` in an iframe's srcdoc, the policy and the
    script added, and switch into the frame once it says it is ready."""
    policy = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    script = f'<script src="/designer/static/amp-frame.js" data-sender="{sender}"></script>'
    doc = amp.replace("<head>", "<head>" + policy, 1).replace("</body>", script + "</body>", 1)
    browser.switch_to.default_content()
    browser.get(f"{server.base}/healthz")
    browser.execute_script(
        """const frame = document.createElement("iframe");
        frame.id = "frame-amp";
        frame.style.cssText = "width:600px;height:4000px;border:0";
        frame.srcdoc = arguments[0];
        document.body.replaceChildren(frame);""",
        doc,
    )
    WebDriverWait(browser, 20, poll_frequency=poll_s).until(
        lambda b: b.execute_script(
            "const d = document.getElementById('frame-amp').contentDocument;"
            "return d && d.documentElement.dataset.ampReady === '1';"
        )
    )
    browser.switch_to.frame("frame-amp")


def js(browser: WebDriver, script: str, *args: Any) -> Any:
    return browser.execute_script(script, *args)


def wait_for_images(browser: WebDriver) -> None:
    """Until every image with a source has loaded or failed."""
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return [...document.images].every((i) => i.complete);")
    )


# The lines an amp-list rendered (not its fallback's), and whether its parts show.
LIST_STATE = """
const list = document.querySelectorAll("amp-list")[arguments[0]];
const shown = (e) => !!e && getComputedStyle(e).display !== "none";
const rendered = list.querySelector(":scope > [role=list]");
return {
  titles: rendered ? [...rendered.querySelectorAll(arguments[1])].map((e) => e.textContent) : null,
  placeholder: shown(list.querySelector(":scope > [placeholder]")),
  fallback: shown(list.querySelector(":scope > [fallback]")),
};
"""


def test_a_stored_readers_cart_comes_from_the_signed_feed(
    server: Server, browser: WebDriver
) -> None:
    amp = render_amp(server, "abandoned_cart", "ada")
    before = server.feeds_answered()
    show_in_frame(browser, server, amp)
    # The cart and the picks: two feeds fetched, both answered 200 (the sender allowed).
    assert server.feeds_since(before, "200", 2) == 2
    assert server.feeds_since(before, "403", 0) == 0

    cart = js(browser, LIST_STATE, 0, ".kx-line-title")
    assert cart == {
        "titles": ["Brass desk lamp", "Linen cushion"],
        "placeholder": False,
        "fallback": False,
    }
    quantities = js(browser, "return [...document.querySelectorAll('[role=list] .kx-line-qty')]"
                    ".map((e) => e.textContent);")  # fmt: skip
    assert quantities == ["Qty 1 · €39.00 each", "Qty 2 · €24.50 each"]
    # Fetched as an AMP email client fetches: the version 1 sender parameter besides the
    # header (the header is what the server checked: see the refused feed below).
    fetched = js(browser, "return performance.getEntriesByType('resource').map((e) => e.name);")
    feeds = [url for url in fetched if "/v1/feeds/" in url]
    assert len(feeds) == 2
    assert all("__amp_source_origin=news%40shop.test" in url for url in feeds)
    picks = js(browser, LIST_STATE, 1, ".kx-card-title")
    assert picks["titles"] and not picks["fallback"] and not picks["placeholder"]
    # The boilerplate that hides an AMP body until its runtime is ready is gone.
    assert js(browser, "return getComputedStyle(document.body).visibility;") == "visible"
    boilerplate = "return document.querySelectorAll('style[amp4email-boilerplate]').length;"
    assert js(browser, boilerplate) == 0


def test_amp_img_becomes_img_and_live_images_load(server: Server, browser: WebDriver) -> None:
    show_in_frame(browser, server, render_amp(server, "weekly_picks", "ada", variant="B"))
    wait_for_images(browser)
    images = js(
        browser,
        """return [...document.querySelectorAll("amp-img, amp-anim")].map((host) => {
          const img = host.querySelector(":scope > img");
          return {
            host: ["src", "width", "height", "alt"].map((a) => host.getAttribute(a)),
            img: img && ["src", "width", "height", "alt"].map((a) => img.getAttribute(a)),
            loaded: !!img && img.complete && img.naturalWidth > 0,
            box: host.getBoundingClientRect().width,
            inFallback: !!host.closest("[fallback]"),
          };
        });""",
    )
    assert len(images) >= 5
    live = [i for i in images if (i["host"][0] or "").startswith(f"{server.base}/v1/img/")]
    pixel = [i for i in images if "/v1/px/" in (i["host"][0] or "")]
    assert live and len(pixel) == 1
    for image in images:
        if image in pixel:
            # A preview is not an open: the pixel keeps its size and is never fetched.
            assert image["img"] == [None, "1", "1", ""]
            continue
        assert image["img"] == image["host"]
        # Laid out at a size, but in the lists' fallbacks (the lists loaded).
        assert (image["box"] > 0) is not image["inFallback"], image
    for image in live:
        assert image["loaded"], image
    # The countdown is drawn at twice its display size and shown at the frame's width.
    countdown = js(
        browser,
        "const img = document.querySelector('amp-img[src*=\"/v1/img/countdown\"] > img');"
        "return [img.naturalWidth, img.getBoundingClientRect().width];",
    )
    assert countdown[0] == 1200 and 0 < countdown[1] <= 600


def test_open_time_content_and_escaped_data(server: Server, browser: WebDriver) -> None:
    banner = server.base + image_url("banner", "lin")
    profile = {
        "first_name": "Lin",
        "cart": [{"sku": "SKU-1", "qty": 1, "title": HOSTILE, "image_url": banner}],
        "consent": {"personalization": True, "tracking": True},
    }
    put_profile(server, "lin", profile)
    amp = render_amp(server, "abandoned_cart", "lin")
    assert "Linen cushion" not in amp
    # The cart changes after the send: the open shows it as it is now.
    profile["cart"] = [*profile["cart"], {"sku": "SKU-2", "qty": 3}]
    put_profile(server, "lin", profile)
    show_in_frame(browser, server, amp)
    wait_for_images(browser)

    cart = js(browser, LIST_STATE, 0, ".kx-line-title")
    assert cart["titles"] == [HOSTILE, "Linen cushion"]
    # The title is text: no element was made of it, no script ran.
    assert js(browser, "return document.querySelectorAll('[role=list] script, [role=list] "
              ".kx-line-title img').length;") == 0  # fmt: skip
    assert js(browser, "return window.kxPwned === undefined;")
    browser.switch_to.default_content()
    assert js(browser, "return window.kxPwned === undefined;")
    browser.switch_to.frame("frame-amp")
    # The line's live image, rendered by the template, loaded from the server.
    line_image = js(
        browser,
        "const img = document.querySelector('[role=list] .kx-line-img img');"
        "return [img.getAttribute('src'), img.naturalWidth > 0, img.getAttribute('alt')];",
    )
    assert line_image == [banner, True, HOSTILE]


def test_a_cart_emptied_since_the_send_says_so(server: Server, browser: WebDriver) -> None:
    profile = {"first_name": "Noor", "cart": [{"sku": "SKU-3", "qty": 1}]}
    put_profile(server, "noor", {**profile, "consent": {"personalization": True}})
    amp = render_amp(server, "abandoned_cart", "noor")
    put_profile(server, "noor", {**profile, "cart": [], "consent": {"personalization": True}})
    show_in_frame(browser, server, amp)
    cart = js(browser, LIST_STATE, 0, ".kx-line-title")
    assert cart == {"titles": [], "placeholder": False, "fallback": False}
    message = js(browser, "return document.querySelector('[role=list]').textContent.trim();")
    assert message.startswith("Your cart is empty right now.")


def test_the_frame_is_ready_once_its_lists_are(server: Server, browser: WebDriver) -> None:
    amp = render_amp(server, "abandoned_cart", "ada")
    # Every request takes 600 ms more; the frame is looked at every 20 ms.
    browser.execute_cdp_cmd("Network.enable", {})
    slow = {"offline": False, "latency": 600, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", slow)
    try:
        show_in_frame(browser, server, amp, poll_s=0.02)
        lists = js(browser, "return [...document.querySelectorAll('amp-list')].map("
                   "(l) => !!l.querySelector(':scope > [role=list]'));")  # fmt: skip
        assert lists == [True, True]
    finally:
        browser.execute_cdp_cmd("Network.emulateNetworkConditions", {**slow, "latency": 0})
        browser.execute_cdp_cmd("Network.disable", {})


def test_a_refused_feed_shows_the_fallback(server: Server, browser: WebDriver) -> None:
    amp = render_amp(server, "abandoned_cart", "ada")
    before = server.feeds_answered()
    show_in_frame(browser, server, amp, sender="someone@elsewhere.test")
    # The server saw the sender the frame named, and refused it.
    assert server.feeds_since(before, "403", 2) == 2
    cart = js(browser, LIST_STATE, 0, ".kx-line-title")
    assert cart == {"titles": None, "placeholder": False, "fallback": True}
    # The fallback holds the cart as it was at the send.
    fallback = js(browser, "return [...document.querySelectorAll('amp-list [fallback] "
                  ".kx-line-title')].map((e) => e.textContent);")  # fmt: skip
    assert fallback[:2] == ["Brass desk lamp", "Linen cushion"]


# Every construct of the subset, over a real signed feed (CART_FEED is replaced).
MUSTACHE_DOC = """<!doctype html>
<html ⚡4email data-css-strict><head><meta charset="utf-8">
<style amp4email-boilerplate>body{visibility:hidden}</style></head>
<body>
<template id="line" type="amp-mustache"
><p class="line">{{title}}|{{qty}}|{{#url}}link{{/url}}{{^nothing}}none{{/nothing}}</p
></template>
<amp-list id="a" src="CART_FEED" template="line" max-items="1" width="auto" height="40">
  <div placeholder>Loading</div>
</amp-list>
<amp-list id="b" src="CART_FEED" items="." single-item width="auto" height="200">
  <template type="amp-mustache"
  ><p class="first">{{items.0.title}}</p
  ><p class="skus">{{#items}}{{#sku}}<i>{{.}}</i>{{/sku}}{{/items}}</p
  ><div class="raw">{{#items}}{{{title}}}{{/items}}</div
  ><amp-img class="sized" src="/healthz" width="{{items.1.title}}" height="10" alt=""></amp-img
  ><a class="js" href="javascript:window.kxPwned=3">x</a
  ><script class="evil">window.kxPwned=6</script><iframe class="evil" src="/healthz"></iframe
  ></template>
</amp-list>
<amp-list id="c" src="CART_FEED" items="missing.list" width="auto" height="40">
  <template type="amp-mustache"><p>{{title}}</p></template>
  <div fallback class="failed">No list</div>
</amp-list>
<amp-list id="d" src="CART_FEED" items="." single-item width="auto" height="40">
  <template type="amp-mustache">{{#items}}<p>{{title}}</p></template>
  <div fallback class="failed">Broken template</div>
</amp-list>
<amp-list id="e" src="CART_FEED" layout="fixed-height" height="30">
  <template type="amp-mustache"><p>{{title}}</p></template>
  <div overflow class="more">More</div>
</amp-list>
<amp-list id="f" src="CART_FEED" layout="responsive" width="600" height="60" max-items="0">
  <template type="amp-mustache"><p>{{title}}</p></template>
</amp-list>
<amp-carousel type="slides" width="300" height="100" layout="fixed"
><div class="slide">One</div><div class="slide">Two</div></amp-carousel>
<amp-accordion><section><h4>Head</h4><p class="panel">Panel</p></section></amp-accordion>
<button on="tap:AMP.setState({x: 1})" [text]="x">Tap</button>
</body></html>"""


def test_the_mustache_subset(server: Server, browser: WebDriver) -> None:
    cart = [
        {
            "sku": "SKU-3",
            "qty": 2,
            "title": '<b>Bold</b> table<img src=x onerror="window.kxPwned=4">'
            '<a href=" javascript:window.kxPwned=5">go</a>',
        },
        {"sku": "SKU-2", "qty": 1, "title": "12;margin-left:77px;x:"},
    ]
    put_profile(server, "mo", {"cart": cart, "consent": {"personalization": True}})
    doc = MUSTACHE_DOC.replace("CART_FEED", server.base + feed_url("cart", "mo"))
    show_in_frame(browser, server, doc)
    html = js(
        browser,
        "return Object.fromEntries([...document.querySelectorAll('amp-list')].map("
        "(l) => [l.id, l.querySelector(':scope > [role=list]')?.innerHTML ?? null]));",
    )
    # A template named by id, items under "items", max-items, escaping, inverted sections.
    assert html["a"] == (
        '<p class="line">&lt;b&gt;Bold&lt;/b&gt; table&lt;img src=x onerror="window.kxPwned=4"&gt;'
        '&lt;a href=" javascript:window.kxPwned=5"&gt;go&lt;/a&gt;'
        "|2|linknone</p>"
    )
    first, skus, raw, link = js(
        browser,
        "const b = document.querySelector('#b [role=list]');"
        "return [b.querySelector('.first').textContent, b.querySelector('.skus').innerHTML,"
        " b.querySelector('.raw').innerHTML, b.querySelector('a.js').hasAttribute('href')];",
    )
    assert first == cart[0]["title"]  # dotted names, with a list index
    assert skus == "<i>SKU-3</i><i>SKU-2</i>"  # {{.}}: the string itself
    # {{{raw}}} keeps formatting, drops what could run; URLs that run script are dropped.
    assert raw == '<b>Bold</b> table<a target="_blank">go</a>12;margin-left:77px;x:'
    assert link is False
    # A size from data is a number or nothing: it cannot add CSS.
    sized = "return getComputedStyle(document.querySelector('.sized')).marginLeft;"
    assert js(browser, sized) == "0px"
    assert js(browser, "return document.querySelectorAll('.evil').length;") == 0
    assert js(browser, "return window.kxPwned === undefined;")
    # No list where the items path finds none, nor from a template that does not parse.
    assert html["c"] is None and html["d"] is None
    assert js(browser, "return [...document.querySelectorAll('.failed')].map("
              "(e) => getComputedStyle(e).display !== 'none');") == [True, True]  # fmt: skip
    # The placeholder is hidden once the list is in; carousels and accordions show.
    assert js(browser, "return getComputedStyle(document.querySelector('#a [placeholder]'))"
              ".display;") == "none"  # fmt: skip
    shown = js(browser, "return [...document.querySelectorAll('.slide, .panel')].map("
               "(e) => e.getBoundingClientRect().height > 0);")  # fmt: skip
    assert shown == [True, True, True]
    # A responsive box keeps its aspect ratio at any width.
    box = "const r = document.getElementById('f').getBoundingClientRect();"
    width, height = js(browser, box + "return [r.width, r.height];")
    assert width > 300 and abs(height - width / 10) < 1
    # A list taller than its box shows its overflow, which opens it.
    more = (
        "const e = document.getElementById('e'); return [e.clientHeight, "
        "getComputedStyle(e.querySelector('.more')).display !== 'none'];"
    )
    assert js(browser, more) == [30, True]
    browser.find_element(By.CSS_SELECTOR, ".more").click()
    height, shown = js(browser, more)
    assert height > 60 and not shown
    assert json.loads(js(browser, "return JSON.stringify(document.querySelector('button')"
                         ".getAttribute('on'));")) == "tap:AMP.setState({x: 1})"  # fmt: skip
