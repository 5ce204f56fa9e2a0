"""The renderer: every template, for every sample profile and for a reader with no profile,
in every A/B variant, gives a complete email (subject, HTML without leftover template or
MJML syntax, text, and an AMP part the official validator passes); variants, consent,
fallbacks and escaping of reader data.

The templates are compiled once per module; the renders run on their own event loop in
a worker thread, so these tests are plain functions."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from app.demo import load_demo
from app.errors import KairosError
from app.profiles.schema import inline_profile
from app.render import ampvalidate
from app.render.amp import MAX_DOCUMENT_BYTES
from app.render.renderer import Renderer
from app.render.result import FORMATS, RenderResult
from app.render.sources import When
from app.render.variants import assign
from app.services import Services, build_services
from app.settings import PROJECT_ROOT

PUBLIC_URL = "https://kairos.example.com"
REQUIRED_TEMPLATES = {"welcome", "abandoned_cart", "weekly_picks"}
NO_PROFILE = "(no profile)"
# Template or MJML syntax that must never reach a reader.
LEFTOVERS = re.compile(r"\{\{|\{%|\{#|kjx|kjs\d|<mj-|</mj-")
AMP_LEFTOVERS = re.compile(r"\{%|\{#-|-#\}|kjx|kjs\d|<mj-|</mj-")  # amp-mustache keeps {{ }}
AMP_START = re.compile(
    r'<!doctype html>\s*<html ⚡4email data-css-strict lang="[A-Za-z0-9-]+"( dir="rtl")?>'
)
VALIDATOR_MISSING = (
    "the official AMP validator is not installed: run `bash .ci/amp-validator` "
    "(the project's test command, .ci/test, installs it)"
)

T = TypeVar("T")


class Engine:
    """Services built from settings, the demo data loaded; `run(coro)` runs a coroutine
    to completion on a private event loop."""

    def __init__(self, settings: Any) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.services: Services = build_services(settings)
        self.run(load_demo(self.services.stores))

    @property
    def renderer(self) -> Renderer:
        return self.services.renderer

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._pool.submit(asyncio.run, coro).result()

    def render(
        self,
        template: str,
        user_id: str,
        profile: dict[str, Any] | None = None,
        *,
        campaign: str | None = None,
        formats: tuple[str, ...] = FORMATS,
    ) -> RenderResult:
        clean = None if profile is None else inline_profile(profile)
        return self.run(
            self.renderer.render(
                template, user_id, profile=clean, campaign=campaign, formats=formats
            )
        )

    def close(self) -> None:
        self.run(self.services.stores.close())
        self._pool.shutdown()


def one_reader_per_variant(variants: dict[str, int], campaign: str) -> dict[str, str]:
    """A reader id that falls in each variant (of weight > 0) of `campaign`."""
    found: dict[str, str] = {}
    wanted = {name for name, weight in variants.items() if weight > 0}
    for i in range(10_000):
        found.setdefault(assign(variants, campaign, f"reader-{i}"), f"reader-{i}")
        if set(found) == wanted:
            return found
    raise AssertionError(f"no reader found for some variant of {variants}")


@pytest.fixture(scope="module")
def engine(module_settings) -> Iterator[Engine]:
    """The real blocks and templates; reload off, so a designer saving a file mid-run
    does not recompile under the tests."""
    e = Engine(module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_RELOAD_TEMPLATES="false"))
    yield e
    e.close()


@dataclass(frozen=True)
class Case:
    template: str
    sample: str
    variant: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.template}/{self.sample} (variant {self.variant})"


@dataclass(frozen=True)
class Rendered:
    cases: dict[Case, RenderResult]
    errors: dict[str, str]  # templates that do not compile or render, and why


@pytest.fixture(scope="module")
def rendered(engine: Engine) -> Rendered:
    """Every template x (each sample profile + no profile) x each variant."""
    renderer = engine.renderer
    cases: dict[Case, RenderResult] = {}
    errors: dict[str, str] = {}
    for name in renderer.names():
        try:
            variants = renderer.compiled(name).source.variants
            samples: dict[str, dict[str, Any] | None] = dict(renderer.samples(name))
        except KairosError as exc:
            errors[name] = exc.message
            continue
        samples[NO_PROFILE] = None
        for variant, user_id in one_reader_per_variant(variants, name).items():
            for sample, doc in samples.items():
                case = Case(name, sample, variant, user_id)
                try:
                    cases[case] = engine.render(name, user_id, doc)
                except KairosError as exc:
                    errors[str(case)] = exc.message
    return Rendered(cases, errors)


BROKEN_AMP = "(a deliberately broken AMP email)"


@pytest.fixture(scope="module")
def verdicts(rendered: Rendered, amp_validator_dir) -> dict[str, ampvalidate.Verdict] | None:
    """The official validator's verdict on every AMP part, in one run (with one broken
    document, to show that a PASS means something)."""
    if not ampvalidate.available(amp_validator_dir):
        return None  # the test fails, saying how to install it
    documents = {str(case): r.amp for case, r in rendered.cases.items() if r.amp is not None}
    documents[BROKEN_AMP] = (
        '<!doctype html><html ⚡4email><head></head><body><img src="x.png"></body></html>'
    )
    return ampvalidate.validate(documents, amp_validator_dir)


def problems_in(rendered: Rendered, check: Any) -> list[str]:
    problems = []
    for case, result in rendered.cases.items():
        problem = check(case, result)
        if problem:
            problems.append(f"{case}: {problem}")
    return problems


# --- every template, every sample, every variant ------------------------------------------


def test_every_template_compiles_and_renders(engine, rendered):
    names = engine.renderer.names()
    assert REQUIRED_TEMPLATES <= set(names)
    assert rendered.errors == {}
    for name in names:
        samples = {c.sample for c in rendered.cases if c.template == name}
        variants = {c.variant for c in rendered.cases if c.template == name}
        assert NO_PROFILE in samples
        source = engine.renderer.compiled(name).source
        assert variants == {v for v, w in source.variants.items() if w > 0}
        assert samples == {*engine.renderer.samples(name), NO_PROFILE}


def test_subject_html_and_text_are_complete(rendered):
    def check(case: Case, r: RenderResult) -> str | None:
        if not r.subject.strip():
            return "empty subject"
        if LEFTOVERS.search(r.subject) or "\n" in r.subject:
            return f"subject {r.subject!r}"
        if LEFTOVERS.search(r.preheader):
            return f"preheader {r.preheader!r}"
        if not r.html or "</html>" not in r.html.lower():
            return "no HTML document"
        leftover = LEFTOVERS.search(r.html)
        if leftover:
            at = leftover.start()
            return f"HTML holds {leftover.group()!r}: ...{r.html[at - 60 : at + 60]!r}..."
        if not r.text or not r.text.strip():
            return "empty text part"
        leftover = LEFTOVERS.search(r.text)
        if leftover:
            return f"text holds {leftover.group()!r}"
        if r.variant != case.variant:
            return f"variant {r.variant}, expected {case.variant}"
        if r.warnings:
            return f"warnings {r.warnings}"
        return None

    assert problems_in(rendered, check) == []


def test_amp_part_is_an_amp_email_within_the_size_limit(rendered):
    def check(case: Case, r: RenderResult) -> str | None:
        if r.amp is None:
            return "no AMP part"
        if not r.amp.startswith("<!doctype html>") or not AMP_START.match(r.amp):
            return f"AMP starts with {r.amp[:60]!r}"
        size = len(r.amp.encode())
        if size > MAX_DOCUMENT_BYTES:
            return f"AMP is {size} bytes, over {MAX_DOCUMENT_BYTES}"
        leftover = AMP_LEFTOVERS.search(r.amp)
        if leftover:
            return f"AMP holds {leftover.group()!r}"
        return None

    assert problems_in(rendered, check) == []


def test_amp_passes_the_official_validator(rendered, verdicts):
    if verdicts is None:
        pytest.fail(VALIDATOR_MISSING, pytrace=False)
    assert verdicts.pop(BROKEN_AMP).status == "FAIL"  # the validator is really checking
    assert len(verdicts) == len(rendered.cases)
    failed = {name: [v.status, *v.errors[:5]] for name, v in verdicts.items() if v.status != "PASS"}
    assert failed == {}


def test_without_an_https_public_url_amp_is_null_with_a_warning(module_settings):
    engine = Engine(module_settings(KAIROS_PUBLIC_URL="http://127.0.0.1:8000"))
    try:
        for name in engine.renderer.names():
            result = engine.render(name, "ada")
            assert result.amp is None, name
            assert any("https" in w for w in result.warnings), (name, result.warnings)
            assert result.html and result.text
            # asking for the AMP part alone: still no AMP, still the warning
            only_amp = engine.render(name, "ada", formats=("amp",))
            assert only_amp.amp is None and only_amp.html is None and only_amp.text is None
            assert only_amp.warnings
    finally:
        engine.close()


# --- fallbacks -----------------------------------------------------------------------------


def test_a_reader_with_no_profile_gets_fallbacks_named_with_their_reason(engine, rendered):
    no_profile = {c: r for c, r in rendered.cases.items() if c.sample == NO_PROFILE}
    assert no_profile
    for case, result in no_profile.items():
        block_names = {b.name for b in engine.renderer.compiled(case.template).blocks}
        for fallback in result.fallbacks:
            assert set(fallback) == {"block", "reason"}, case
            assert fallback["block"] in block_names, case
            # the store had nothing for them: that is the reason for every fallback
            assert fallback["reason"] == "missing-profile", (str(case), fallback)
        personal = {
            b.name
            for use, b in zip(
                engine.renderer.compiled(case.template).source.blocks,
                engine.renderer.compiled(case.template).blocks,
                strict=True,
            )
            if b.personal and shown(use.when, case.variant, [], personalization=True)
        }
        assert personal <= {f["block"] for f in result.fallbacks}, str(case)


def test_abandoned_cart_without_a_profile_falls_back_for_the_cart(engine):
    result = engine.render("abandoned_cart", "nobody-at-all")
    assert {"block": "cart", "reason": "missing-profile"} in result.fallbacks
    assert result.subject and result.html and result.text and result.amp
    assert "/v1/feeds/cart" not in result.amp  # no live cart for a reader we do not know


def test_a_profile_without_the_data_a_block_needs(engine):
    result = engine.render("abandoned_cart", "empty-cart", {"first_name": "Em", "cart": []})
    assert {"block": "cart", "reason": "missing-data:cart"} in result.fallbacks
    assert all(f["reason"] != "missing-profile" for f in result.fallbacks)


# --- consent ---------------------------------------------------------------------------------

CART_TITLES = ("Zanzibar velvet ottoman", "Quillon brass candlestick")


def consenting(personalization: bool, tracking: bool = True) -> dict[str, Any]:
    return {
        "first_name": "Nora",
        "tier": "gold",
        "loyalty_points": 720,
        "cart": [
            {
                "sku": "SKU-1",
                "title": CART_TITLES[0],
                "price": 99.0,
                "currency": "EUR",
                "qty": 1,
                "url": "https://shop.example.com/p/ottoman",
            },
            {"sku": "SKU-2", "title": CART_TITLES[1], "qty": 2},
        ],
        "recommendations": [{"sku": "SKU-9", "score": 0.9}],
        "consent": {"personalization": personalization, "tracking": tracking},
        "segments": ["vip"],
    }


def shown(when: When, variant: str, segments: list[str], *, personalization: bool) -> bool:
    """Whether a block's `when` lets it through (the template's own conditions)."""
    return not (
        (when.variant is not None and when.variant != variant)
        or (when.segment is not None and when.segment not in segments)
        or (when.not_segment is not None and when.not_segment in segments)
        or (when.consent == "personalization" and not personalization)
    )


def test_without_personalization_consent_no_behavioural_block_is_shown(engine):
    for name in engine.renderer.names():
        compiled = engine.renderer.compiled(name)
        for variant, user_id in one_reader_per_variant(compiled.source.variants, name).items():
            result = engine.render(name, user_id, consenting(False))
            outputs = {
                "subject": result.subject,
                "html": result.html,
                "amp": result.amp,
                "text": result.text,
            }
            for part, output in outputs.items():
                for title in CART_TITLES:
                    assert title not in (output or ""), f"{name}/{variant}: {title!r} in {part}"
            assert "/v1/feeds/cart" not in (result.amp or ""), f"{name}/{variant}"
            fallen = {f["block"]: f["reason"] for f in result.fallbacks}
            for use, block in zip(compiled.source.blocks, compiled.blocks, strict=True):
                if block.personal and shown(use.when, variant, ["vip"], personalization=False):
                    assert fallen.get(block.name) == "no-consent", (name, variant, block.name)
            for block_name, reason in fallen.items():
                assert reason in ("no-consent",) or reason.startswith("missing-data:"), (
                    name,
                    block_name,
                    reason,
                )


def test_abandoned_cart_with_and_without_personalization_consent(engine):
    declined = engine.render("abandoned_cart", "nora", consenting(False))
    assert {"block": "cart", "reason": "no-consent"} in declined.fallbacks
    allowed = engine.render("abandoned_cart", "nora", consenting(True))
    assert all(f["block"] != "cart" for f in allowed.fallbacks)
    assert allowed.html and CART_TITLES[0] in allowed.html
    assert allowed.text and CART_TITLES[0] in allowed.text


# --- A/B variants ----------------------------------------------------------------------------


def test_assignment_is_deterministic_and_follows_the_weights():
    half = {"A": 50, "B": 50}
    users = [f"user-{i}" for i in range(1000)]
    first = [assign(half, "spring", u) for u in users]
    assert first == [assign(half, "spring", u) for u in users]
    assert 400 <= first.count("B") <= 600
    quarter = [assign({"A": 1, "B": 3}, "spring", u) for u in users]
    assert 650 <= quarter.count("B") <= 850
    assert {assign({"A": 0, "B": 7}, "spring", u) for u in users} == {"B"}
    # the campaign is part of the draw: the same reader lands in both across campaigns
    assert {assign(half, f"campaign-{i}", "user-1") for i in range(50)} == {"A", "B"}


@pytest.fixture(scope="module")
def ab_engine(module_settings, tmp_path_factory) -> Iterator[Engine]:
    """The real blocks with a template whose hero differs by variant."""
    templates = tmp_path_factory.mktemp("ab-templates")
    for css in (PROJECT_ROOT / "templates").glob("*.css"):
        (templates / css.name).write_text(css.read_text())
    hero = {
        "image_url": "https://shop.example.com/img/x.jpg",
        "image_alt": "x",
        "eyebrow": "e",
        "body": "b",
        "cta_label": "Go",
        "cta_url": "https://shop.example.com/go",
    }
    doc = {
        "subject": "{{ variant }} for you",
        "variants": {"A": 50, "B": 50},
        "links": {"home": "https://shop.example.com/"},
        "blocks": [
            "header",
            {
                "block": "hero",
                "when": {"variant": "A"},
                "params": {**hero, "headline": "ONLYAMARK"},
            },
            {
                "block": "hero",
                "when": {"variant": "B"},
                "params": {**hero, "headline": "ONLYBMARK"},
            },
            "footer",
        ],
    }
    (templates / "ab").mkdir()
    (templates / "ab" / "template.json").write_text(json.dumps(doc))
    e = Engine(
        module_settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_TEMPLATES_DIR=templates,
            KAIROS_RELOAD_TEMPLATES="false",
        )
    )
    yield e
    e.close()


def test_variant_blocks_are_shown_only_to_their_variant(ab_engine):
    counts = {"A": 0, "B": 0}
    for i in range(200):
        user = f"reader-{i}"
        result = ab_engine.render("ab", user, campaign="autumn")
        assert result.variant == assign({"A": 50, "B": 50}, "autumn", user)
        assert ab_engine.render("ab", user, campaign="autumn").variant == result.variant
        counts[result.variant] += 1
        mine, other = (
            ("ONLYAMARK", "ONLYBMARK") if result.variant == "A" else ("ONLYBMARK", "ONLYAMARK")
        )
        for output in (result.html, result.amp, result.text):
            assert output is not None
            assert mine in output and other not in output, (user, result.variant)
        assert result.subject == f"{result.variant} for you"
    assert 60 <= counts["B"] <= 140, counts


def test_without_a_campaign_the_template_name_is_the_draw(ab_engine):
    for i in range(50):
        user = f"reader-{i}"
        expected = assign({"A": 50, "B": 50}, "ab", user)
        assert ab_engine.render("ab", user, formats=("text",)).variant == expected


def test_real_templates_assign_variants_per_campaign_and_reader(engine):
    for name in engine.renderer.names():
        variants = engine.renderer.compiled(name).source.variants
        for i in range(20):
            user = f"reader-{i}"
            result = engine.render(name, user, campaign="c1", formats=("text",))
            assert result.variant == assign(variants, "c1", user)
            again = engine.render(name, user, campaign="c1", formats=("text",))
            assert again.variant == result.variant
            assert again.text == result.text


# --- reader data is data ---------------------------------------------------------------------


def test_reader_data_is_escaped_in_every_template(engine):
    """A name holding markup or Jinja comes out as text: escaped in HTML and AMP, never
    evaluated anywhere."""
    hostile = {
        "first_name": "{{ 7*7 }}<script>alert(1)</script>",
        "last_name": "<script>alert(1)</script>",
        "cart": [{"sku": "SKU-1", "title": "<b onmouseover=alert(2)>{{ 6*7 }}</b>", "qty": 1}],
    }
    plain = {
        **hostile,
        "first_name": "Plainname",
        "cart": [{"sku": "SKU-1", "title": "Tt", "qty": 1}],
    }
    for name in engine.renderer.names():
        bad = engine.render(name, "reader-x", hostile)
        good = engine.render(name, "reader-x", plain)
        for part in ("html", "amp"):
            output = getattr(bad, part) or ""
            assert "<script>alert" not in output, (name, part)
            assert "<b onmouseover" not in output, (name, part)
            # never evaluated: no more 49s or 42s than with a plain name
            assert output.count("49") == (getattr(good, part) or "").count("49"), (name, part)
            assert output.count("42") == (getattr(good, part) or "").count("42"), (name, part)
        if "Plainname" in (good.html or ""):
            assert "{{ 7*7 }}&lt;script&gt;alert(1)&lt;/script&gt;" in (bad.html or ""), name
        if "Plainname" in (good.text or ""):
            assert "{{ 7*7 }}<script>alert(1)</script>" in (bad.text or ""), name  # plain text
        if "Plainname" in good.subject:
            assert "{{ 7*7 }}" in bad.subject and "49" not in bad.subject, name


def test_reader_data_beyond_ascii_reads_the_same_in_every_part(engine):
    """A name or product title in any script comes out as the reader wrote it: as
    character references in HTML and AMP (escaped once, never twice), as itself in the
    text part and the subject."""
    name = "Zo\u00eb \u00c5sa \u5c71\u7530 & <Co>"
    title = "Caf\u00e9 cr\u00e8me \u2013 \u00e0 l'ancienne"
    profile = {"first_name": name, "cart": [{"sku": "SKU-1", "title": title, "qty": 1}]}
    for template in engine.renderer.names():
        result = engine.render(template, "reader-u", profile)
        for part in ("html", "amp"):
            output = getattr(result, part) or ""
            assert output.replace("\u26a1", "").isascii(), (
                template,
                part,
            )  # but <html \u26a14email>
            assert "&amp;#" not in output, (template, part)  # a reference escaped again
            if name in html.unescape(output):
                assert "Zo&#235; &#197;sa &#23665;&#30000; &amp; &lt;Co&gt;" in output
        text = result.text or ""
        assert "&#" not in text and "&amp;" not in text, template
        if "Zo" in text:
            assert name in text, template
        if "Zo" in result.subject:
            assert name in result.subject, template
    # The demo templates greet by name in every part: the checks above did run.
    welcome = engine.render("welcome", "reader-u", profile)
    assert name in html.unescape(welcome.html or "") and name in (welcome.text or "")


def test_reader_data_a_template_does_not_read_is_not_looked_up(engine):
    """weekly_picks shows no cart: a render of it never asks the catalog for the
    reader's cart products; abandoned_cart does."""
    store, catalog = engine.services.stores.catalog, engine.services.catalog
    asked: list[str] = []
    real = store.get_products

    async def get_products(skus: Any) -> Any:
        asked.extend(skus)
        return await real(skus)

    profile = {"first_name": "Cy", "cart": [{"sku": "SKU-ONLY-IN-CART", "qty": 1}]}
    store.get_products = get_products  # type: ignore[method-assign]
    try:
        for template, looked_up in (("weekly_picks", False), ("abandoned_cart", True)):
            catalog.clear()
            asked.clear()
            result = engine.render(template, "reader-c", profile)
            assert result.html and "Cy" in result.html
            assert ("SKU-ONLY-IN-CART" in asked) is looked_up, (template, asked)
            assert asked or not looked_up  # the catalog was asked for something at all
    finally:
        store.get_products = real  # type: ignore[method-assign]
        catalog.clear()
    assert "cart" not in engine.renderer.compiled("weekly_picks").reads
    assert {"cart", "recommendations"} <= engine.renderer.compiled("abandoned_cart").reads


def test_html_pages_are_in_the_templates_language_not_the_readers(engine):
    result = engine.render("welcome", "reader-l", {"first_name": "Lin", "locale": "de-AT"})
    assert result.html is not None
    head = result.html[: result.html.lower().find("<head")]
    assert 'lang="en"' in head and "de-AT" not in result.html


def test_render_result_body_is_the_api_shape(engine):
    result = engine.render("welcome", "ada")
    body = result.body()
    assert {
        "subject",
        "preheader",
        "html",
        "amp",
        "text",
        "segments",
        "variant",
        "fallbacks",
    } <= set(body)
    assert body["html"] == result.html and body["variant"] == result.variant
