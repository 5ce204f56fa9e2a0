"""`kairos render`, `kairos check` and `kairos sign pixel|click`, run in-process through
`main([...])` with the output captured; what they print is checked against the renderer
and the HTTP routes."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from PIL import Image
from support import AUTH, TOKENS, click_grants, serve

from app.app import create_app
from app.cli import main
from app.images import ImageChecks
from app.links import LinkSigner
from app.render import ampvalidate
from app.render.engine import Engine
from app.render.renderer import Renderer
from app.render.result import RenderResult

PUBLIC_URL = "https://kairos.example.com"
LEFTOVERS = re.compile(r"\{\{|\{%|\{#|kjx|<mj-")


@pytest.fixture
def cli_env(clean_environ, monkeypatch) -> None:
    """The CLI reads its settings from the environment: the test keys, https URLs."""
    monkeypatch.setenv("KAIROS_PUBLIC_URL", PUBLIC_URL)


def run(capsysbinary, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out.decode(), err.decode()


def run_bytes(capsysbinary, *argv: str) -> tuple[int, bytes, bytes]:
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out, err


# --- render -------------------------------------------------------------------------------


def test_render_formats_agree_with_the_json(cli_env, capsysbinary):
    code, out, err = run_bytes(
        capsysbinary, "render", "abandoned_cart", "--user", "ada", "--format", "json"
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert {"subject", "html", "amp", "text", "variant", "fallbacks"} <= set(doc)
    assert doc["amp"] and doc["html"] and doc["text"] and doc["subject"]

    code, out_html, _ = run(
        capsysbinary, "render", "abandoned_cart", "--user", "ada"
    )  # html default
    assert code == 0
    assert out_html == doc["html"]
    assert out_html.lower().startswith("<!doctype html>") and not LEFTOVERS.search(out_html)
    for fmt in ("html", "amp", "text"):
        code, out, err = run(
            capsysbinary, "render", "abandoned_cart", "--user", "ada", "--format", fmt
        )
        assert code == 0, err
        assert out == doc[fmt], fmt
    assert run(capsysbinary, "render", "abandoned_cart", "--user", "ada", "--format", "amp")[
        1
    ].startswith("<!doctype html>\n<html ⚡4email data-css-strict lang=\"en\">")

    code, out, err = run_bytes(
        capsysbinary, "render", "abandoned_cart", "--user", "ada", "--format", "mime"
    )
    assert code == 0, err
    message = email.message_from_bytes(out, policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert message["Subject"] == doc["subject"]
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "text/plain",
        "text/x-amp-html",
        "text/html",
    ]


def test_render_with_a_campaign_matches_the_http_api(cli_env, capsysbinary, settings):
    code, out, _ = run_bytes(
        capsysbinary,
        "render",
        "weekly_picks",
        "--user",
        "grace",
        "--campaign",
        "w42",
        "--format",
        "json",
    )
    assert code == 0
    doc = orjson.loads(out)

    async def over_http() -> dict:
        app = create_app(settings(KAIROS_PUBLIC_URL=PUBLIC_URL))
        async with serve(app) as client:
            r = await client.post(
                "/v1/render",
                json={"template": "weekly_picks", "user_id": "grace", "campaign": "w42"},
                headers=AUTH,
            )
            return dict(r.json())

    http = asyncio.run(over_http())
    for key in ("subject", "html", "amp", "text", "variant", "fallbacks"):
        assert doc[key] == http[key], key


def test_render_reports_fallbacks_on_stderr(cli_env, capsysbinary):
    code, out, err = run(
        capsysbinary, "render", "abandoned_cart", "--user", "nobody-cli", "--format", "text"
    )
    assert code == 0 and out.strip()
    assert "fallback: cart: missing-profile" in err


def test_render_with_a_profile_file(cli_env, capsysbinary, tmp_path: Path):
    profile = {
        "first_name": "Profilia",
        "cart": [
            {
                "sku": "SKU-1",
                "title": "Profilia brass lamp",
                "price": 39.0,
                "currency": "EUR",
                "qty": 1,
                "url": "https://shop.example.com/p/sku-1",
            }
        ],
        "consent": {"personalization": True, "tracking": True},
        "segments": ["vip"],
    }
    path = tmp_path / "reader.json"
    path.write_text(json.dumps(profile))
    code, out, err = run_bytes(
        capsysbinary,
        "render",
        "abandoned_cart",
        "--user",
        "nobody-cli",
        "--profile",
        str(path),
        "--format",
        "json",
    )
    assert code == 0, err
    doc = orjson.loads(out)
    assert "Profilia brass lamp" in doc["html"] and "Profilia brass lamp" in doc["text"]
    assert all(f["block"] != "cart" for f in doc["fallbacks"])  # the file's cart was used
    assert doc["segments"] == ["vip"]


def test_render_errors(cli_env, capsysbinary, tmp_path: Path):
    code, out, err = run(capsysbinary, "render", "no_such_template", "--user", "ada")
    assert code == 2 and not out
    assert "no template named 'no_such_template'" in err

    code, _, err = run(capsysbinary, "render", "welcome", "--user", "ada@example.org")
    assert code == 2 and "user_id" in err

    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    code, out, err = run(
        capsysbinary, "render", "welcome", "--user", "u1", "--profile", str(bad_json)
    )
    assert code == 2 and not out and "cannot read" in err

    code, _, err = run(
        capsysbinary, "render", "welcome", "--user", "u1", "--profile", str(tmp_path / "none")
    )
    assert code == 2 and "cannot read" in err

    unsafe = tmp_path / "unsafe.json"
    unsafe.write_text(json.dumps({"cart": [{"sku": "SKU-1", "url": "javascript:alert(1)"}]}))
    code, out, err = run(
        capsysbinary, "render", "abandoned_cart", "--user", "u1", "--profile", str(unsafe)
    )
    assert code == 2 and not out
    assert "cart[0].url" in err
    assert "Traceback" not in err


def test_render_amp_needs_an_https_public_url(clean_environ, monkeypatch, capsysbinary):
    monkeypatch.setenv("KAIROS_PUBLIC_URL", "http://127.0.0.1:8000")
    code, out, err = run(capsysbinary, "render", "welcome", "--user", "ada", "--format", "amp")
    assert code == 1 and not out
    assert "no amp part" in err and "https" in err


# --- check ---------------------------------------------------------------------------------


def test_check_passes_on_the_real_blocks_and_templates(
    clean_environ, capsysbinary, amp_validator_dir
):
    if not ampvalidate.available(amp_validator_dir):
        pytest.fail(
            "the official AMP validator is not installed: run `bash .ci/amp-validator`",
            pytrace=False,
        )
    code, out, err = run(capsysbinary, "check")
    assert code == 0, err
    assert out.strip() == "kairos check: ok"
    assert "validator not installed" not in err


def test_check_validates_the_amp_an_esp_sends_for_an_unsubscribe_merge_tag(
    clean_environ, capsysbinary, amp_validator_dir, tmp_path: Path, monkeypatch
):
    """A template whose unsubscribe is an ESP's merge tag: the tag is in the footer (the
    ESP replaces it), and the AMP validator sees the part as sent, with a URL there."""
    if not ampvalidate.available(amp_validator_dir):
        pytest.fail("the official AMP validator is not installed", pytrace=False)
    templates = tmp_path / "templates"
    shutil.copytree(Path(__file__).parents[1] / "templates", templates)
    for name in ("abandoned_cart", "weekly_picks"):  # (only welcome keeps Kairos's URL)
        shutil.rmtree(templates / name)
    source = templates / "welcome" / "template.json"
    doc = json.loads(source.read_text(encoding="utf-8"))
    doc["links"]["unsubscribe"] = "*|UNSUB|*"
    source.write_text(json.dumps(doc), encoding="utf-8")
    monkeypatch.setenv("KAIROS_TEMPLATES_DIR", str(templates))
    code, out, err = run(capsysbinary, "check")
    assert code == 0, err
    code, out, _ = run(capsysbinary, "render", "welcome", "--user", "ada", "--format", "html")
    assert code == 0 and 'href="*|UNSUB|*"' in out  # as written, for the ESP to replace


def test_check_reports_a_render_that_differs_from_the_per_reader_reference(
    clean_environ, capsysbinary, monkeypatch
):
    """A shared render that is not what per-reader Jinja gives is a Kairos bug: check
    names the template, sample and field. Provoked here with a reference renderer whose
    URLs point elsewhere (the real renderer, only configured differently)."""

    def elsewhere(self: Renderer) -> Renderer:
        twin = self.twin(share=False)
        twin.engine = Engine(
            signer=LinkSigner(TOKENS, "https://elsewhere.invalid", ImageChecks()),
            public_url="https://elsewhere.invalid",
            metrics=self.engine.metrics,
            globals=self.engine.globals,
            share=False,
        )
        return twin

    monkeypatch.setattr(Renderer, "reference", elsewhere)
    code, out, err = run(capsysbinary, "check", "--no-amp")
    assert code == 1
    reported = [line for line in err.splitlines() if "per-reader reference" in line]
    assert reported and all("a Kairos bug" in line for line in reported)
    assert any("weekly_picks/" in line and " in amp at character " in line for line in reported)
    assert "elsewhere.invalid" in "".join(reported)


def test_render_results_say_where_they_differ():
    def result(text: str, variant: str = "A", segments: list[str] | None = None) -> RenderResult:
        return RenderResult("Hi", "pre", None, None, text, segments or [], variant)

    base = result("Hello Ada, your cart")
    assert base.difference(result("Hello Ada, your cart")) is None
    assert base.difference(result("Hello Bea, your cart")) == (
        "text at character 6: 'Hello Ada, your cart' != 'Hello Bea, your cart'"
    )
    assert base.difference(result("Hello Ada, your cart", "B")) == (
        "variant at character 0: 'A' != 'B'"
    )
    assert base.difference(result("Hello Ada, your cart", segments=["vip"])) == (
        "segments: [] != ['vip']"
    )


# --- sign --------------------------------------------------------------------------------


async def test_sign_pixel_prints_a_working_pixel_url(cli_env, capsysbinary, settings):
    code, out, err = run(
        capsysbinary, "sign", "pixel", "--user", "ada", "--campaign", "spring-2026"
    )
    assert code == 0, err
    url = out.strip()
    assert "\n" not in url
    assert url.startswith(f"{PUBLIC_URL}/v1/px/") and url.endswith(".gif")
    token = urlsplit(url).path.removeprefix("/v1/px/").removesuffix(".gif")
    grant = TOKENS.verify("pixel", token)
    assert (grant.purpose, grant.user_id, grant.resource, grant.campaign) == (
        "pixel",
        "ada",
        "open",
        "spring-2026",
    )
    async with serve(create_app(settings())) as client:
        r = await client.get(urlsplit(url).path)
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    assert Image.open(io.BytesIO(r.content)).size == (1, 1)


async def test_sign_click_prints_a_working_click_url(cli_env, capsysbinary, settings):
    target = "https://shop.example.com/p/sku-1?utm_source=email"
    code, out, err = run(capsysbinary, "sign", "click", "--user", "ada", "--url", target)
    assert code == 0, err
    url = out.strip()
    assert url.startswith(f"{PUBLIC_URL}/c/")
    grant, reader = click_grants(url)
    assert grant.resource == target
    assert reader is not None and reader.user_id == "ada"
    async with serve(create_app(settings())) as client:
        r = await client.get(f"{urlsplit(url).path}?{urlsplit(url).query}")
    assert r.status_code == 302 and r.headers["location"] == target


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "//evil.example",
        "//evil.example/path",
        "/relative/path",
        "ftp://files.example.com/x",
        "https://",
        "https://shop.example.com/a b",
    ],
)
def test_sign_click_refuses_unsafe_targets(cli_env, capsysbinary, target):
    code, out, err = run(capsysbinary, "sign", "click", "--user", "ada", "--url", target)
    assert code == 2
    assert out == ""
    assert "kairos:" in err and "http(s)" in err


def test_sign_refuses_a_bad_user_id(cli_env, capsysbinary):
    for argv in (
        ["sign", "pixel", "--user", "ada@example.org"],
        ["sign", "click", "--user", "a b", "--url", "https://shop.example.com/"],
    ):
        code, out, err = run(capsysbinary, *argv)
        assert code == 2 and out == "" and "user_id" in err
