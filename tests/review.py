"""The email review harness: every template × each of its samples × each A/B variant,
plus readers a real list holds (unknown, hostile, a 10,000-character name, Arabic,
Hebrew, Japanese and Chinese), rendered through real HTTP (JSON and MIME), then
`review(renders)`: every rule of tests/review_checks.py over every render, as one list
of problems. The acceptance test of a finished email is `assert review(...) == []`."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from review_checks import (
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
from review_mime import mime_header_problems, mime_structure_problems
from support import AUTH

from app.render.variants import assign

CAMPAIGN = "review"
SCRIPT = '<script>alert("kx")</script>'
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
TEMPLATE = "{{ 7*7 }}{{ 1337*1001 }}"
# What must never appear in markup (the payloads as sent), and what the template
# syntax would evaluate to.
SVG = '"><svg/onload=alert(1)>'
PAYLOADS = (SCRIPT, ATTRIBUTE, SVG, "<img src=x", "<svg/onload")
EVALUATED = ("1338337",)
HOSTILE_URL = f"https://shop.example.com/p/x{ATTRIBUTE}"


@dataclass(frozen=True)
class Reader:
    """One reader of the matrix: a sample, or an extra reader with what to look for."""

    name: str
    profile: dict[str, Any] | None
    isolate: tuple[str, ...] = ()  # text in another script, to be isolated from its line
    hostile: bool = False


def _cart(*titles: str, url: str = "https://shop.example.com/p/sku-1") -> list[dict[str, Any]]:
    return [
        {"sku": f"SKU-{i}", "title": title, "price": 19.5 * i, "currency": "EUR", "qty": i,
         "image_url": f"https://shop.example.com/img/sku-{i}.jpg", "url": url}
        for i, title in enumerate(titles, 1)
    ]  # fmt: skip


def _person(first: str, last: str, locale: str, tz: str, *titles: str) -> dict[str, Any]:
    return {
        "first_name": first, "last_name": last, "locale": locale, "timezone": tz,
        "tier": "gold", "loyalty_points": 1200, "cart": _cart(*titles),
        "recommendations": [{"sku": "SKU-9", "score": 0.8}, {"sku": "SKU-6", "score": 0.7}],
        "consent": {"personalization": True, "tracking": True},
    }  # fmt: skip


HOSTILE = {
    "first_name": f"{SCRIPT}\r\nBcc: victim@evil.example {TEMPLATE}",
    "last_name": f"{ATTRIBUTE}{TEMPLATE}",
    "email": f"{SVG}@evil.example",
    "locale": "en-GB",
    "tier": SCRIPT,
    "loyalty_points": 7,
    "cart": [
        *_cart(f"{SCRIPT}{TEMPLATE}", url=HOSTILE_URL),
        {"sku": "NO-SUCH-SKU", "title": ATTRIBUTE, "qty": 1, "image_url": HOSTILE_URL},
    ],
    "recommendations": [{"sku": "SKU-9", "score": 1.0}],
    "consent": {"personalization": True, "tracking": True},
    "attributes": {"favourite_category": f"{SCRIPT}{TEMPLATE}", "nickname": ATTRIBUTE},
}
LONG_NAME = ("Maximiliana " * 910)[:10_000]  # the schema allows 100
EXTRA_READERS = (
    Reader("unknown", None),
    Reader("hostile", HOSTILE, hostile=True),
    Reader("long-name", _person(LONG_NAME, LONG_NAME, "en-GB", "Europe/London", "Lamp")),
    Reader(
        "rtl-arabic",
        _person("ليلى", "الحسيني", "ar-EG", "Africa/Cairo", "مصباح مكتب نحاسي"),
        isolate=("ليلى",),
    ),
    Reader(
        "rtl-hebrew",
        _person("נועה", "כהן", "he-IL", "Asia/Jerusalem", "מנורת שולחן מפליז"),
        isolate=("נועה",),
    ),
    Reader("cjk-japanese", _person("さくら", "佐藤", "ja-JP", "Asia/Tokyo", "真鍮のデスクランプ")),
    Reader("cjk-chinese", _person("王芳", "王", "zh-CN", "Asia/Shanghai", "黄铜台灯")),
)


@dataclass
class Render:
    """One reader's email as the server answered it, JSON and MIME."""

    template: str
    reader: Reader
    variant: str
    user_id: str
    status: int
    body: dict[str, Any]
    mime_status: int
    mime: bytes
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.template}/{self.reader.name} (variant {self.variant})"

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.mime_status == 200


def user_for(variants: dict[str, int], variant: str, stem: str) -> str:
    """A user id that `assign` puts in `variant` for the review campaign: how the matrix
    forces each variant through the public API."""
    for i in range(10_000):
        user_id = f"{stem}-{i}"
        if assign(variants, CAMPAIGN, user_id) == variant:
            return user_id
    raise AssertionError(f"no reader falls in variant {variant} of {variants}")


async def templates(client: httpx.AsyncClient, templates_dir: Path) -> dict[str, Any]:
    """Each template's variants and sample readers, as `GET /v1/templates` lists them."""
    answer = await client.get("/v1/templates", headers=AUTH)
    assert answer.status_code == 200, answer.text
    out = {}
    for entry in answer.json()["templates"]:
        assert entry["ok"], entry
        samples = tuple(
            Reader(
                f"sample-{s}",
                json.loads((templates_dir / entry["name"] / "samples" / f"{s}.json").read_text()),
            )
            for s in entry["samples"]
        )
        out[entry["name"]] = (entry["variants"], samples)
    return out


async def render(
    client: httpx.AsyncClient, template: str, reader: Reader, variant: str, user_id: str
) -> Render:
    """`reader`'s email of `template`, as POST /v1/render answers JSON and MIME."""
    doc: dict[str, Any] = {"template": template, "user_id": user_id, "campaign": CAMPAIGN}
    if reader.profile is not None:
        doc["profile"] = reader.profile
    as_json = await client.post("/v1/render", json=doc, headers=AUTH)
    as_mime = await client.post(
        "/v1/render", json=doc, headers={**AUTH, "Accept": "message/rfc822"}
    )
    return Render(
        template,
        reader,
        variant,
        user_id,
        as_json.status_code,
        as_json.json() if as_json.headers["content-type"].startswith("application/json") else {},
        as_mime.status_code,
        as_mime.content,
    )


async def render_matrix(client: httpx.AsyncClient, templates_dir: Path) -> list[Render]:
    """Every template × (samples + extra readers) × variant."""
    renders = []
    for template, (variants, samples) in (await templates(client, templates_dir)).items():
        for reader in (*samples, *EXTRA_READERS):
            for variant in sorted(v for v, weight in variants.items() if weight > 0):
                user_id = user_for(variants, variant, f"review-{reader.name}")
                renders.append(await render(client, template, reader, variant, user_id))
    return renders


def render_problems(render: Render) -> list[str]:
    """Every rule over one render's parts, each problem prefixed with the part."""
    if not render.ok:
        error = render.body.get("error", {}).get("message", "")
        return [f"answered {render.status} (MIME {render.mime_status}) {error}".rstrip()]
    html = render.body.get("html") or ""
    amp = render.body.get("amp")
    found = [
        *(f"html: {p}" for p in contrast_problems(html)),
        *(f"html: {p}" for p in heading_problems(html)),
        *(f"html: {p}" for p in link_name_problems(html)),
        *(f"html: {p}" for p in alt_problems(html)),
        *(f"html: {p}" for p in image_size_problems(html)),
        *(f"html: {p}" for p in placeholder_problems(html)),
        *(f"html: {p}" for p in lang_problems(html)),
        *(f"html: {p}" for p in dark_mode_problems(html)),
        *(f"html: {p}" for p in preheader_problems(html, render.body.get("preheader", ""))),
        *(f"html: {p}" for p in countdown_alt_problems(html)),
        *(f"html: {p}" for p in isolation_problems(html, render.reader.isolate)),
        *(f"mime: {p}" for p in mime_structure_problems(render.mime)),
        *(f"mime: {p}" for p in mime_header_problems(render.mime)),
    ]
    if amp is None:
        found.append(f"no AMP part: {render.body.get('warnings')}")
    else:
        found += [
            f"amp: {p}" for p in (*amp_problems(amp), *amp_list_problems(amp), *lang_problems(amp))
        ]
    if render.reader.hostile:
        found += injection_problems(render)
    return found


def injection_problems(render: Render) -> list[str]:
    """The hostile reader's payloads in the markup parts and evaluated anywhere."""
    body = render.body
    found = []
    for part in ("html", "amp"):
        found += [f"{part}: {p}" for p in markup_injection_problems(body.get(part) or "", PAYLOADS)]
    for part in ("subject", "preheader", "text", "html", "amp"):
        found += [f"{part}: {p}" for p in evaluated_problems(body.get(part) or "", EVALUATED)]
    found += [
        f"mime: {p}" for p in evaluated_problems(render.mime.decode(errors="replace"), EVALUATED)
    ]
    return found


def language_problems(renders: list[Render]) -> list[str]:
    """`<html lang>` is the template's language: one value for all readers of a
    template, the same in HTML and AMP (not each reader's locale)."""
    langs: dict[str, set[str]] = defaultdict(set)
    for render in renders:
        if render.ok:
            for part in ("html", "amp"):
                lang, _ = document_lang(render.body.get(part) or "")
                if lang:  # a missing one is lang_problems'
                    langs[render.template].add(lang)
    return [
        f"{template}: <html lang> follows the reader, not the template ({', '.join(sorted(found))})"
        for template, found in sorted(langs.items())
        if len(found) > 1
    ]


DETAIL = re.compile(r" \(([^()]*)\)$")


def review(renders: list[Render]) -> list[str]:
    """Every problem of every render, each kind stated once with how many renders have
    it, the first of them, and its details (the images, say): `[]` when the emails meet
    every rule."""
    where: dict[str, list[str]] = defaultdict(list)
    details: dict[str, dict[str, None]] = defaultdict(dict)
    for render in renders:
        for problem in dict.fromkeys(render_problems(render)):
            detail = DETAIL.search(problem)
            kind = problem[: detail.start()] if detail else problem
            if render.where not in where[kind]:
                where[kind].append(render.where)
            if detail:
                about = detail.group(1)
                if about.startswith("http"):  # an image: its file name says enough
                    about = about.split("?")[0].rsplit("/", 1)[-1]
                details[kind][about] = None
    out = []
    for kind, places in where.items():
        about = f" ({', '.join(details[kind])})" if details[kind] else ""
        out.append(f"{kind}{about} — {len(places)} render(s), e.g. {places[0]}")
    return out + language_problems(renders)
