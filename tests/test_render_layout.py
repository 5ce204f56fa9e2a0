"""Shared rendering (app/render/layout.py): what an email's Jinja reads of the reader
decides which of its pieces are rendered once per send and reused, with each reader's own
URLs filled in. Checked against the reference that renders every piece per reader
(`share=False`): byte for byte the same for every template and every kind of reader, in
either order; sharing really happens and leaves the per-reader parts per reader; pieces
are classified by what they read; a filter that changes a reader's URL makes its piece
per reader; unsafe targets in a shared part are reported to every reader. Then the split
click links (`/c/{link}?r={reader}`) through HTTP: with, without and with a bad reader
token, and slot links that find the reader's pick.

The templates are compiled once per module; the renders run on their own event loop in a
worker thread, so the render tests are plain functions."""

from __future__ import annotations

import asyncio
import html
import json
import random
import re
import shutil
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx
import pytest
from jinja2.filters import do_title
from support import AUTH, TOKENS, assert_error, click_grants, image_url

from app.demo import load_demo
from app.images import ImageChecks
from app.links import Links, LinkSigner
from app.profiles.schema import inline_profile
from app.render.layout import Hole, Slot, piece
from app.render.renderer import Renderer
from app.render.result import RenderResult, TemplateBroken
from app.render.variants import assign
from app.services import Services, build_services
from app.settings import PROJECT_ROOT
from app.tokens import Grant

PUBLIC_URL = "https://kairos.example.com"
CAMPAIGNS = (None, "spring", "autumn")
DEMO_READERS = ("ada", "grace", "alan", "hedy")  # in the store (app/demo/profiles.jsonl)
CLICK = re.compile(r'href="(' + re.escape(PUBLIC_URL) + r'/c/[^"]*)"')
PIXEL = re.compile(r'src="' + re.escape(PUBLIC_URL) + r'/v1/px/([^"]*)\.gif"')
UNSAFE_WARNING = "1 link(s) with unsafe targets sent home"

T = TypeVar("T")


@dataclass(frozen=True)
class Reader:
    kind: str
    user_id: str
    profile: dict[str, Any] | None  # None: the store's profile, if any
    campaign: str | None

    def __str__(self) -> str:
        return f"{self.kind} ({self.user_id}, campaign {self.campaign})"


class Engine:
    """Services built from settings with the demo data loaded, a sharing renderer and
    the per-reader reference over the same templates and store; `run(coro)` runs a
    coroutine to completion on a private event loop."""

    def __init__(self, settings: Any) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1)
        self.settings = settings
        self.services: Services = build_services(settings)
        self.run(load_demo(self.services.stores))
        self.shared = self.services.renderer
        self.plain = self.renderer(share=False)

    def renderer(self, *, share: bool) -> Renderer:
        """A fresh renderer (nothing cached yet) over the same templates and store."""
        renderer = self.services.renderer.twin(share=share)
        assert renderer.templates.current.errors == ()
        return renderer

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._pool.submit(asyncio.run, coro).result()

    def render(self, renderer: Renderer, template: str, reader: Reader) -> RenderResult:
        profile = None if reader.profile is None else inline_profile(reader.profile)
        return self.run(
            renderer.render(template, reader.user_id, profile=profile, campaign=reader.campaign)
        )

    def both(self, template: str, reader: Reader) -> tuple[RenderResult, RenderResult]:
        """The reader's render through the sharing renderer and through the reference."""
        return self.render(self.shared, template, reader), self.render(self.plain, template, reader)

    def close(self) -> None:
        self.run(self.services.stores.close())
        self._pool.shutdown()


@pytest.fixture(scope="module")
def engine(module_settings) -> Iterator[Engine]:
    """The real blocks and templates; reload off."""
    e = Engine(module_settings(KAIROS_PUBLIC_URL=PUBLIC_URL, KAIROS_RELOAD_TEMPLATES="false"))
    yield e
    e.close()


def differences(shared: RenderResult, plain: RenderResult) -> list[str]:
    """The fields (subject, html, warnings...) where two renders differ, and "json" when
    their JSON answers differ (or do not parse to `body()`); the Message-ID and Date
    every render stamps anew aside."""
    assert json.loads(shared.json()) == shared.body()
    shared, plain = shared.unstamped(), plain.unstamped()
    found = [
        f.name for f in fields(RenderResult) if getattr(shared, f.name) != getattr(plain, f.name)
    ]
    if shared.json() != plain.json() or json.loads(shared.json()) != shared.body():
        found.append("json")
    return found


def users_by_variant(variants: dict[str, int], draw: str, count: int) -> dict[str, list[str]]:
    """`count` reader ids in each variant (of weight > 0) of `draw` (campaign or template)."""
    found: dict[str, list[str]] = {name: [] for name, weight in variants.items() if weight > 0}
    for i in range(10_000):
        user = f"reader-{i}"
        ids = found[assign(variants, draw, user)]
        if len(ids) < count:
            ids.append(user)
        if all(len(ids) == count for ids in found.values()):
            return found
    raise AssertionError(f"not enough readers in some variant of {variants}")


def reader_kinds(samples: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """Every sample profile, no profile, and the full sample varied in each way that
    keys sharing: consent, locale, segments (and names, which must stay per reader)."""
    base = samples.get("full") or next(iter(samples.values()))
    vip = {**base, "segments": ["vip"]}
    kinds: dict[str, dict[str, Any] | None] = {f"sample {n}": doc for n, doc in samples.items()}
    kinds.update(
        {
            "no profile": None,
            "tracking declined": {**base, "consent": {"personalization": True, "tracking": False}},
            "personalization declined": {
                **base,
                "consent": {"personalization": False, "tracking": True},
            },
            "vip, both declined": {
                **vip,
                "consent": {"personalization": False, "tracking": False},
            },
            "de-AT": {**base, "locale": "de-AT", "first_name": "Zoë"},
            "fr-FR vip": {**vip, "locale": "fr-FR", "first_name": "Anaïs"},
            "vip": vip,
            "vip, no points": {k: v for k, v in vip.items() if k != "loyalty_points"},
            "vip and new": {**vip, "segments": ["vip", "new"], "first_name": "<b>Max</b>"},
            "not vip": {**base, "segments": []},
        }
    )
    return kinds


def sequence(renderer: Renderer, name: str) -> list[Reader]:
    """Readers of `name`: each kind in each variant of each campaign (and of none), plus
    the stored demo readers, shuffled (fixed seed) so that every kind follows others."""
    variants = renderer.compiled(name).source.variants
    kinds = reader_kinds(renderer.samples(name))
    readers = []
    for campaign in CAMPAIGNS:
        users = users_by_variant(variants, campaign or name, len(kinds))
        for variant, ids in users.items():
            for (kind, profile), user in zip(kinds.items(), ids, strict=True):
                readers.append(Reader(f"{kind} [{variant}]", user, profile, campaign))
        readers += [Reader("stored", user, None, campaign) for user in DEMO_READERS]
    random.Random(name).shuffle(readers)
    return readers


@pytest.fixture(scope="module")
def reference(engine: Engine) -> dict[str, list[tuple[Reader, RenderResult]]]:
    """Each template's reader sequence and the per-reader reference render of each."""
    out = {}
    for name in engine.shared.names():
        readers = sequence(engine.shared, name)
        out[name] = [(r, engine.render(engine.plain, name, r)) for r in readers]
    return out


# --- shared renders are the per-reader renders -------------------------------------------


def mismatches(
    engine: Engine, renderer: Renderer, name: str, renders: list[tuple[Reader, RenderResult]]
) -> list[str]:
    """Where `renderer`'s render of each reader differs from the expected one."""
    problems = []
    for i, (reader, expected) in enumerate(renders):
        diff = differences(engine.render(renderer, name, reader), expected)
        if diff:
            problems.append(f"{name} #{i} {reader}: {diff}")
    return problems


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_shared_renders_are_byte_for_byte_the_per_reader_renders(engine, reference, order):
    renderer = engine.renderer(share=True)
    assert {"welcome", "abandoned_cart", "weekly_picks"} <= set(reference)
    problems = []
    for name, renders in reference.items():
        problems += mismatches(engine, renderer, name, renders[:: -1 if order == "reverse" else 1])
    assert problems == []
    assert len(renderer.engine.fragments) > 0  # it did share
    assert len(engine.plain.engine.fragments) == 0  # the reference never does


def test_the_sequences_vary_what_keys_sharing(reference):
    """The readers above really differ in each value sharing is keyed by."""
    for name, renders in reference.items():
        seen: dict[str, set[Any]] = {k: set() for k in ("variant", "campaign", "locale")}
        seen |= {"consent": set(), "segments": set(), "fallbacks": set()}
        for reader, result in renders:
            profile = reader.profile or {}
            consent = profile.get("consent") or {}
            seen["variant"].add(result.variant)
            seen["campaign"].add(reader.campaign)
            seen["locale"].add(profile.get("locale"))
            seen["consent"].add((consent.get("personalization"), consent.get("tracking")))
            seen["segments"].add(tuple(result.segments))
            seen["fallbacks"].add(json.dumps(result.fallbacks))
        assert seen["variant"] == {"A", "B"}, name
        assert seen["campaign"] == set(CAMPAIGNS), name
        assert {"de-AT", "fr-FR", "en-GB"} <= seen["locale"], name
        assert {(True, False), (False, True), (False, False)} <= seen["consent"], name
        assert {(), ("vip",), ("vip", "new")} <= seen["segments"], name
        assert len(seen["fallbacks"]) >= 2, name  # blocks shown to some, fallen back for others


# --- sharing happens, per-reader parts stay per reader -----------------------------------


def click_urls(markup: str) -> list[str]:
    return [html.unescape(u) for u in CLICK.findall(markup)]


def pixel_grant(markup: str) -> Grant:
    [token] = set(PIXEL.findall(markup))
    return TOKENS.verify("pixel", unquote(token))


def test_a_second_reader_of_the_same_send_reuses_what_the_first_rendered(engine):
    renderer = engine.renderer(share=True)
    compiled = renderer.compiled("weekly_picks")
    first_id, second_id = users_by_variant(compiled.source.variants, "spring", 2)["A"]
    full = renderer.samples("weekly_picks")["full"]
    first = Reader("Ada", first_id, {**full, "first_name": "Ada"}, "spring")
    second = Reader("Bea", second_id, {**full, "first_name": "Bea"}, "spring")

    ada = engine.render(renderer, "weekly_picks", first)
    cached = len(renderer.engine.fragments)
    assert cached > 0
    bea = engine.render(renderer, "weekly_picks", second)
    assert len(renderer.engine.fragments) == cached  # nothing new to render once per send
    assert differences(bea, engine.render(engine.plain, "weekly_picks", second)) == []

    for result, user, name, other in (
        (ada, first_id, "Ada", "Bea"),
        (bea, second_id, "Bea", "Ada"),
    ):
        assert result.variant == "A"
        for part in (result.subject, result.html, result.text):
            assert part is not None and name in part and other not in part
        urls = click_urls(result.html or "") + click_urls(result.amp or "")
        assert len(urls) > 5
        for url in urls:
            link, reader = click_grants(url)
            assert (link.user_id, link.campaign) == ("", "spring")
            assert reader is not None and (reader.user_id, reader.campaign) == (user, "spring")
        for part in (result.html, result.amp):
            grant = pixel_grant(part or "")
            assert (grant.user_id, grant.resource, grant.campaign) == (user, "open", "spring")
        feed = re.search(r'src="([^"]*/v1/feeds/recommendations\?t=[^"&]*)', result.amp or "")
        assert feed is not None
        token = parse_qs(urlsplit(html.unescape(feed[1])).query)["t"][0]
        assert TOKENS.verify("feed", token).user_id == user
    # the link tokens are the same for both readers; only the reader tokens differ
    assert {u.split("?")[0] for u in click_urls(ada.html or "")} == {
        u.split("?")[0] for u in click_urls(bea.html or "")
    }

    # another campaign is another send: its shared parts are rendered anew
    engine.render(renderer, "weekly_picks", Reader("Ada", first_id, first.profile, "autumn"))
    assert len(renderer.engine.fragments) > cached


def test_only_the_pieces_that_read_the_reader_are_rendered_per_reader(engine):
    """After renders of every kind of weekly_picks reader, the holes of the skeletons (the
    pieces Jinja runs per reader) are only pieces that read the reader: no shared piece
    fell back to per reader (what a filter changing a reader's URL would cause)."""
    renderer = engine.renderer(share=True)
    full = renderer.samples("weekly_picks")["full"]
    variants = users_by_variant(renderer.compiled("weekly_picks").source.variants, "spring", 1)
    for variant, (user,) in variants.items():
        for profile in (full, {**full, "consent": {"tracking": False}}, None):
            engine.render(renderer, "weekly_picks", Reader(variant, user, profile, "spring"))
    holes = [
        part.piece
        for skeleton in renderer.engine.fragments.skeletons.values()
        for part in skeleton.parts
        if isinstance(part, Hole)
    ]
    assert holes
    assert all(hole.keyed is None for hole in holes)


def test_a_product_card_is_rendered_once_for_every_reader_shown_it(engine):
    """The grid's loop over recommendations is shared per product: a second reader shown
    the same products reuses the cards (with their own reader token in the links)."""
    renderer = engine.renderer(share=True)
    compiled = renderer.compiled("weekly_picks")
    grid = next(
        item
        for item in compiled.html
        if isinstance(item, Slot) and compiled.blocks[item.index].name == "product_grid"
    )
    assert grid.main is not None and [body.item for body in grid.main.bodies] == ["product"]
    text_grid = compiled.text.items[grid.index]
    assert isinstance(text_grid, Slot) and text_grid.main is not None
    assert [(body.item, body.html) for body in text_grid.main.bodies] == [("product", False)]
    # Each compiled template numbers its own loop bodies (nothing global to grow when
    # designers' edits recompile templates).
    assert {*grid.main.bodies, *text_grid.main.bodies} <= set(compiled.bodies)
    assert len(compiled.bodies) < 10
    first_id, second_id = users_by_variant(compiled.source.variants, "spring", 2)["A"]
    full = renderer.samples("weekly_picks")["full"]
    ada = engine.render(renderer, "weekly_picks", Reader("Ada", first_id, full, "spring"))
    cards = len(renderer.engine.fragments.bodies)
    assert cards >= 3
    bea = engine.render(renderer, "weekly_picks", Reader("Bea", second_id, full, "spring"))
    assert len(renderer.engine.fragments.bodies) == cards
    for result, user in ((ada, first_id), (bea, second_id)):
        readers = {click_grants(url)[1] for url in click_urls(result.html or "")}
        assert {grant.user_id for grant in readers if grant is not None} == {user}
        # The text part's cards too: plain URLs (not HTML-escaped), the reader's own.
        plain = re.findall(re.escape(PUBLIC_URL) + r"/c/\S+", result.text or "")
        assert len(plain) >= 3 and not any("&amp;" in url for url in plain)
        assert {click_grants(url)[1].user_id for url in plain} == {user}  # type: ignore[union-attr]


def test_a_template_cannot_change_the_data_it_is_given(probe):
    """The sandbox is immutable: lists and dicts (products shared by every reader among
    them) cannot be changed by a template; the render answers 422 naming the template."""
    with pytest.raises(TemplateBroken, match="mutating_t.*sandbox"):
        probe.render(probe.shared, "mutating_t", Reader("x", "x", None, None))


# --- what a piece reads decides how it is shared ---------------------------------------------

STATIC_BLOCKS = {"header", "hero", "countdown", "divider", "text", "footer"}
READER_BLOCKS = {"greeting", "product_grid"}


def test_static_blocks_are_shared_and_reader_blocks_are_per_reader(engine):
    compiled = engine.shared.compiled("weekly_picks")
    names = [block.name for block in compiled.blocks]
    assert STATIC_BLOCKS | READER_BLOCKS <= set(names)
    for fmt in ("html", "amp", "text"):
        slots = {names[i.index]: i for i in getattr(compiled, fmt) if isinstance(i, Slot)}
        assert set(slots) == set(names), fmt
        for name in STATIC_BLOCKS:
            main = slots[name].main
            assert main is not None and main.keyed is not None, (fmt, name)
        for name in READER_BLOCKS:
            main = slots[name].main
            assert main is not None and main.keyed is None, (fmt, name)
        # the grid's fallback (category tiles) reads no reader: shared
        grid_fallback = slots["product_grid"].fallback
        assert grid_fallback is not None and grid_fallback.keyed is not None, fmt
        # click links key a piece by `links` (campaign, tracking consent)
        header, divider = slots["header"].main, slots["divider"].main
        assert header is not None and "links" in (header.keyed or ()), fmt
        assert divider is not None and divider.keyed == (), fmt


@pytest.mark.parametrize(
    ("text", "keyed"),
    [
        ("{{ params.x }}", ()),
        ("{{ theme.accent }} {{ template_links.home }}", ()),
        ("{% for p in params.items %}{{ loop.index }}{{ p }}{% endfor %}", ()),
        ("{% set n = params.n %}{{ range(n) | join(',') }}", ()),
        ("{{ first_name }}", None),
        ("{{ user_id }}", None),
        ("{{ cart | length }}", None),
        ("{{ params.items | random }}", None),
        ("{{ params.url | click }}", ("links",)),
        ("{% filter click %}https://shop.example.com/{% endfilter %}", ("links",)),
        # `url` is no per-send name (it could be the reader's): per reader
        ("{{ url | click }}", None),
        ("{{ variant }}", ("variant",)),
        ("{% if consent.tracking %}{{ links.pixel() }}{% endif %}", ("consent", "links")),
        ("{{ campaign }} {{ locale }} {{ segments | join }}", ("campaign", "locale", "segments")),
        ("{{ lipsum() }}", None),
        ("{{ params.urls | map('click') | join }}", ("links",)),
        ("{{ params.lists | map('random') | join }}", None),
    ],
)
def test_what_a_piece_reads_decides_how_it_is_shared(engine, text, keyed):
    assert piece(engine.shared.templates.environments.html, text, Path("probe.mjml")).keyed == keyed


# --- a block's params, evaluated into its Jinja once ---------------------------------------

FOLD_PARAMS = {
    "title": "Tom & Jerry's caf\u00e9 <b>",
    "count": 6,
    "price": 12.5,
    "on": True,
    "off": False,
    "none": None,
    "url": "https://shop.example.com/x?a=1&b=2",
    "items": ["a", "b"],
}


@pytest.mark.parametrize(
    "text",
    [
        "{{ params.title }}|{{ params['title'] }}|{{ params.title | upper }}",
        "{{ params.count * 2 }} {{ 330 * ((params.count + 2) // 3) }} {{ params.price }}",
        "{{ params.none }} {{ params.on }} {{ params.missing | default('dflt') }}",
        "{% if params.on %}A{% elif params.off %}B{% else %}C{% endif %}",
        "{% if params.off %}A{% elif params.on %}B{% else %}C{% endif %}",
        "{% if params.off %}A{% elif params.none %}B{% else %}C{% endif %}",
        "{% if name %}N{% elif params.off %}B{% elif params.on %}C{% else %}D{% endif %}",
        "{% if params.off %}A{% elif name %}N {{ params.title }}{% endif %}",
        "{% for i in params.items %}{{ i }}{{ params.count }}{% endfor %}",
        "{% set params = {'title': 'its own'} %}{{ params.title }}",
        "{% for params in [{'title': 'loop'}] %}{{ params.title }}{% endfor %}{{ params.title }}",
        "{{ name }}: {{ params.title if name else params.url }}",
    ],
)
@pytest.mark.parametrize("name", ["Ada <3", ""])
def test_params_folded_into_a_piece_render_as_read_at_render_time(engine, text, name):
    envs = engine.shared.templates.environments
    for env in (envs.html, envs.text):
        folded = piece(env, text, Path("probe.mjml"), FOLD_PARAMS)
        plain = piece(env, text, Path("probe.mjml"))
        ctx = {**env.globals, "params": FOLD_PARAMS, "name": name}
        assert folded.render(ctx) == plain.render(ctx), (text, env.autoescape)
        if env.autoescape:
            assert folded.render(ctx).isascii()


def test_folded_params_are_not_read_at_render_time(engine):
    text = "{% if params.on %}{{ params.title }}{% else %}never{% endif %} {{ params.count }}"
    env = engine.shared.templates.environments.html
    folded = piece(env, text, Path("probe.mjml"), FOLD_PARAMS)
    # No `params` in the context at all: what is printed was evaluated when compiled.
    assert folded.render(dict(env.globals)) == "Tom &amp; Jerry&#39;s caf&#233; &lt;b&gt; 6"
    clicked = piece(env, "{{ params.url | click }}", Path("probe.mjml"), FOLD_PARAMS)
    assert clicked.keyed == ("links",)  # a filter reading the render stays a render's


@pytest.mark.parametrize(
    "value", ["gold", "gOLD", "x", "", "mary-jane o'neil", "3rd", "\u01c6ungla", "anna maria", 42]
)
def test_the_title_filter_is_jinjas(engine, value):
    env = engine.shared.templates.environments.text
    ours = env.from_string("{{ value | title }}").render(value=value)
    assert ours == do_title(str(value))


# --- probe blocks: mangled reader URLs, unsafe targets, clicks through map -------------------

HOME = "https://shop.example.com/home-page"
MAPPED = "https://shop.example.com/mapped"
# Reader URLs changed by a filter, each in its own block (so each piece is told apart
# on its own): urlencoded, upper-cased, and the same URL both as it is and urlencoded.
MANGLED = {
    "urlencoded": "FEED[{{ links.feed('cart') | urlencode }}]",
    "upper": "PIXEL[{{ links.pixel() | upper }}]",
    "twice": (
        "TWICE[{{ links.feed('recommendations') }} {{ links.feed('recommendations') | urlencode }}]"
    ),
}
UNSAFE = "{{ 'javascript:alert(1)' | click }}"
# Every per-send name, read by shared pieces (the real templates read most of them only
# in per-reader pieces or through which blocks are shown).
PER_SEND = (
    "{{ variant }}|{{ campaign }}|{{ locale }}|{{ consent.personalization }}|"
    "{{ consent.tracking }}|{{ segments | join(',') }}|{{ params.label }}"
)


def probe_block(jinja: str, **files: str) -> dict[str, str]:
    """A block's files showing `jinja` in every format (plus `files`)."""
    return {
        **files,
        "block.mjml": f"<mj-section><mj-column><mj-text>{jinja}</mj-text></mj-column>"
        "</mj-section>\n",
        "block.amp.html": f"<p>{jinja}</p>\n",
        "block.txt": f"{jinja}\n",
    }


PROBE_BLOCKS = {
    **{name: probe_block(jinja) for name, jinja in MANGLED.items()},
    "per_send": probe_block(
        PER_SEND, **{"block.json": json.dumps({"description": "probe", "params": {"label": "P"}})}
    ),
    "unsafe": {
        "block.mjml": (
            f'<mj-section><mj-column><mj-text><a href="{UNSAFE}">UNSAFE</a></mj-text>'
            "</mj-column></mj-section>\n"
        ),
        "block.amp.html": f'<p><a href="{UNSAFE}">UNSAFE</a></p>\n',
        "block.txt": f"UNSAFE: {UNSAFE}\n",
    },
    "mutating": {
        "block.json": json.dumps({"description": "probe", "params": {"items": [1]}}),
        "block.mjml": (
            "<mj-section><mj-column><mj-text>{{ params['items'].append(2) }}"
            "</mj-text></mj-column></mj-section>\n"
        ),
    },
    "mapped": {
        "block.json": json.dumps({"description": "probe", "params": {"urls": [MAPPED]}}),
        "block.mjml": (
            "<mj-section><mj-column><mj-text>MAPPED: {{ params.urls | map('click') | join }}"
            "</mj-text></mj-column></mj-section>\n"
        ),
        "block.txt": "MAPPED: {{ params.urls | map('click') | join }}\n",
    },
}
PROBE_TEMPLATES: dict[str, list[Any]] = {
    "per_send_t": [
        "divider",
        "per_send",
        {"block": "per_send", "when": {"variant": "B"}, "params": {"label": "B only"}},
        {"block": "per_send", "when": {"segment": "vip"}, "params": {"label": "vip only"}},
    ],
    "mangled_t": ["header", "greeting", *MANGLED, "footer"],
    "unsafe_t": ["header", "unsafe", "footer"],
    "mapped_t": ["divider", "mapped"],  # no other click link in its text part
    "mutating_t": ["mutating"],
}


@pytest.fixture(scope="module")
def probe(module_settings, module_sources_copy) -> Iterator[Engine]:
    blocks, templates = module_sources_copy(templates=False)
    for name, files in PROBE_BLOCKS.items():
        (blocks / name).mkdir()
        (blocks / name / "block.json").write_text(json.dumps({"description": "probe"}))
        for filename, text in files.items():
            (blocks / name / filename).write_text(text)
    for name, used in PROBE_TEMPLATES.items():
        (templates / name).mkdir()
        subject = "Probe {{ variant }} {{ locale }} {{ campaign }} {{ segments | join }}"
        doc = {"subject": subject, "variants": {"A": 50, "B": 50}, "links": {"home": HOME}}
        (templates / name / "template.json").write_text(json.dumps({**doc, "blocks": used}))
    shutil.copytree(
        PROJECT_ROOT / "templates" / "weekly_picks" / "samples",
        templates / "per_send_t" / "samples",
    )
    e = Engine(
        module_settings(
            KAIROS_PUBLIC_URL=PUBLIC_URL,
            KAIROS_RELOAD_TEMPLATES="false",
            KAIROS_BLOCKS_DIR=blocks,
            KAIROS_TEMPLATES_DIR=templates,
        )
    )
    assert set(e.shared.names()) == set(PROBE_TEMPLATES)
    yield e
    e.close()


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_per_send_name_a_shared_piece_reads_keys_its_copies(probe, order):
    renders = [
        (r, probe.render(probe.plain, "per_send_t", r))
        for r in sequence(probe.shared, "per_send_t")
    ]
    renderer = probe.renderer(share=True)
    assert (
        mismatches(probe, renderer, "per_send_t", renders[:: -1 if order == "reverse" else 1]) == []
    )
    # one copy per layout (subject, preheader, html, amp, text) and send, reused
    assert 0 < len(renderer.engine.fragments) < 5 * len(renders)


def marked(label: str, text: str) -> str:
    found = re.search(re.escape(label) + r"\[([^\]]*)\]", text)
    assert found is not None, label
    return found[1]


PROBE_READERS = [
    Reader("stored", "ada", None, "spring"),
    Reader("stored, no tracking", "grace", None, "spring"),  # declined in the demo data
    Reader("stored, again", "ada", None, "spring"),
    Reader("inline", "tess", {"first_name": "Tess"}, "autumn"),
    Reader("inline, no campaign", "tess", {"first_name": "Tess"}, None),
]


def test_a_piece_whose_reader_urls_a_filter_changes_gets_each_readers_own_urls(probe):
    for reader in PROBE_READERS:
        shared, plain = probe.both("mangled_t", reader)
        assert differences(shared, plain) == [], str(reader)
        user, campaign = reader.user_id, reader.campaign
        cart = (
            f"{PUBLIC_URL}/v1/feeds/cart?t={TOKENS.sign('feed', user, 'cart', campaign=campaign)}"
        )
        recommendations = TOKENS.sign("feed", user, "recommendations", campaign=campaign)
        # The pixel carries the variant of a campaign's render (its opens count for it).
        variant = shared.variant if campaign else None
        pixel_token = TOKENS.sign("pixel", user, "open", campaign=campaign, variant=variant)
        pixel = f"{PUBLIC_URL}/v1/px/{quote(pixel_token)}.gif"
        for part in (shared.html, shared.amp, shared.text):
            assert part is not None
            feed = unquote(marked("FEED", part))
            assert feed == cart, str(reader)
            grant = TOKENS.verify("feed", parse_qs(urlsplit(feed).query)["t"][0])
            assert (grant.user_id, grant.resource, grant.campaign) == (user, "cart", campaign)
            assert marked("PIXEL", part) == pixel.upper(), str(reader)
            plain_url, encoded = marked("TWICE", part).split(" ")
            assert html.unescape(plain_url) == unquote(encoded)
            assert html.unescape(plain_url).endswith(f"?t={recommendations}"), str(reader)
            assert "\x00" not in part


def test_unsafe_targets_in_a_shared_part_are_sent_home_for_every_reader(probe):
    renderer = probe.renderer(share=True)
    readers = [
        *PROBE_READERS,
        Reader("no tracking", "tess", {"consent": {"tracking": False}}, "spring"),
    ]
    for reader in readers:
        result = probe.render(renderer, "unsafe_t", reader)
        assert differences(result, probe.render(probe.plain, "unsafe_t", reader)) == []
        assert result.warnings == [UNSAFE_WARNING], str(reader)
        hrefs = []
        for part in (result.html, result.amp):
            assert part is not None and "javascript:" not in part.lower()
            hrefs += re.findall(r'href="([^"]*)"[^>]*>UNSAFE<', part)
        assert result.text is not None and "javascript:" not in result.text.lower()
        hrefs += re.findall(r"UNSAFE: (\S+)", result.text)
        assert len(hrefs) == 3, str(reader)
        for href in map(html.unescape, hrefs):
            if "no tracking" in reader.kind:
                assert href == HOME
                continue
            link, reader_grant = click_grants(href)
            assert (link.resource, link.campaign) == (HOME, reader.campaign), str(reader)
            assert reader_grant is not None and reader_grant.user_id == reader.user_id
    assert len(renderer.engine.fragments) > 0


def test_a_click_through_map_is_signed_for_the_readers_campaign(probe):
    """The text part of `mapped_t` reads `links` only through map('click'): shared across
    campaigns, the second campaign gets the first one's link token (which its reader
    token does not match: the link answers 403)."""
    renderer = probe.renderer(share=True)
    for campaign in ("spring", "autumn"):
        reader = Reader("inline", "tess", {"first_name": "Tess"}, campaign)
        result = probe.render(renderer, "mapped_t", reader)
        found = re.search(r"MAPPED: (\S+)", result.text or "")
        assert found is not None
        link, reader_grant = click_grants(found[1])
        assert reader_grant is not None and reader_grant.campaign == campaign
        assert (link.resource, link.campaign) == (MAPPED, campaign)


# --- the click route ---------------------------------------------------------------------------

TARGET = "https://shop.example.com/p/sku-1?utm_source=kairos"
FALLBACK = "https://shop.example.com/new"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def redirect(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def test_a_rendered_click_link_redirects_with_or_without_its_reader(render_client):
    r = await render_client.post(
        "/v1/render",
        json={"template": "weekly_picks", "user_id": "ada", "campaign": "spring"},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    urls = click_urls(r.json()["html"])
    assert urls
    for url in urls[:3]:
        link, reader = click_grants(url)
        assert link.user_id == "" and reader is not None and reader.user_id == "ada"
        path = path_of(url)
        assert await redirect(render_client, path) == link.resource
        bare = path.split("?")[0]
        assert await redirect(render_client, bare) == link.resource  # `r` lost: unattributed
        assert await redirect(render_client, f"{bare}?r=") == link.resource


async def test_a_bad_reader_token_is_403_never_a_redirect(render_client):
    link = TOKENS.sign("click", "", TARGET, campaign="spring")
    good = TOKENS.sign("reader", "ada", "", campaign="spring")
    assert await redirect(render_client, f"/c/{link}?r={good}") == TARGET
    body, _, signature = good.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in [
        f"{body}.{flipped}",  # tampered
        good[:-3],  # truncated
        "not-a-token",
        TOKENS.sign("reader", "ada", "", campaign="autumn"),  # another campaign
        TOKENS.sign("reader", "ada", ""),  # no campaign
        TOKENS.sign("click", "ada", "", campaign="spring"),  # another purpose
        TOKENS.sign("click", "", TARGET, campaign="spring"),
        TOKENS.sign("pixel", "ada", "open", campaign="spring"),
    ]:
        r = await render_client.get(f"/c/{link}", params={"r": bad})
        assert_error(r, 403, "bad_token")
        assert "location" not in r.headers
    # a link without a campaign takes only a reader token without one
    no_campaign = TOKENS.sign("click", "", TARGET)
    anonymous = TOKENS.sign("reader", "ada", "")
    assert await redirect(render_client, f"/c/{no_campaign}?r={anonymous}") == TARGET
    assert_error(await render_client.get(f"/c/{no_campaign}?r={good}"), 403, "bad_token")
    # a click token that names its reader itself needs no `r`
    own = TOKENS.sign("click", "ada", TARGET, campaign="spring")
    assert await redirect(render_client, f"/c/{own}") == TARGET


async def test_a_slot_link_finds_the_readers_pick_through_its_reader_token(render_client):
    def slot_link(user: str) -> str:
        signer = LinkSigner(TOKENS, PUBLIC_URL, ImageChecks())
        return Links(signer, PUBLIC_URL, user, "spring", HOME).product_click(0, FALLBACK)

    ada, grace = slot_link("ada"), slot_link("grace")
    link, reader = click_grants(ada)
    assert (link.user_id, link.resource, link.params) == ("", FALLBACK, {"slot": 0})
    assert reader is not None and reader.user_id == "ada"
    bare = path_of(ada).split("?")[0]
    assert path_of(grace).split("?")[0] == bare  # one link token for every reader

    assert await redirect(render_client, path_of(ada)) == FALLBACK  # no pick yet
    r = await render_client.get(image_url("product", "ada", campaign="spring", slot=0))
    assert r.status_code == 200 and "x-kairos-fallback" not in r.headers
    assert await redirect(render_client, path_of(ada)) == "https://shop.example.com/p/sku-9"
    assert await redirect(render_client, bare) == FALLBACK  # no reader, no pick
    assert await redirect(render_client, path_of(grace)) == FALLBACK  # grace has none
