"""The designer's studio end to end: real headless Chromium (Debian's `chromium`, driven
through its `chromedriver` by Selenium) on the /designer page of a real server
(`uvicorn`, the embedded store with the demo readers) that reads a copy of the blocks
and templates, so the tests may edit and break them on disk.

The page is driven as a designer would: pick a template and a reader, read the email in
the frames, save a block file and watch the page repaint without a reload, break it and
see the error while the last good render stays. Screenshots of the email at 600 and
375 px are written to `build/studio/`.

`bash .ci/test` installs `chromium` and `chromium-driver`; without them these tests
fail and say so (they never skip)."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait
from support import API_KEY, SECRET, KairosProcess, free_port

from app.settings import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = PROJECT_ROOT / "build" / "studio"
GREETING = Path("blocks") / "greeting" / "block.mjml"
WAIT_S = 20.0


def server_env(tmp: Path, amp_validator_dir: Path, **extra: str) -> dict[str, str]:
    """A test server on a copy of the blocks and templates under `tmp`."""
    for folder in ("blocks", "templates"):
        if not (tmp / folder).exists():
            shutil.copytree(PROJECT_ROOT / folder, tmp / folder)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "KAIROS_ENV": "test",
        "KAIROS_SECRET_KEYS": SECRET,
        "KAIROS_API_KEYS": API_KEY,
        "KAIROS_DEV_SECRET_FILE": str(tmp / "dev-secret"),
        "KAIROS_DEMO_DATA": "true",
        "KAIROS_LOG_LEVEL": "WARNING",
        "KAIROS_BLOCKS_DIR": str(tmp / "blocks"),
        "KAIROS_TEMPLATES_DIR": str(tmp / "templates"),
        "KAIROS_SEGMENTS_FILE": str(tmp / "templates" / "segments.toml"),
        # https, as in production: renders have their AMP part, and the validator
        # judges the URLs a sent email would carry.
        "KAIROS_PUBLIC_URL": "https://kairos.example.com",
        "KAIROS_AMP_VALIDATOR_DIR": str(amp_validator_dir),
        **extra,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the server reads its blocks and templates from."""
    return tmp_path_factory.mktemp("studio-site")


@pytest.fixture(scope="module")
def server(site: Path, amp_validator_dir: Path) -> Iterator[KairosProcess]:
    process = KairosProcess("studio", server_env(site, amp_validator_dir), site)
    try:
        process.wait_ready(time.monotonic() + 30)
        yield process
    finally:
        process.stop()


def new_driver() -> WebDriver:
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "the studio's end-to-end tests drive Debian's chromium through chromedriver: "
        "`bash .ci/test` installs them (apt-get install chromium chromium-driver)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1800,2400",
        "--hide-scrollbars",
        # Nothing leaves the machine: the emails' remote images fail at once.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tempfile.mkdtemp(prefix='kairos-studio-chromium-')}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: WebDriver, server: KairosProcess) -> WebDriver:
    """The studio, freshly opened and painted once."""
    browser.get(server.base + "/designer")
    wait_for(browser, lambda d: rendered_version(d) is not None, "the first paint")
    return browser


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(condition)
    except TimeoutException:
        shown = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#status, #errors")]
        raise AssertionError(f"waited {WAIT_S} s for {what}; the page says {shown!r}") from None


def rendered_version(driver: WebDriver) -> str | None:
    version: str | None = driver.execute_script(
        "return document.documentElement.dataset.renderedVersion ?? null"
    )
    return version


def frame_text(driver: WebDriver, frame: str) -> str:
    """The text a reader sees in one of the page's frames."""
    text: str = driver.execute_script(
        "const doc = document.getElementById(arguments[0]).contentDocument;"
        "return doc && doc.body ? doc.body.innerText : '';",
        frame,
    )
    return text


def choose(driver: WebDriver, select: str, value: str) -> None:
    Select(driver.find_element(By.ID, select)).select_by_value(value)


def show(driver: WebDriver, template: str, sample: str) -> None:
    choose(driver, "template", template)
    choose(driver, "reader-kind", "sample")
    choose(driver, "sample", sample)


def test_a_sample_reader_and_a_stored_reader_in_the_html_frames(page: WebDriver):
    show(page, "welcome", "full")
    for frame in ("frame-desktop", "frame-mobile"):
        wait_for(page, lambda d, f=frame: "Ada" in frame_text(d, f), f"Ada in #{frame}")
    assert "Ada" in page.find_element(By.ID, "inbox").text  # the subject
    choose(page, "sample", "new_member")
    wait_for(page, lambda d: "Grace" in frame_text(d, "frame-desktop"), "Grace (sample)")
    assert "Ada" not in frame_text(page, "frame-desktop")
    # A stored reader: the demo reader Ada, read through the reader layer.
    choose(page, "reader-kind", "stored")
    field = page.find_element(By.ID, "user-id")
    field.clear()
    field.send_keys("ada")
    wait_for(page, lambda d: "Ada" in frame_text(d, "frame-desktop"), "stored Ada")
    assert "Grace" not in frame_text(page, "frame-desktop")


def test_the_html_frames_are_600_and_375_px_and_are_screenshotted(page: WebDriver):
    show(page, "welcome", "full")
    wait_for(page, lambda d: "Ada" in frame_text(d, "frame-mobile"), "Ada in both frames")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for frame, width in (("frame-desktop", 600), ("frame-mobile", 375)):
        inner = page.execute_script(
            "return document.getElementById(arguments[0]).contentWindow.innerWidth", frame
        )
        assert inner == width, (frame, inner)
        element = page.find_element(By.ID, frame)
        png = ARTIFACTS / f"welcome-full-{width}.png"
        assert element.screenshot(str(png))
        with Image.open(png) as shot:
            rgb = shot.convert("RGB")
        assert rgb.width == element.size["width"]
        # An email, not a blank frame: many colours in it.
        assert len(rgb.getcolors(maxcolors=1 << 20) or ()) > 50, png


def test_an_inline_profile_edited_as_json(page: WebDriver):
    choose(page, "template", "welcome")
    choose(page, "reader-kind", "json")
    editor = page.find_element(By.ID, "profile-json")
    editor.clear()
    editor.send_keys('{"first_name": "Zelda", ')
    error = page.find_element(By.ID, "profile-json-error")
    wait_for(page, lambda d: error.is_displayed() and "JSON" in error.text, "the parse error")
    editor.send_keys('"email": "zelda@example.org"}')
    wait_for(page, lambda d: "Zelda" in frame_text(d, "frame-desktop"), "Zelda")
    assert not error.is_displayed()


def test_dark_mode_applies_the_emails_dark_rules(page: WebDriver):
    show(page, "welcome", "full")
    wait_for(page, lambda d: "Ada" in frame_text(d, "frame-desktop"), "Ada")
    script = (
        "const doc = document.getElementById('frame-desktop').contentDocument;"
        "return doc.defaultView.getComputedStyle(doc.body).backgroundColor;"
    )
    light = page.execute_script(script)
    page.find_element(By.ID, "dark").click()
    # theme.css: `body, .kx-body { background-color: #121417 }` in its dark rules.
    wait_for(page, lambda d: d.execute_script(script) == "rgb(18, 20, 23)", "the dark body")
    assert light != "rgb(18, 20, 23)"
    page.find_element(By.ID, "dark").click()
    wait_for(page, lambda d: d.execute_script(script) == light, "the light body again")


def test_a_block_that_falls_back_is_outlined_with_its_reason(page: WebDriver):
    show(page, "abandoned_cart", "empty_cart")
    wait_for(page, lambda d: "cart" in d.find_element(By.ID, "fallbacks").text, "the fallbacks")
    assert "missing-data" in page.find_element(By.ID, "fallbacks").text
    found = wait_for(
        page,
        lambda d: d.execute_script(
            "const doc = document.getElementById('frame-desktop').contentDocument;"
            "const block = doc.querySelector('[data-kairos-fallback]');"
            "if (!block) return null;"
            "const badge = block.querySelector('.kairos-fallback-badge') ||"
            "  block.previousElementSibling;"
            "const box = badge.getBoundingClientRect();"
            "return {block: block.dataset.kairosBlock, reason: block.dataset.kairosFallback,"
            "  title: block.title, badge: badge.innerText, width: box.width, height: box.height,"
            "  outline: doc.defaultView.getComputedStyle(block).outlineStyle};"
        ),
        "a block marked as fallen back in the frame",
    )
    assert found["block"] == "cart"
    assert found["reason"].startswith("missing-data")
    assert found["reason"] in found["badge"]
    assert found["width"] > 0 and found["height"] > 0
    assert found["outline"] == "dashed"
    assert "blocks/cart/" in found["title"]
    page.find_element(By.ID, "frame-desktop").screenshot(str(ARTIFACTS / "fallback-600.png"))


def test_the_amp_frame_shows_the_validators_pass(page: WebDriver):
    show(page, "welcome", "full")
    verdict = page.find_element(By.ID, "amp-verdict")
    wait_for(page, lambda d: verdict.text == "PASS", "the AMP validator's PASS")
    wait_for(
        page,
        lambda d: (
            d.execute_script(
                "const doc = document.getElementById('frame-amp').contentDocument;"
                "return doc && doc.documentElement.dataset.ampReady;"
            )
            == "1"
        ),
        "the AMP frame's runtime",
    )
    # The frame of the template's first sample may still be up: wait for the reader's.
    wait_for(page, lambda d: "Ada" in frame_text(d, "frame-amp"), "Ada in the AMP frame")


def test_saving_a_block_repaints_breaking_it_shows_the_error_mending_it_clears_it(
    page: WebDriver, site: Path
):
    path = site / GREETING
    original = path.read_text()
    assert "{{ params.salutation }}" in original
    show(page, "welcome", "full")
    wait_for(page, lambda d: "Ada" in frame_text(d, "frame-desktop"), "Ada")
    # Set on this page only: a reload would lose it.
    page.execute_script("window.kairosProbe = 'same page'")
    try:
        before = rendered_version(page)
        path.write_text(original.replace("{{ params.salutation }}", "Studio-Marker-1"))
        wait_for(page, lambda d: "Studio-Marker-1" in frame_text(d, "frame-desktop"), "the edit")
        assert rendered_version(page) != before
        assert page.execute_script("return window.kairosProbe") == "same page"

        # Line 3 of the file gets a Jinja syntax error.
        lines = original.splitlines(keepends=True)
        broken = [*lines[:2], "{{ first_name | }}\n", *lines[2:]]
        path.write_text("".join(broken).replace("{{ params.salutation }}", "Studio-Marker-1"))
        errors = page.find_element(By.ID, "errors")
        wait_for(page, lambda d: errors.is_displayed(), "the error panel")
        assert f"{GREETING.as_posix()}:3" in errors.text
        assert "{{ first_name | }}" in errors.text  # the snippet
        version = rendered_version(page)
        assert (
            page.execute_script("return document.documentElement.dataset.errorVersion") == version
        )
        # The frames keep the last good render.
        assert "Studio-Marker-1" in frame_text(page, "frame-desktop")
        assert "Studio-Marker-1" in frame_text(page, "frame-mobile")

        path.write_text(original.replace("{{ params.salutation }}", "Studio-Marker-2"))
        wait_for(page, lambda d: "Studio-Marker-2" in frame_text(d, "frame-desktop"), "the mend")
        wait_for(page, lambda d: not errors.is_displayed(), "the error panel to go")
        assert page.execute_script("return document.documentElement.dataset.errorVersion") is None
        assert page.execute_script("return window.kairosProbe") == "same page"
    finally:
        path.write_text(original)


def test_the_gallery_shows_every_block_and_its_fallback(page: WebDriver, site: Path):
    page.find_element(By.CSS_SELECTOR, "#gallery summary").click()
    blocks = sorted(p.name for p in (site / "blocks").iterdir() if (p / "block.json").is_file())
    wait_for(
        page,
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .gallery-block")) == len(blocks),
        "a figure per block",
    )
    cart = page.find_elements(By.CSS_SELECTOR, '#gallery [data-block="cart"] iframe')
    assert [frame.get_attribute("data-mode") for frame in cart] == ["main", "fallback"]


def test_production_asks_for_a_key_then_opens(
    tmp_path: Path, amp_validator_dir: Path, browser: WebDriver
):
    env = server_env(
        tmp_path,
        amp_validator_dir,
        KAIROS_ENV="production",
        KAIROS_DESIGNER="on",
        KAIROS_AMP_SENDERS="*@news.example.com",
        KAIROS_SECRET_KEYS="Rk2Fw8Nz5Tq1Xm7Hb4Lv9Jc3Dp6Gs0Ea",
    )
    process = KairosProcess("studio-production", env, tmp_path)
    try:
        process.wait_ready(time.monotonic() + 30)
        # Cookies are the host's, whatever the port: none of the other server's.
        browser.get(process.base + "/designer")
        browser.delete_all_cookies()
        browser.get(process.base + "/designer")
        key = browser.find_element(By.ID, "login-key")
        key.send_keys("not-the-api-key-at-all")
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        error = browser.find_element(By.ID, "login-error")
        wait_for(browser, lambda d: error.is_displayed(), "the refusal")
        key.clear()
        key.send_keys(API_KEY)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "frame-desktop"), "the page")
        wait_for(browser, lambda d: rendered_version(d) is not None, "the first paint")
        cookie = browser.get_cookie("kairos_studio")
        assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert browser.execute_script("return document.cookie") == ""
    finally:
        process.stop()


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), bytes(envelope.content)))
        return "250 OK"


def test_send_a_test_mails_what_is_on_screen(
    tmp_path: Path, amp_validator_dir: Path, browser: WebDriver
):
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    env = server_env(tmp_path, amp_validator_dir, KAIROS_SMTP_URL=f"smtp://127.0.0.1:{smtp.port}")
    process = KairosProcess("studio-send", env, tmp_path)
    try:
        process.wait_ready(time.monotonic() + 30)
        browser.get(process.base + "/designer")
        wait_for(browser, lambda d: rendered_version(d) is not None, "the first paint")
        show(browser, "welcome", "full")
        wait_for(browser, lambda d: "Ada" in frame_text(d, "frame-desktop"), "Ada")
        browser.find_element(By.ID, "send-to").send_keys("designer@example.com")
        browser.find_element(By.ID, "send").click()
        result = browser.find_element(By.ID, "send-result")
        wait_for(browser, lambda d: "Sent to designer@example.com" in result.text, "the answer")
        [(recipients, raw)] = inbox.messages
        assert recipients == ["designer@example.com"]
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert message.get_content_type() == "multipart/alternative"
        parts = {part.get_content_type(): part.get_content() for part in message.iter_parts()}
        assert list(parts) == ["text/plain", "text/x-amp-html", "text/html"]
        assert "Ada" in parts["text/html"]
        # Sent mail never carries the page's annotations.
        assert "data-kairos-" not in parts["text/html"] + parts["text/x-amp-html"]
    finally:
        process.stop()
        smtp.stop()
