"""`kairos stats CAMPAIGN`: a campaign's A/B figures from a running server, as a table
(or its JSON with `--json`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from app.cli.common import settings as cli_settings
from app.errors import KairosError

COLUMNS = (
    ("variant", "variant"),
    ("weight", "weight"),
    ("sends", "sends"),
    ("human opens", "human_opens_unique"),
    ("machine opens", "machine_opens"),
    ("clicks", "clicks_unique"),
    ("machine clicks", "machine_clicks"),
    ("open rate", "open_rate"),
    ("clicks/send", "click_rate_per_send"),
    ("clicks/open", "click_rate_per_human_open"),
)


def stats(args: argparse.Namespace) -> int:
    settings = cli_settings()
    if settings.client_api_key is None:
        print("kairos: set KAIROS_API_KEY to one of the server's API keys", file=sys.stderr)
        return 2
    server = (args.server or settings.public_url).rstrip("/")
    params = {} if args.min_sample is None else {"min_sample": str(args.min_sample)}
    headers = {"Authorization": f"Bearer {settings.client_api_key.reveal()}"}
    url = f"{server}/v1/campaigns/{quote(args.campaign, safe='')}/stats"
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=30.0)
    except httpx.HTTPError as exc:
        raise KairosError(f"cannot reach {server}: {exc}") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        print(f"kairos: {server} answered {response.status_code}: {message}", file=sys.stderr)
        return 1 if response.status_code == 404 else 2
    doc = response.json()
    if args.json:
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(doc))
    return 0


def table(doc: dict[str, Any]) -> str:
    """The report as text: one row per variant (the control marked *), then the split."""
    head = [title for title, _ in COLUMNS] + ["vs control", "p-value", "95% CI"]
    rows = [head]
    for variant in doc["variants"]:
        row = [_cell(variant[key]) for _, key in COLUMNS]
        row[0] += " *" if variant["control"] else ""
        row += _test(variant["test"])
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        f"campaign {doc['campaign']}: control {doc['control']} (*), "
        f"tests need {doc['min_sample']} sends a side"
    ]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(_srm(doc["srm"]))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _test(test: Any) -> list[str]:
    if test is None:
        return ["-", "-", "-"]
    if isinstance(test, str):
        return [test.replace("_", " "), "-", "-"]
    low, high = test["ci95"]
    mark = " (significant)" if test["significant"] else ""
    return [
        f"{test['difference']:+.2%}",
        f"{test['p_value']:.4g}{mark}",
        f"[{low:+.2%}, {high:+.2%}]",
    ]


def _srm(srm: dict[str, Any] | None) -> str:
    if srm is None:
        return "split: no declared weights known yet (no send counted)"
    chi = "inf" if srm["chi_square"] is None else f"{srm['chi_square']:.3f}"
    verdict = (
        "ALARM: the sends do not follow the declared weights (sample ratio mismatch)"
        if srm["alarm"]
        else "the sends follow the declared weights"
    )
    return f"split: chi-square {chi}, df {srm['df']}, p {srm['p_value']:.4g}: {verdict}"
