"""Campaign A/B figures (app/campaigns/, app/routes/campaigns.py, the campaign stores):
sends counted per variant at render, once per reader, never for previews or readers who
declined tracking; opens and clicks from the links a render signed, counted per variant,
once per reader, people and machines apart; erasure; the figures of
`GET /v1/campaigns/{campaign}/stats` checked against values computed here by hand from
the formulas; `kairos stats`. Every test runs on the embedded store and on a real
redis-server."""

from __future__ import annotations

import html
import math
import re
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from support import API_KEY, AUTH, TOKENS, assert_error, free_port, serve
from test_cli import running_server  # noqa: F401 (a fixture: `kairos serve`, embedded)

from app.app import create_app
from app.cli import main
from app.stores.protocols import Mark, Tally

HUMAN_UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko)"
PIXEL = re.compile(r"\ssrc=\"([^\"]*/v1/px/[^\"]*)\"")
CLICK = re.compile(r"\shref=\"([^\"]*/c/[^\"]*)\"")
Z_975 = 1.959963984540054  # the normal quantile at 0.975, from tables


async def settled(app: Starlette) -> None:
    await app.state.services.tracker.drained()


async def stats(client: httpx.AsyncClient, campaign: str, **query: Any) -> dict[str, Any]:
    r = await client.get(f"/v1/campaigns/{campaign}/stats", params=query, headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["variant"]: row for row in doc["variants"]}


async def render(client: httpx.AsyncClient, user: str, campaign: str | None, **body: Any) -> Any:
    doc = {"template": "welcome", "user_id": user, **body}
    if campaign is not None:
        doc["campaign"] = campaign
    r = await client.post("/v1/render", json=doc, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def local(url: str) -> str:
    parts = urlsplit(html.unescape(url))
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


# --- sends ------------------------------------------------------------------------------


async def test_each_reader_is_one_send_of_its_variant(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    readers = [f"r{i}" for i in range(24)]
    inline = {"first_name": "Lin"}
    sent: dict[str, int] = {"A": 0, "B": 0}
    for user in readers:
        first = await render(any_client, user, "spring", profile=inline)
        again = await render(any_client, user, "spring", profile=inline)  # a re-send
        assert first["variant"] == again["variant"]
        sent[first["variant"]] += 1
    # The batch counts too, and a reader it renders again is no second send.
    lines = "\n".join(
        f'{{"user_id": "{u}", "campaign": "spring", "profile": {{}}}}' for u in ("r0", "b1")
    )
    r = await any_client.post(
        "/v1/render/batch?template=welcome",
        content=lines,
        headers={**AUTH, "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and '"error"' not in r.text
    batch_variant = [line for line in r.text.splitlines() if '"b1"' in line][0]
    sent["B" if '"variant":"B"' in batch_variant else "A"] += 1
    # Not sends: a preview, a render without campaign, a reader who declined tracking.
    preview = {"template": "welcome", "user_id": "previewed", "campaign": "spring"}
    assert (await any_client.post("/v1/preview", json=preview, headers=AUTH)).status_code == 200
    await render(any_client, "r2", None, profile=inline)
    await render(any_client, "grace", "spring")
    await settled(any_app)
    doc = await stats(any_client, "spring")
    assert [(v["variant"], v["weight"], v["sends"]) for v in doc["variants"]] == [
        ("A", 50, sent["A"]),
        ("B", 50, sent["B"]),
    ]
    assert sum(sent.values()) == len(readers) + 1
    assert doc["control"] == "A" and doc["srm"]["observed_sends"] == [sent["A"], sent["B"]]


async def test_a_store_error_loses_the_count_not_the_render(settings: Any) -> None:
    # Nothing listens on the port: every store call fails.
    app = create_app(settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    async with serve(app) as client:
        await render(client, "ada", "spring", profile={"first_name": "Ada"})
        await settled(app)
        metrics = (await client.get("/metrics")).text
    assert 'kairos_tracking_lost_total{reason="campaign_store"} 1.0' in metrics


# --- opens and clicks from a real render ------------------------------------------------


async def test_opens_and_clicks_count_for_the_variant_sent_once_per_reader(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    doc = await render(any_client, "hedy", "summer")
    variant, other = doc["variant"], "B" if doc["variant"] == "A" else "A"
    [pixel] = {local(u) for u in PIXEL.findall(doc["html"])}
    click = local(CLICK.findall(doc["html"])[0])
    for _ in range(3):
        assert (await any_client.get(pixel, headers={"User-Agent": HUMAN_UA})).status_code == 200
    # Apple Mail Privacy Protection's prefetch: a machine open, apart from the reader's.
    assert (await any_client.get(pixel, headers={"User-Agent": "Mozilla/5.0"})).status_code == 200
    for _ in range(2):
        r = await any_client.get(click, headers={"User-Agent": HUMAN_UA})
        assert r.status_code == 302
    await any_client.head(click, headers={"User-Agent": HUMAN_UA})  # a link scanner
    await settled(any_app)
    found = rows(await stats(any_client, "summer"))
    assert {k: found[variant][k] for k in ("sends", "human_opens_unique", "machine_opens")} == {
        "sends": 1,
        "human_opens_unique": 1,
        "machine_opens": 1,
    }
    assert (found[variant]["clicks_unique"], found[variant]["machine_clicks"]) == (1, 1)
    assert found[variant]["click_rate_per_send"] == 1.0
    assert found[other]["sends"] == found[other]["human_opens_unique"] == 0
    # Each kind once in the reader's history, with the variant signed by the render.
    kept = [e for e in await any_app.state.services.stores.events.history("hedy")]
    opens = [e for e in kept if b'"email_open"' in e]
    clicks = [e for e in kept if b'"email_click"' in e]
    assert len(opens) == 2 and len(clicks) == 2
    assert all(f'"variant":"{variant}"'.encode() in e for e in opens + clicks)


async def test_a_reader_who_declined_tracking_counts_nowhere(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    # grace declined tracking (demo data): her render has no pixel and plain links, and
    # a pixel signed for her anyway (an old email) is dropped by ingest, not counted.
    doc = await render(any_client, "grace", "winter")
    assert not PIXEL.findall(doc["html"])
    token = TOKENS.sign("pixel", "grace", "open", campaign="winter", variant="A")
    await any_client.get(f"/v1/px/{token}.gif", headers={"User-Agent": HUMAN_UA})
    await settled(any_app)
    r = await any_client.get("/v1/campaigns/winter/stats", headers=AUTH)
    assert_error(r, 404, "campaign_not_found")


async def test_erasure_takes_the_reader_out_of_the_counts(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    for user in ("hedy", "ada"):
        doc = await render(any_client, user, "autumn")
        [pixel] = {local(u) for u in PIXEL.findall(doc["html"])}
        await any_client.get(pixel, headers={"User-Agent": HUMAN_UA})
    await settled(any_app)

    def totals(doc: dict[str, Any]) -> tuple[int, int]:
        return (
            sum(v["sends"] for v in doc["variants"]),
            sum(v["human_opens_unique"] for v in doc["variants"]),
        )

    assert totals(await stats(any_client, "autumn")) == (2, 2)
    assert (await any_client.delete("/v1/profiles/hedy", headers=AUTH)).status_code == 204
    assert totals(await stats(any_client, "autumn")) == (1, 1)


# --- the figures, by hand -----------------------------------------------------------------


async def count(app: Starlette, campaign: str, weights: dict[str, int], **tallies: Any) -> None:
    """Readers counted straight into the app's campaign store: `A=(sends, opens,
    machine opens, clicks)` per variant."""
    marks = []
    for variant, numbers in tallies.items():
        kinds = (Tally.SENDS, Tally.OPENS, Tally.MACHINE_OPENS, Tally.CLICKS)
        for tally, n in zip(kinds, numbers, strict=False):
            marks += [Mark(campaign, variant, tally, f"{variant}{i}") for i in range(n)]
    store = app.state.services.stores.campaigns
    await store.add(marks, {campaign: weights}, int(time.time() * 1000))


def two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


async def test_the_figures_against_hand_computed_values(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    await count(any_app, "ab", {"A": 1, "B": 1}, A=(1000, 300, 120, 50), B=(1000, 320, 90, 80))
    doc = await stats(any_client, "ab")
    a, b = rows(doc)["A"], rows(doc)["B"]
    assert (doc["control"], a["control"], a["test"]) == ("A", True, None)
    assert (a["sends"], a["human_opens_unique"], a["machine_opens"], a["clicks_unique"]) == (
        1000,
        300,
        120,
        50,
    )
    assert a["open_rate"] == pytest.approx(0.3) and b["open_rate"] == pytest.approx(0.32)
    assert a["click_rate_per_send"] == pytest.approx(0.05)
    assert b["click_rate_per_human_open"] == pytest.approx(80 / 320)
    # Pooled two-proportion z-test: p = 130/2000, se = sqrt(p(1-p)(1/1000 + 1/1000)).
    pooled = 130 / 2000
    z = (0.08 - 0.05) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert z == pytest.approx(2.7211, abs=1e-4)
    test = b["test"]
    assert test["z"] == pytest.approx(z)
    assert test["p_value"] == pytest.approx(two_sided_p(z)) and test["p_value"] < 0.01
    assert test["p_value"] == pytest.approx(0.006507, abs=1e-6)
    # 95 % Wald interval of the difference, unpooled.
    se = math.sqrt(0.05 * 0.95 / 1000 + 0.08 * 0.92 / 1000)
    assert test["ci95"] == pytest.approx([0.03 - Z_975 * se, 0.03 + Z_975 * se])
    assert test["significant"] is True
    # An even split, evenly sent: chi-square 0, no alarm.
    assert doc["srm"]["chi_square"] == 0 and doc["srm"]["alarm"] is False


async def test_the_control_is_the_first_declared_variant_or_the_one_asked(
    any_app: Starlette, any_client: httpx.AsyncClient
) -> None:
    # B declared first: B is the control, A is tested against it (the sign flips).
    await count(any_app, "ba", {"B": 1, "A": 1}, A=(1000, 0, 0, 50), B=(1000, 0, 0, 80))
    doc = await stats(any_client, "ba")
    assert doc["control"] == "B" and [v["variant"] for v in doc["variants"]] == ["B", "A"]
    assert rows(doc)["A"]["test"]["difference"] == pytest.approx(-0.03)
    asked = await stats(any_client, "ba", control="A")
    assert asked["control"] == "A" and rows(asked)["B"]["test"]["difference"] == pytest.approx(0.03)
    r = await any_client.get("/v1/campaigns/ba/stats?control=Z", headers=AUTH)
    assert_error(r, 422)


async def test_the_minimum_sample_guard(any_app: Starlette, any_client: httpx.AsyncClient) -> None:
    await count(any_app, "small", {"A": 1, "B": 1}, A=(99, 0, 0, 5), B=(120, 0, 0, 30))
    assert rows(await stats(any_client, "small"))["B"]["test"] == "insufficient_sample"
    tested = rows(await stats(any_client, "small", min_sample=99))["B"]["test"]
    assert isinstance(tested, dict) and tested["significant"] is True


@pytest.mark.parametrize(
    ("sends", "weights", "alarm"),
    [
        # 1000 vs 1200 on an even split: chi-square 2 * 100² / 1100 = 18.18, p ~ 2e-5.
        ((1000, 1200), {"A": 1, "B": 1}, True),
        # 1000 vs 1050: chi-square 2 * 25² / 1025 = 1.22, p ~ 0.27.
        ((1000, 1050), {"A": 1, "B": 1}, False),
        # 2:1:1 declared, 2000/1000/1100 sent (df 2, closed form p = exp(-x / 2)).
        ((2000, 1000, 1100), {"A": 2, "B": 1, "C": 1}, False),
        # The same weights, C starved: 2000/1000/800.
        ((2000, 1000, 800), {"A": 2, "B": 1, "C": 1}, True),
    ],
)
async def test_sample_ratio_mismatch(
    any_app: Starlette,
    any_client: httpx.AsyncClient,
    sends: tuple[int, ...],
    weights: dict[str, int],
    alarm: bool,
) -> None:
    names = list(weights)
    await count(any_app, "split", weights, **{n: (s,) for n, s in zip(names, sends, strict=True)})
    srm = (await stats(any_client, "split"))["srm"]
    total, weight = sum(sends), sum(weights.values())
    expected = [total * weights[n] / weight for n in names]
    chi = sum((o - e) ** 2 / e for o, e in zip(sends, expected, strict=True))
    # The chi-square survival function in closed form: df 1 and df 2.
    p = math.erfc(math.sqrt(chi / 2)) if len(names) == 2 else math.exp(-chi / 2)
    assert srm["expected_sends"] == pytest.approx(expected)
    assert srm["chi_square"] == pytest.approx(chi) and srm["df"] == len(names) - 1
    assert srm["p_value"] == pytest.approx(p, rel=1e-6)
    assert srm["alarm"] is alarm and (p < 0.001) is alarm


async def test_stats_errors(any_client: httpx.AsyncClient) -> None:
    assert_error(
        await any_client.get("/v1/campaigns/never/stats", headers=AUTH), 404, "campaign_not_found"
    )
    assert_error(await any_client.get("/v1/campaigns/never/stats"), 401)
    r = await any_client.get("/v1/campaigns/never/stats?min_sample=0", headers=AUTH)
    assert_error(r, 400, "invalid_query")


# --- kairos stats -------------------------------------------------------------------------


def test_kairos_stats_prints_the_table_and_the_json(
    running_server: str,  # noqa: F811 (the fixture imported from test_cli)
    clean_environ: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAIROS_API_KEY", API_KEY)
    variants = {}
    for user in ("ada", "hedy"):
        body = {"template": "welcome", "user_id": user, "campaign": "cli"}
        r = httpx.post(f"{running_server}/v1/render", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        variants[user] = r.json()["variant"]
    deadline = time.monotonic() + 5
    while True:  # the sends are counted in the background
        r = httpx.get(f"{running_server}/v1/campaigns/cli/stats", headers=AUTH)
        if r.status_code == 200 and sum(v["sends"] for v in r.json()["variants"]) == 2:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    assert main(["stats", "cli", "--server", running_server]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "campaign cli: control A (*), tests need 100 sends a side"
    assert out[1].split()[:4] == ["variant", "weight", "sends", "human"]
    a_sends = list(variants.values()).count("A")
    assert out[2].split()[:4] == ["A", "*", "50", str(a_sends)]
    assert out[3].split()[:3] == ["B", "50", str(2 - a_sends)]
    assert out[3].split()[-1] == "-" and "insufficient sample" in out[3]
    assert out[4].startswith("split: chi-square ") and "ALARM" not in out[4]
    assert main(["stats", "cli", "--server", running_server, "--json"]) == 0
    assert '"control": "A"' in capsys.readouterr().out
    assert main(["stats", "nothing", "--server", running_server]) == 1
    assert "answered 404: nothing was counted" in capsys.readouterr().err
