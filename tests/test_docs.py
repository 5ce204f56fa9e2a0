"""The README's configuration table documents every setting the server reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.openapi import spec
from app.settings import ENV_VARS, PROJECT_ROOT, SETTINGS, Setting, describe

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_exists():
    assert README.is_file(), "README.md is missing at the project root"


def _readme_settings() -> dict[str, str]:
    """The rows of the README's configuration table, by variable, in order."""
    text = README.read_text(encoding="utf-8")
    part = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|.*$", part, re.MULTILINE)
    lines = [line for line in part.splitlines() if line.startswith("| `")]
    assert len(rows) == len(lines) == len(set(rows)), "a configuration row is malformed"
    return dict(zip(rows, lines, strict=True))


def _row(setting: Setting) -> str:
    return f"| `{setting.var}` | {setting.shown_default} | {setting.doc} |"


def test_the_readme_table_has_exactly_the_settings_of_the_table():
    documented = _readme_settings()
    missing = [var for var in ENV_VARS if var not in documented]
    unknown = [var for var in documented if var not in ENV_VARS]
    assert not missing, f"settings without a row in README.md's configuration table: {missing}"
    assert not unknown, f"README.md documents settings the server does not read: {unknown}"
    assert tuple(documented) == ENV_VARS, "README.md's rows are not in the table's order"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.var)
def test_the_readme_row_says_what_the_table_says(setting: Setting):
    row = _readme_settings().get(setting.var)
    assert row == _row(setting), (
        f"README.md's row for {setting.var} differs from app/settings/table.py; it should be\n"
        f"{_row(setting)}"
    )


def test_openapi_lists_every_setting_as_the_table_documents_it():
    documented = spec("https://kairos.example.com")["x-kairos-settings"]
    assert [entry["name"] for entry in documented] == list(ENV_VARS)
    assert documented == [describe(setting) for setting in SETTINGS]
    budget = next(entry for entry in documented if entry["name"] == "KAIROS_BUDGET_MS")
    assert budget == {
        "name": "KAIROS_BUDGET_MS",
        "default": "`150`",
        "description": budget["description"],
        "minimum": 1,
        "maximum": 60_000,
    }
    env = next(entry for entry in documented if entry["name"] == "KAIROS_ENV")
    assert env["enum"] == ["development", "production", "test"]
    # Documentation, not this machine's configuration: no checkout or home paths.
    text = json.dumps(documented)
    assert str(PROJECT_ROOT) not in text
    assert str(Path.home()) not in text


GUIDE = README.parent / "docs" / "templates.md"
BLOCKS = README.parent / "blocks"
TEMPLATES = README.parent / "templates"


def _table_names(section: str) -> set[str]:
    text = GUIDE.read_text(encoding="utf-8")
    part = text.split(section, 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9_]+)` \|", part, re.MULTILINE))


def test_every_block_is_documented_in_the_designers_guide():
    blocks = {d.name for d in BLOCKS.iterdir() if d.is_dir()}
    assert blocks, "no blocks found"
    assert _table_names("## The block library") == blocks


def test_every_template_is_documented_in_the_designers_guide():
    templates = {d.name for d in TEMPLATES.iterdir() if (d / "template.json").is_file()}
    assert templates, "no templates found"
    assert _table_names("## The templates") == templates


@pytest.mark.parametrize("block", sorted(d.name for d in BLOCKS.iterdir() if d.is_dir()))
def test_every_block_describes_itself(block: str):
    meta = json.loads((BLOCKS / block / "block.json").read_text(encoding="utf-8"))
    assert meta.get("description", "").strip(), f"blocks/{block}/block.json has no description"


async def test_the_served_openapi_lists_the_settings(client):
    doc = (await client.get("/openapi.json")).json()
    assert doc["x-kairos-settings"] == [describe(setting) for setting in SETTINGS]
