"""docs/events.md stays true: every native type has its section, every code an event or a
request can be refused with is documented, the Segment mapping table is the mapping of
app/events/segment.py, and every limit is stated as the settings table and the code
declare it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app import errors
from app.events.model import TYPES
from app.events.segment import CALLED, CALLS, TRACKED, SegmentError, translate
from app.routes.events import SEGMENT_PREFIX
from app.settings import ENV_VARS, SETTINGS, Setting
from app.settings.parse import Integer

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "events.md"
SOURCES = (*sorted((ROOT / "app" / "events").glob("*.py")), ROOT / "app" / "routes" / "events.py")
# The settings that bound what one request, one event or one reader may hold.
LIMIT_SETTINGS = (
    "events_max_body_bytes",
    "events_max_count",
    "event_max_bytes",
    "dedupe_window_s",
    "history_events",
    "history_days",
    "rate_events",
    "events_in_flight",
    "events_wait_s",
)


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _section(heading: str) -> str:
    """The doc from `heading` (a whole line, e.g. '## Limits') to the next heading of
    the same or a higher level."""
    text = _text()
    level = heading.split(" ", 1)[0]
    assert f"\n{heading}\n" in text, f"docs/events.md has no '{heading}' section"
    part = text.split(f"\n{heading}\n", 1)[1]
    ends = [m.start() for m in re.finditer(rf"^#{{1,{len(level)}}} ", part, re.MULTILINE)]
    return part[: ends[0]] if ends else part


def _rows(part: str) -> list[list[str]]:
    """The body rows of the Markdown tables in `part`, as lists of stripped cells."""
    rows = []
    for line in part.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _ticked(cell: str) -> str:
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"expected one `code` in the cell {cell!r}"
    return match.group(1)


# --- types ---------------------------------------------------------------------------


def test_every_native_type_has_its_section() -> None:
    part = _section("## Types")
    documented = re.findall(r"^### `([^`]+)`$", part, re.MULTILINE)
    assert documented == [*TYPES, "custom:<name>"], (
        "docs/events.md's '## Types' must have one '### `type`' section per type of "
        "app.events.model.TYPES, in order, then custom:<name>"
    )


# --- codes ---------------------------------------------------------------------------


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def _keyword(node: ast.Call, name: str) -> str | None:
    for kw in node.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return None


def _codes() -> tuple[set[str], set[str]]:
    """(codes an event can be rejected with, codes a whole request can be refused with),
    read from every EventRejected, SegmentError and typed error the events code builds."""
    segment_default = inspect.signature(SegmentError).parameters["code"].default
    event_codes: set[str] = set()
    request_codes: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "code"
                        and isinstance(value, ast.Constant)
                    ):
                        request_codes.add(str(value.value))
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name == "EventRejected":
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant):
                    event_codes.add(str(first.value))
            elif name == "SegmentError":
                event_codes.add(_keyword(node, "code") or segment_default)
            elif name is not None and isinstance(getattr(errors, name, None), type):
                kind = getattr(errors, name)
                if issubclass(kind, errors.KairosError):
                    request_codes.add(_keyword(node, "code") or kind.code)
    return event_codes, request_codes


def test_the_scan_finds_the_codes_it_should() -> None:
    event_codes, request_codes = _codes()
    assert {"missing_field", "invalid_ts", "suppressed", "cart_full", "unsupported_call"} <= (
        event_codes
    )
    assert {"payload_too_large", "too_many_events", "no_valid_events"} <= request_codes


def test_every_rejection_code_is_documented() -> None:
    event_codes, _ = _codes()
    documented = [_ticked(row[0]) for row in _rows(_section("### Rejection codes"))[1:]]
    assert len(documented) == len(set(documented)), "a rejection code is listed twice"
    assert set(documented) == event_codes, (
        "docs/events.md's rejection codes differ from the code: "
        f"undocumented {sorted(event_codes - set(documented))}, "
        f"no longer raised {sorted(set(documented) - event_codes)}"
    )


def test_every_request_error_code_is_documented() -> None:
    _, request_codes = _codes()
    part = _section("## The answer")
    missing = sorted(code for code in request_codes if f"`{code}`" not in part)
    assert not missing, f"docs/events.md's '## The answer' does not name: {missing}"


# --- the Segment dialect -------------------------------------------------------------


def _translated_type(call: str, event: str = "Anything") -> str:
    message = {
        "type": call,
        "messageId": "m-1",
        "userId": "u-1",
        "previousId": "a-1",
        "event": event,
    }
    return str(translate(message, call=None, received_at=datetime.now(UTC))["type"])


def test_the_segment_mapping_table_is_the_code() -> None:
    rows = _rows(_section("### Calls and event names"))
    assert rows[0] == ["call", "event", "native type"]
    tracked: dict[str, str] = {}
    calls: dict[str, str] = {}
    other_track: str | None = None
    for call_cell, event_cell, native_cell in rows[1:]:
        call, native = _ticked(call_cell), _ticked(native_cell)
        if call != "track":
            assert event_cell == "—", f"a {call} row names an event"
            calls[call] = native
        elif event_cell.startswith("`"):
            tracked[_ticked(event_cell).lower()] = native
        else:
            other_track = native
    assert tracked == {name: kind for name, (kind, _) in TRACKED.items()}
    assert other_track == "custom:<event>"
    assert _translated_type("track", "Wishlist Shared") == "custom:Wishlist Shared"
    assert set(calls) | {"track"} == set(CALLED), "the table's calls are not the code's"
    for call, native in calls.items():
        assert _translated_type(call) == native, f"{call} does not become {native}"
    for name, (kind, _) in TRACKED.items():
        assert _translated_type("track", name.title()) == kind


def test_every_segment_path_is_named() -> None:
    text = _text()
    for call in CALLS:
        assert f"{SEGMENT_PREFIX}/v1/{call}`" in text, f"{SEGMENT_PREFIX}/v1/{call} missing"
    assert f"https://kairos.example.com{SEGMENT_PREFIX}" in text


# --- limits --------------------------------------------------------------------------


def test_every_setting_named_exists() -> None:
    named = set(re.findall(r"\bKAIROS_[A-Z0-9_]+", _text()))
    unknown = sorted(named - set(ENV_VARS))
    assert not unknown, f"docs/events.md names settings the server does not read: {unknown}"


def _limit_rows() -> dict[str, list[str]]:
    rows = _rows(_section("## Limits"))
    assert rows[0] == ["setting", "default", "range", "what"]
    return {_ticked(row[0]): row for row in rows[1:] if row[0].startswith("`KAIROS_")}


@pytest.mark.parametrize(
    "setting", [s for s in SETTINGS if s.attr in LIMIT_SETTINGS], ids=lambda s: s.var
)
def test_every_limit_is_stated_as_the_settings_table_declares_it(setting: Setting) -> None:
    row = _limit_rows().get(setting.var)
    assert row is not None, f"docs/events.md's limits table has no row for {setting.var}"
    assert row[1] == f"`{setting.default}`", f"{setting.var}: the default is {setting.default}"
    assert isinstance(setting.parse, Integer)
    assert row[2] == f"{setting.parse.lo}–{setting.parse.hi}", f"{setting.var}: wrong range"


def test_the_limits_table_has_only_limit_settings() -> None:
    limits = {s.var for s in SETTINGS if s.attr in LIMIT_SETTINGS}
    assert set(_limit_rows()) == limits


def test_every_fixed_limit_is_the_constant_it_names() -> None:
    rows = [row for row in _rows(_section("## Limits")) if len(row) == 3]
    assert rows[0] == ["what", "value", "where"]
    assert len(rows) > 1
    for what, value, where in rows[1:]:
        module, _, name = _ticked(where).rpartition(".")
        actual = getattr(importlib.import_module(module), name)
        assert int(value.replace(",", "")) == actual, f"{what}: {where} is {actual}"
