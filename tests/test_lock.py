"""The Python lock: the environment the suite runs in is exactly the lock, and the two
lock files agree with each other and with the ranges in pyproject.toml."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)(?:\s*;\s*([^\\]+?))?\s*\\?$")
# What a venv brings by itself, and the project installed in it.
NOT_LOCKED = {"pip", "kairos"}


def _pins(name: str, *, this_machine: bool = True) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        m = PIN.match(line)
        if m is None:
            continue
        if this_machine and m.group(3) and not Marker(m.group(3)).evaluate():
            continue
        pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _installed() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
    }


def test_every_locked_package_is_installed_at_its_locked_version() -> None:
    installed = _installed()
    wrong = {
        name: (want, installed.get(name))
        for name, want in _pins("test.txt").items()
        if installed.get(name) != want
    }
    assert not wrong, f"(locked, installed) differ; run `bash scripts/install test`: {wrong}"


def test_nothing_is_installed_beyond_the_lock() -> None:
    extra = set(_installed()) - set(_pins("test.txt")) - NOT_LOCKED
    assert not extra, f"installed but not locked (pip uninstall them, or lock them): {extra}"


def test_the_server_lock_agrees_with_the_test_lock() -> None:
    server = _pins("server.txt", this_machine=False)
    test = _pins("test.txt", this_machine=False)
    assert server, "requirements/server.txt has no pins"
    assert {n: test.get(n) for n in server} == server


def test_every_pin_has_a_hash() -> None:
    for name in ("server.txt", "test.txt"):
        text = (ROOT / "requirements" / name).read_text()
        # Each pin is followed by its --hash lines before the next pin or comment.
        for block in re.split(r"\n(?=[A-Za-z0-9])", text):
            if "==" in block.split("\n", 1)[0]:
                assert "--hash=sha256:" in block, f"{name}: no hash for {block.splitlines()[0]}"


def test_the_locks_satisfy_the_ranges_of_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    test = _pins("test.txt", this_machine=False)
    server = _pins("server.txt", this_machine=False)
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert req.specifier.contains(server[name]), f"server lock: {name} {server[name]}"
    for spec in project["dependencies"] + project["optional-dependencies"]["test"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert req.specifier.contains(test[name]), f"test lock: {name} {test[name]}"
