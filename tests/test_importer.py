"""Reading JSONL import files: line numbers, clear per-line errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.importer import BadImportLine, product_row, profile_row, read_jsonl


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    return path


def test_read_jsonl_numbers_lines_and_skips_blank_ones(tmp_path: Path):
    path = write(tmp_path, '{"a": 1}\n\n   \n{"b": 2}\n{"c": 3}')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, {"b": 2}), (5, {"c": 3})]


def test_read_jsonl_bad_json_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, '{"a": 1}\n{oops\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(BadImportLine, match=rf"^{re.escape(str(path))}:2: not valid JSON"):
        next(rows)


def test_read_jsonl_requires_objects(tmp_path: Path):
    path = write(tmp_path, "[1, 2]\n")
    with pytest.raises(
        BadImportLine, match=rf"^{re.escape(str(path))}:1: each line must be a JSON object"
    ):
        list(read_jsonl(path))


def test_read_jsonl_with_an_errors_list_reports_bad_lines_and_goes_on(tmp_path: Path):
    path = write(tmp_path, '{"a": 1}\n{oops\n[1, 2]\n\n"text"\n{"b": 2}\n')
    errors: list[str] = []
    assert list(read_jsonl(path, errors)) == [(1, {"a": 1}), (6, {"b": 2})]
    assert len(errors) == 3
    assert errors[0].startswith(f"{path}:2: not valid JSON")
    assert errors[1] == f"{path}:3: each line must be a JSON object"
    assert errors[2] == f"{path}:5: each line must be a JSON object"


def test_read_jsonl_with_an_errors_list_and_no_bad_line(tmp_path: Path):
    path = write(tmp_path, '{"a": 1}\n')
    errors: list[str] = []
    assert list(read_jsonl(path, errors)) == [(1, {"a": 1})]
    assert errors == []


def test_profile_row(tmp_path: Path):
    row = {"user_id": "u1", "first_name": "Ada", "tier": None}
    assert profile_row(tmp_path / "f", 3, row) == ("u1", {"first_name": "Ada"})
    assert row == {"user_id": "u1", "first_name": "Ada", "tier": None}  # input untouched


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"first_name": "Ada"}, "missing string field 'user_id'"),
        ({"user_id": 7}, "missing string field 'user_id'"),
        ({"user_id": "a@b.com"}, "user_id must be"),
        ({"user_id": "u1", "shoe_size": 4}, "shoe_size: is not a known field"),
        ({"user_id": "u1", "loyalty_points": "x"}, "loyalty_points: must be an integer"),
        ({"user_id": "u1", "segments": []}, "segments: is computed by Kairos"),
    ],
)
def test_profile_row_errors(tmp_path: Path, row: dict, message: str):
    path = tmp_path / "profiles.jsonl"
    with pytest.raises(BadImportLine) as info:
        profile_row(path, 12, row)
    assert str(info.value).startswith(f"{path}:12: ")
    assert message in str(info.value)


def test_product_row(tmp_path: Path):
    row = {"sku": "SKU-1", "title": "Lamp", "price": 3, "popularity": 1.5}
    assert product_row(tmp_path / "f", 1, row) == row
    with_image = {**row, "image": "lamps/sku-1.jpg"}
    assert product_row(tmp_path / "f", 1, with_image) == with_image


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"title": "no sku"}, "'sku' must be"),
        ({"sku": "bad sku"}, "'sku' must be"),
        ({"sku": "S-1", "price": "3"}, "'price' must be a number"),
        ({"sku": "S-1", "price": True}, "'price' must be a number"),
        ({"sku": "S-1", "popularity": "high"}, "'popularity' must be a number"),
        ({"sku": "S-1", "image": "../secret.png"}, "'image' must be a file name"),
        ({"sku": "S-1", "image": "/etc/passwd"}, "'image' must be a file name"),
        ({"sku": "S-1", "image": "lamp.svg"}, "'image' must be a file name"),
        ({"sku": "S-1", "image": 7}, "'image' must be a file name"),
    ],
)
def test_product_row_errors(tmp_path: Path, row: dict, message: str):
    path = tmp_path / "catalog.jsonl"
    with pytest.raises(BadImportLine) as info:
        product_row(path, 4, row)
    assert str(info.value).startswith(f"{path}:4: ")
    assert message in str(info.value)
