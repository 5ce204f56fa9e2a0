"""The review's checks (tests/review_checks.py, tests/review_mime.py,
tests/review_html.py) and `review()` itself on small hand-made documents: each passes a
good one and names what is wrong in a bad one, so that `assert review(...) == []` means
something. Also the Chromium driver's cropping and its message when Chromium is missing."""

from __future__ import annotations

from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from chromium import END, chromium, marked, trim
from PIL import Image
from review import Reader, Render, review
from review_checks import (
    accessible_name,
    alt_problems,
    amp_list_problems,
    amp_problems,
    contrast_problems,
    countdown_alt_problems,
    dark_mode_problems,
    document_lang,
    evaluated_problems,
    heading_problems,
    image_size_problems,
    isolation_problems,
    lang_problems,
    link_name_problems,
    markup_injection_problems,
    placeholder_problems,
    preheader_problems,
)
from review_html import colour, parse
from review_mime import mime_header_problems, mime_structure_problems

from app.render.contrast import ratio as contrast

PREHEADER = "Your cart is waiting"
FILLER = "\u034f\u00a0" * 10
GOOD_HTML = f"""<!doctype html>
<html lang="en" dir="ltr"><head>
<meta name="color-scheme" content="light dark">
<meta name="supported-color-schemes" content="light dark">
<style>@media (prefers-color-scheme: dark) {{ body {{ background: #111 !important; }} }}</style>
</head><body style="background-color:#f4f5f7">
<div style="display:none;max-height:0;overflow:hidden">{PREHEADER}{FILLER}</div>
<table><tr><td bgcolor="#1d3b36">
  <h1 style="color:#ffffff">Hi <bdi dir="auto">ليلى</bdi>,</h1>
  <img src="https://kairos.example.com/v1/img/countdown.gif?t=x" width="560" height="120"
       alt="Sale ends 24 December" style="color:#ffffff;background-color:#1d3b36">
</td></tr>
<tr><td style="background-color:#ffffff;color:#1f2933">
  <p>Two things in your cart.</p>
  <a href="https://x.example/c/1" style="color:#b4472a">Shop the lamp</a>
  <a href="https://x.example/c/2" style="color:#b4472a"><img src="https://x.example/2.jpg"
     width="80" height="80" alt="Shop the cushion" style="background-color:#f4f5f7"></a>
  <a href="https://x.example/c/2" style="color:#b4472a">Shop the cushion</a>
</td></tr></table></body></html>"""
GOOD_AMP = """<!doctype html><html ⚡4email lang="en"><head>
<script async src="https://cdn.ampproject.org/v0.js"></script>
<style amp-custom>.card { width: 50% } @media (max-width: 480px) { .card { width: 100% } }</style>
</head><body><amp-img src="https://x.example/1.jpg" width="80" height="80" alt="Lamp"></amp-img>
</body></html>"""


def mime(
    *, headers: bool = True, order: tuple[str, ...] = ("plain", "x-amp-html", "html")
) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = "Your cart"
    if headers:
        message["Date"] = "Sun, 06 Dec 2026 20:00:00 +0000"
        message["Message-ID"] = "<r1.abc@mail.example.com>"
        message["List-Unsubscribe"] = "<https://kairos.example.com/u/tok>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    first, *rest = order
    message.set_content("text", subtype=first, charset="utf-8")
    for subtype in rest:
        message.add_alternative("<p>x</p>", subtype=subtype, charset="utf-8")
    return message.as_bytes()


def test_colours_parse_and_contrast_follows_wcag():
    assert colour("#fff") == (255, 255, 255)
    assert colour(" #1D3B36 ") == (29, 59, 54)
    assert colour("rgb(10, 20, 30)") == (10, 20, 30)
    assert colour("rgba(10,20,30,0.5)") is None  # see-through: its result is unknown
    assert colour("white") == (255, 255, 255)
    assert colour("inherit") is None
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    # Near black, sRGB's linear segment; #767676, the lightest grey that passes on white.
    assert contrast((5, 5, 5), (255, 255, 255)) == pytest.approx(20.38, abs=0.01)
    assert contrast((118, 118, 118), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)
    # The footer's grey on its panel, as the issue measured it.
    assert contrast(colour("#7b8794"), colour("#f4f5f7")) == pytest.approx(3.36, abs=0.01)  # type: ignore[arg-type]


def test_contrast_takes_colours_from_the_element_and_its_ancestors():
    assert contrast_problems(GOOD_HTML) == []
    bad = """<body><table bgcolor="#f4f5f7"><tr><td style="color:#7b8794">
      <p>Footer <span>text</span></p></td></tr></table>
      <div style="background:#1d3b36 url(x.png)"><a href="https://x.example/"><img alt="Sale"
        src="x.gif" width="1" height="1"></a></div>
      <div style="display:none;color:#fff">hidden preheader</div></body>"""
    problems = contrast_problems(bad)
    assert problems == [
        "contrast 3.36:1 (< 4.5) of text 'Footer': #7b8794 on #f4f5f7",
        "contrast 3.36:1 (< 4.5) of text 'text': #7b8794 on #f4f5f7",
        "contrast 1.29:1 (< 4.5) of alt text 'Sale': #0000ee on #1d3b36",
    ]


def test_headings():
    assert heading_problems(GOOD_HTML) == []
    assert heading_problems("<body><h3>Small</h3><p>Text</p></body>") == ["no h1 or h2 heading"]
    assert heading_problems("<body><h2></h2></body>") == ["an empty <h2>", "no h1 or h2 heading"]


def test_links_need_a_name_and_one_name_leads_to_one_place():
    assert link_name_problems(GOOD_HTML) == []
    link = parse('<a href="x" aria-label="Lamp, €39">Shop now</a>').find_all("a")[0]
    assert accessible_name(link) == "Lamp, €39"
    bad = """<body><a href="https://x.example/c/1">Shop now</a><a href="https://x.example/c/2">
      shop NOW</a><a href="https://x.example/c/3"><img src="i.png" alt=""></a></body>"""
    assert link_name_problems(bad) == [
        "a link without an accessible name (https://x.example/c/3)",
        "2 links named 'Shop now' lead to different places",
    ]


def test_images_need_alt_and_a_pixel_size():
    assert alt_problems(GOOD_HTML) == alt_problems(GOOD_AMP) == []
    assert image_size_problems(GOOD_HTML) == image_size_problems(GOOD_AMP) == []
    bad = '<img src="a.png" width="140" height="auto"><amp-img src="b.png" alt="B"></amp-img>'
    assert alt_problems(bad) == ["an image without alt (a.png)"]
    assert image_size_problems(bad) == [
        "an image without a pixel height (a.png)",
        "an image without a pixel width and height (b.png)",
    ]
    assert image_size_problems('<img src="c.png" alt="" style="width:80px;height:80px">') == []


def test_image_placeholders_keep_a_background_colour():
    assert placeholder_problems(GOOD_HTML) == []
    bad = """<img src="a.png" width="80" height="80" alt="A" style="border:0">
      <img src="px.gif" width="1" height="1" alt="">
      <img src="b.png" width="80" height="80" alt="B" style="background:#eee">"""
    assert placeholder_problems(bad) == ["an image placeholder without a background colour (a.png)"]


def test_lang_and_dir():
    assert document_lang(GOOD_HTML) == ("en", "ltr")
    assert lang_problems(GOOD_HTML) == lang_problems(GOOD_AMP) == []
    assert lang_problems("<html><body></body></html>") == ["<html> has no lang"]
    assert lang_problems('<html lang="en GB" dir="up">') == [
        "<html lang='en GB'> is not a language tag",
        "<html dir='up'> is not ltr, rtl or auto",
    ]


def test_a_name_in_another_script_must_be_isolated_from_its_line():
    assert isolation_problems(GOOD_HTML, ["ليلى"]) == []
    # A dir on the whole body does not isolate the name within "Hi …,".
    bad = '<html><body><div dir="auto"><p>Hi ليلى,</p></div></body></html>'
    assert isolation_problems(bad, ["ليلى"]) == [
        "a name in another script is not isolated by <bdi> or dir (Hi ليلى,)"
    ]


def test_amp_needs_its_marker_and_media_rules():
    assert amp_problems(GOOD_AMP) == []
    assert amp_problems("<html><head><style amp-custom>.a{}</style></head></html>") == [
        "not an AMP for Email document (<html ⚡4email>)",
        "<style amp-custom> has no @media rule (no layout for a 375 px screen)",
    ]
    assert amp_problems("<html ⚡4email><head></head></html>") == ["no <style amp-custom>"]
    no_media = GOOD_AMP.replace("@media (max-width: 480px) { .card { width: 100% } }", "")
    assert amp_problems(no_media) == [
        "<style amp-custom> has no @media rule (no layout for a 375 px screen)"
    ]


def test_an_amp_list_must_be_able_to_grow():
    src = 'src="https://k.example/v1/feeds/cart?t=x" items="."'
    grows = (
        f'<amp-list {src} layout="fixed-height" height="216"><template></template>'
        '<div overflow role="button">See more</div></amp-list>'
        f'<amp-list {src} layout="fixed-height" height="216" [height]="h"></amp-list>'
        f'<amp-list {src} layout="flex-item"></amp-list>'
    )
    assert amp_list_problems(grows) == []
    clipped = f'<amp-list {src} layout="fixed-height" height="216"><template></template></amp-list>'
    assert amp_list_problems(clipped) == [
        "an amp-list held to 216 px clips a longer live list (cart)"
    ]


def test_dark_mode_preheader_and_countdown_alt():
    assert dark_mode_problems(GOOD_HTML) == []
    assert dark_mode_problems("<html><head></head></html>") == [
        'no <meta name="color-scheme" content="light dark">',
        'no <meta name="supported-color-schemes" content="light dark">',
        "no @media (prefers-color-scheme: dark) palette",
    ]
    assert preheader_problems(GOOD_HTML, PREHEADER) == []
    assert preheader_problems(GOOD_HTML.replace(FILLER, ""), PREHEADER) == [
        "the preheader is not followed by filler (the preview runs on)"
    ]
    assert preheader_problems("<p>Your cart is waiting</p>", PREHEADER) == [
        "the preheader is not in the HTML as hidden text"
    ]
    assert countdown_alt_problems(GOOD_HTML) == []
    assert countdown_alt_problems(GOOD_HTML.replace("Sale ends 24 December", "Time left")) == [
        "the countdown's alt 'Time left' does not carry the deadline"
    ]


def test_markup_injection_and_evaluated_reader_data():
    payloads = ('<script>alert("kx")</script>', '"><img src=x onerror=alert(1)>')
    escaped = "<p>Hi &lt;script&gt;alert(&#34;kx&#34;)&lt;/script&gt; {{ 7*7 }}</p>"
    assert markup_injection_problems(escaped, payloads) == []
    assert markup_injection_problems(GOOD_AMP, payloads) == []  # AMP's own runtime
    raw = f'<p>Hi {payloads[0]}</p><a href="https://x.example/{payloads[1]}">x</a>'
    assert markup_injection_problems(raw, payloads) == [
        "a <script> that is not AMP's: 'alert(\"kx\")'",
        "<img> has event handler attributes ['onerror']",
        f"the payload {payloads[0]!r} appears unescaped",
        "the payload '\"><img src=x onerror=alert(1)>' appears unescaped",
    ]
    assert evaluated_problems("Hi {{ 1337*1001 }}", ["1338337"]) == []
    assert evaluated_problems("Hi 1338337", ["1338337"]) == [
        "'1338337' appears: reader data was evaluated"
    ]


def test_mime_structure_and_headers():
    assert mime_structure_problems(mime()) == []
    assert mime_header_problems(mime()) == []
    assert mime_structure_problems(mime(order=("plain", "html"))) == []  # no AMP part
    assert mime_structure_problems(mime(order=("html", "x-amp-html", "plain"))) == [
        "parts ('text/html', 'text/x-amp-html', 'text/plain'), not "
        "('text/plain', 'text/x-amp-html', 'text/html')"
    ]
    assert mime_header_problems(mime(headers=False)) == [
        "no Date header",
        "no Message-ID header",
        "no List-Unsubscribe header",
    ]
    without_post = mime().replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", b"")
    assert mime_header_problems(without_post) == [
        "List-Unsubscribe without List-Unsubscribe-Post: List-Unsubscribe=One-Click"
    ]


def _render(html: str, amp: str, raw: bytes, reader: str = "sample-full") -> Render:
    body = {"html": html, "amp": amp, "text": "Hi", "subject": "Your cart", "preheader": PREHEADER}
    return Render("cart", Reader(reader, {}), "A", "u1", 200, body, 200, raw)


def test_review_is_empty_for_a_good_email_and_names_each_problem_once():
    good = _render(GOOD_HTML, GOOD_AMP, mime())
    assert review([good, good]) == []
    bad_html = GOOD_HTML.replace("<h1", "<p").replace("</h1>", "</p>")
    bad = [_render(bad_html, GOOD_AMP, mime(headers=False), r) for r in ("sample-a", "sample-b")]
    fr = _render(GOOD_HTML.replace('lang="en"', 'lang="fr"'), GOOD_AMP, mime(), "french")
    failed = Render(
        "cart", Reader("long", {}), "B", "u2", 422, {"error": {"message": "x"}}, 422, b""
    )
    assert review([*bad, fr, failed]) == [
        "html: no h1 or h2 heading — 2 render(s), e.g. cart/sample-a (variant A)",
        "mime: no Date header — 2 render(s), e.g. cart/sample-a (variant A)",
        "mime: no Message-ID header — 2 render(s), e.g. cart/sample-a (variant A)",
        "mime: no List-Unsubscribe header — 2 render(s), e.g. cart/sample-a (variant A)",
        "answered 422 (MIME 422) x — 1 render(s), e.g. cart/long (variant B)",
        "cart: <html lang> follows the reader, not the template (en, fr)",
    ]


def test_trim_crops_at_the_end_bar_and_says_when_the_email_does_not_fit(tmp_path: Path):
    assert marked("<html><body><p>x</p></body></html>") == (
        '<html><body><p>x</p><div style="height:8px;margin:0;background-color:#ff00fe">'
        "</div></body></html>"
    )
    shot = tmp_path / "shot.png"
    image = Image.new("RGB", (60, 500), (255, 255, 255))
    image.paste((29, 59, 54), (10, 20, 50, 300))
    image.paste(END, (0, 310, 60, 318))
    image.save(shot)
    assert trim(shot) == 310
    with Image.open(shot) as cropped:
        assert cropped.size == (60, 310)
        assert cropped.getpixel((20, 299)) == (29, 59, 54)
    # No bar in the window: the email ran past its bottom.
    Image.new("RGB", (60, 500), (255, 255, 255)).save(shot)
    assert trim(shot) is None


def test_a_missing_chromium_fails_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", "")
    with pytest.raises(AssertionError, match=r"bash \.ci/test` installs it"):
        chromium()
