"""The campaign paths of /openapi.json: the A/B figures of a campaign."""

from __future__ import annotations

from typing import Any

from app.campaigns.report import MIN_SAMPLE
from app.openapi.schemas import bearer, error, json
from app.render.request import CAMPAIGN
from app.routes.campaigns import MAX_MIN_SAMPLE


def _rate() -> dict[str, Any]:
    return {"type": ["number", "null"], "description": "null when its denominator is 0"}


def _variant() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    test = {
        "type": "object",
        "properties": {
            "difference": {"type": "number"},
            "z": {"type": "number"},
            "p_value": {"type": "number"},
            "ci95": {"type": "array", "items": {"type": "number"}},
            "significant": {"type": "boolean"},
        },
    }
    return {
        "type": "object",
        "properties": {
            "variant": {"type": "string"},
            "control": {"type": "boolean"},
            "weight": {"type": "number"},
            "sends": count,
            "human_opens_unique": count,
            "machine_opens": count,
            "clicks_unique": count,
            "machine_clicks": count,
            "open_rate": _rate(),
            "click_rate_per_send": _rate(),
            "click_rate_per_human_open": _rate(),
            "test": {
                "description": "the control's: null; else the two-proportion test of "
                "the click rate per send against the control's, or "
                '"insufficient_sample" / "inconsistent_counts"',
                "oneOf": [
                    test,
                    {"enum": ["insufficient_sample", "inconsistent_counts"]},
                    {"type": "null"},
                ],
            },
        },
    }


def _stats() -> dict[str, Any]:
    srm = {
        "type": ["object", "null"],
        "description": "chi-square test of the sends against the declared weights "
        "(alarm at p < 0.001); null when no weights are known",
        "properties": {
            "chi_square": {"type": ["number", "null"]},
            "df": {"type": "integer"},
            "p_value": {"type": "number"},
            "alarm": {"type": "boolean"},
            "expected_sends": {"type": "array", "items": {"type": "number"}},
            "observed_sends": {"type": "array", "items": {"type": "integer"}},
        },
    }
    return {
        "type": "object",
        "properties": {
            "campaign": {"type": "string"},
            "control": {"type": "string"},
            "min_sample": {"type": "integer"},
            "variants": {"type": "array", "items": _variant()},
            "srm": srm,
        },
    }


def campaign_paths() -> dict[str, Any]:
    return {
        "/v1/campaigns/{campaign}/stats": {
            "get": {
                "summary": "A campaign's A/B figures per variant",
                "description": "Sends (renders of tracked readers), unique human opens, "
                "machine opens, unique clicks, rates, each variant's click rate per send "
                "tested against the control's, and the sample-ratio-mismatch check. See "
                "docs/campaigns.md.",
                "security": bearer(),
                "parameters": [
                    {
                        "name": "campaign",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": f"^{CAMPAIGN.pattern}$"},
                    },
                    {
                        "name": "control",
                        "in": "query",
                        "description": "default: the first variant the template declares "
                        "with a weight above 0",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "min_sample",
                        "in": "query",
                        "description": "sends each side needs before a variant is tested",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_MIN_SAMPLE,
                            "default": MIN_SAMPLE,
                        },
                    },
                ],
                "responses": {
                    "200": json("the figures", _stats()),
                    "400": error("bad min_sample (invalid_query)"),
                    "401": error("missing or invalid API key"),
                    "403": error("a write key (write_key_not_allowed): this call needs an API key"),
                    "404": error("nothing was counted for this campaign (campaign_not_found)"),
                    "422": error("control is not a variant of the campaign"),
                    "503": error("the store is unavailable"),
                },
            }
        }
    }
