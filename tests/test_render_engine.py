"""The per-reader engine (app/render/engine.py) on its own: a pure function of the
compiled template, the reader and the reader's data (no store, no file, nothing
awaited); which blocks a reader is shown, and why a fallback; what it keeps for readers
alike, and lets go when a new version of the templates comes.

The templates are compiled once per module (a registry over the real files)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support import TOKENS

from app.fallbacks import Reason
from app.images import ImageChecks
from app.links import LinkSigner
from app.metrics import Metrics
from app.render.engine import Engine, _mode
from app.render.registry import TemplateRegistry, compile_folder
from app.render.sources import Block, When
from app.settings import PROJECT_ROOT

PUBLIC_URL = "https://kairos.example.com"
ADA = {"first_name": "Ada", "tier": "gold", "consent": {"personalization": True}}
NO_DATA: dict[str, Any] = {"cart": [], "recommendations": []}


@pytest.fixture(scope="module")
def templates() -> Iterator[TemplateRegistry]:
    registry = TemplateRegistry(PROJECT_ROOT / "blocks", PROJECT_ROOT / "templates", reload=False)
    assert registry.load() == []
    yield registry
    registry.close()


def engine_for(templates: TemplateRegistry, *, share: bool = True, url: str = PUBLIC_URL) -> Engine:
    return Engine(
        signer=LinkSigner(TOKENS, url, ImageChecks()),
        public_url=url,
        metrics=Metrics(),
        globals=templates.environments.globals,
        share=share,
    )


def test_a_render_is_a_function_of_its_inputs(templates):
    engine = engine_for(templates)
    compiled = templates.compiled("welcome")
    first = engine.render(compiled, "ada", ADA, NO_DATA, None, "spring")
    again = engine.render(compiled, "ada", ADA, NO_DATA, None, "spring")
    fresh = engine_for(templates).render(compiled, "ada", ADA, NO_DATA, None, "spring")
    # Every render is stamped with its own Message-ID; the rest is the same.
    assert first.unstamped().json() == again.unstamped().json() == fresh.unstamped().json()
    assert first.headers["Message-ID"] != again.headers["Message-ID"]
    assert "Ada" in first.subject


def test_the_shared_engine_and_the_reference_render_the_same(templates):
    shared, reference = engine_for(templates), engine_for(templates, share=False)
    for name in templates.names():
        compiled = templates.compiled(name)
        for profile in (ADA, None, {"first_name": "Grace"}):
            a = shared.render(compiled, "grace", profile, NO_DATA, None, "autumn")
            b = reference.render(compiled, "grace", profile, NO_DATA, None, "autumn")
            assert a.difference(b) is None
    assert len(shared.fragments) > 0 and len(reference.fragments) == 0


def test_what_readers_share_is_let_go_when_a_new_version_comes(templates):
    engine = engine_for(templates)
    compiled = templates.compiled("welcome")
    engine.render(compiled, "ada", ADA, NO_DATA, None, None)
    kept = len(engine.fragments)
    assert kept > 0
    engine.render(compiled, "grace", ADA, NO_DATA, None, None)
    assert len(engine.fragments) == kept  # the same version: kept
    envs = templates.environments
    recompiled = compile_folder(
        templates.blocks_dir, templates.templates_dir, envs, version="newer", fold=True
    )
    newer = recompiled.compiled["welcome"]
    engine.render(newer, "ada", ADA, NO_DATA, None, None)
    # Only what the new version made: the last version's skeletons went.
    layouts = (newer.html, newer.amp, newer.text, newer.subject, newer.preheader)
    assert 0 < len(engine.fragments) <= kept
    assert all(key[0] in layouts for key in engine.fragments.skeletons)


def test_without_an_https_public_url_there_is_no_amp_part(templates):
    engine = engine_for(templates, url="http://kairos.example.com")
    result = engine.render(templates.compiled("welcome"), "ada", ADA, NO_DATA, None, None)
    assert result.amp is None and result.html
    assert result.warnings == ["no AMP part: KAIROS_PUBLIC_URL must be https for AMP"]


def test_fallbacks_are_named_and_counted(templates):
    engine = engine_for(templates)
    result = engine.render(
        templates.compiled("abandoned_cart"), "ada", None, NO_DATA, Reason.STORE_UNAVAILABLE, None
    )
    reasons = {f["block"]: f["reason"] for f in result.fallbacks}
    assert reasons["cart"] == Reason.STORE_UNAVAILABLE
    counted = engine.metrics.fallbacks.labels("block", "cart", Reason.STORE_UNAVAILABLE)
    assert counted.value == 1


# --- which blocks a reader is shown ---------------------------------------------------


def block(*, personal: bool = False, needs: tuple[str, ...] = ()) -> Block:
    folder = PROJECT_ROOT / "blocks" / "text"
    parts: list[Any] = [None] * 3
    return Block("b", folder, *parts, "", *parts, personal=personal, needs=needs)


@pytest.mark.parametrize(
    ("when", "kind", "ctx", "segments", "consent", "reason", "expected"),
    [
        (When(), {}, {}, [], (True, True), None, ("main", None)),
        (When(variant="B"), {}, {}, [], (True, True), None, ("hidden", None)),
        (When(variant="A"), {}, {}, [], (True, True), None, ("main", None)),
        (When(segment="vip"), {}, {}, ["new"], (True, True), None, ("hidden", None)),
        (When(segment="vip"), {}, {}, ["vip"], (True, True), None, ("main", None)),
        (When(not_segment="vip"), {}, {}, ["vip"], (True, True), None, ("hidden", None)),
        (When(consent="tracking"), {}, {}, [], (True, False), None, ("hidden", None)),
        (When(), {"personal": True}, {}, [], (False, True), None, ("fallback", "no-consent")),
        (When(), {"personal": True}, {}, [], (False, True), "store-unavailable",
         ("fallback", "store-unavailable")),
        (When(), {"needs": ("cart",)}, {"cart": []}, [], (True, True), None,
         ("fallback", "missing-data:cart")),
        (When(), {"needs": ("first_name",)}, {"first_name": ""}, [], (True, True), None,
         ("fallback", "missing-data:first_name")),
        (When(), {"needs": ("cart",)}, {"cart": [1]}, [], (True, True), None, ("main", None)),
        # Hidden wins over a fallback: a block not for this reader is not replaced.
        (When(variant="B"), {"personal": True}, {}, [], (False, True), None, ("hidden", None)),
    ],
)  # fmt: skip
def test_each_block_is_shown_hidden_or_replaced_by_its_fallback(
    when, kind, ctx, segments, consent, reason, expected
):
    personalization, tracking = consent
    found = _mode(
        block(**kind),
        when,
        ctx,
        segments,
        "A",
        {"personalization": personalization, "tracking": tracking},
        reason,
    )
    assert (found[0], None if found[1] is None else str(found[1])) == expected
