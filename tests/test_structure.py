"""The shape of the house, kept true by test: small modules, no module-level mutable
state, and docs/architecture.md naming only what exists."""

from __future__ import annotations

import ast
import collections
import importlib
import pkgutil
import re
from pathlib import Path
from types import MappingProxyType, ModuleType

import pytest

import app

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"
# "About 300": a module may run a little over while it stays one concern.
MAX_LINES = 320
# A module longer than MAX_LINES says why in its docstring, with these words.
LONG_MARK = "Over 300 lines because"
MUTABLE = (dict, list, set, bytearray, collections.deque)


def _modules() -> list[ModuleType]:
    return [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(app.__path__, "app.")
        if not info.name.endswith(".__main__")  # running it is the command itself
    ]


@pytest.mark.parametrize("path", sorted(APP.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_long_without_saying_why(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    assert LONG_MARK in doc, f"{path.relative_to(ROOT)} has {lines} lines: split it, or say why"


def _state(module: ModuleType) -> list[str]:
    """The module-level names of `module` that hold mutable state it defines."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("__"):
            continue
        kind = type(value)
        if isinstance(value, MUTABLE):
            found.append(f"{name}: {kind.__name__}")
        elif hasattr(value, "cache_info") and getattr(value, "__module__", "") == module.__name__:
            found.append(f"{name}: a memoized function")
        elif kind.__module__.split(".")[0] in ("cachetools", "jinja2") and not isinstance(
            value, type
        ):
            found.append(f"{name}: {kind.__module__}.{kind.__name__}")
        elif kind.__module__ == "app.caching":
            found.append(f"{name}: a cache")
    return found


def test_no_module_level_mutable_state() -> None:
    """Caches, registries and tables live in objects built once per app (or are
    read-only: tuples, frozensets, MappingProxyType), so two apps in one process share
    nothing and a test sees a clean server."""
    offenders = {m.__name__: s for m in _modules() if (s := _state(m))}
    assert not offenders, f"module-level mutable state: {offenders}"


def test_read_only_tables_stay_read_only() -> None:
    from app.feeds import FEEDS

    assert isinstance(FEEDS, MappingProxyType)
    with pytest.raises(TypeError):
        FEEDS["x"] = FEEDS["cart"]  # type: ignore[index]


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def test_architecture_names_only_packages_and_modules_that_exist() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    named = set(re.findall(r"`(app/[A-Za-z0-9_/]+(?:\.py)?)`", text))
    assert len(named) >= 20, "docs/architecture.md should map the modules"
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"


def test_architecture_maps_every_package() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    packages = sorted(
        str(p.parent.relative_to(ROOT)) + "/" for p in APP.rglob("*/__init__.py")
    )
    unmapped = [p for p in packages if f"`{p}`" not in text]
    assert not unmapped, f"docs/architecture.md does not map: {unmapped}"
