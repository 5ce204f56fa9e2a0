"""The README's configuration table documents every setting the server reads."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.settings import ENV_VARS

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_exists():
    assert README.is_file(), "README.md is missing at the project root"


@pytest.mark.parametrize("name", ENV_VARS)
def test_every_setting_is_documented_in_the_readme(name: str):
    text = README.read_text(encoding="utf-8")
    # as a whole word: KAIROS_CACHE_TTL_MS must not be "found" inside a longer name
    assert re.search(rf"(?<![A-Z0-9_]){re.escape(name)}(?![A-Z0-9_])", text), (
        f"{name} is not documented in README.md"
    )


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
