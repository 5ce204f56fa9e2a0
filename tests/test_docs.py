"""The README's configuration table documents every setting the server reads."""

from __future__ import annotations

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
