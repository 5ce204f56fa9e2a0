"""The profile document: user ids, field validation, merge patch, computed fields."""

from __future__ import annotations

import copy

import pytest

from app.errors import BadRequest, Unprocessable
from app.profiles.schema import (
    MAX_ATTRIBUTES,
    MAX_LIST,
    check_user_id,
    computed_part,
    merge_patch,
    validate_profile,
    writable_part,
)

FULL = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "email": "ada@example.org",
    "locale": "en-GB",
    "timezone": "Europe/London",
    "tier": "gold",
    "loyalty_points": 1234,
    "cart": [
        {
            "sku": "SKU-1",
            "title": "Desk lamp",
            "price": 39.0,
            "currency": "EUR",
            "qty": 1,
            "image_url": "https://shop.example.com/i.jpg",
            "url": "https://shop.example.com/p",
        }
    ],
    "recommendations": [{"sku": "SKU-9", "score": 0.82}],
    "consent": {"personalization": True, "tracking": True},
    "attributes": {"favourite_category": "lighting", "nested": {"a": [1, 2]}},
}


# --- user ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["ada", "u-123_x.y:z", "A", "a" * 128, "0"])
def test_valid_user_ids(user_id: str):
    assert check_user_id(user_id) == user_id


@pytest.mark.parametrize(
    "user_id",
    ["", "a" * 129, "a{b}", "{ada}", "ada@example.org", "a b", "ü", "a/b", "ada\n", "a%7B"],
)
def test_invalid_user_ids(user_id: str):
    with pytest.raises(BadRequest) as info:
        check_user_id(user_id)
    assert info.value.status == 400
    assert info.value.code == "invalid_user_id"
    assert info.value.field == "user_id"


# --- validation --------------------------------------------------------------------------


def test_full_profile_is_valid_and_copied():
    doc = copy.deepcopy(FULL)
    clean = validate_profile(doc)
    assert clean == FULL
    assert clean is not doc


def test_empty_profile_is_valid():
    assert validate_profile({}) == {}


def test_null_fields_are_dropped():
    assert validate_profile({"first_name": "Ada", "tier": None}) == {"first_name": "Ada"}
    assert validate_profile({"consent": {"tracking": None, "personalization": False}}) == {
        "consent": {"personalization": False}
    }


@pytest.mark.parametrize("doc", [[], "ada", 3, None])
def test_profile_must_be_an_object(doc):
    with pytest.raises(Unprocessable) as info:
        validate_profile(doc)
    assert info.value.code == "invalid_body"


def test_unknown_field_is_named():
    with pytest.raises(Unprocessable) as info:
        validate_profile({"first_name": "Ada", "shoe_size": 42})
    assert info.value.field == "shoe_size"
    assert info.value.status == 422
    assert "attributes" in info.value.message


@pytest.mark.parametrize("field", ["segments", "counters", "updated_at", "user_id"])
def test_read_only_fields_are_refused(field: str):
    with pytest.raises(Unprocessable) as info:
        validate_profile({field: ["vip"]})
    assert info.value.field == field
    assert "cannot be written" in info.value.message


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"first_name": 7}, "first_name"),
        ({"first_name": "x" * 101}, "first_name"),
        ({"last_name": ["Lovelace"]}, "last_name"),
        ({"email": "not-an-email"}, "email"),
        ({"email": "a@b@example.org"}, "email"),
        ({"locale": "english please"}, "locale"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": "../../etc/passwd"}, "timezone"),
        ({"tier": "t" * 33}, "tier"),
        ({"loyalty_points": "12"}, "loyalty_points"),
        ({"loyalty_points": 1.5}, "loyalty_points"),
        ({"loyalty_points": True}, "loyalty_points"),
        ({"loyalty_points": -1}, "loyalty_points"),
        ({"cart": {"sku": "SKU-1"}}, "cart"),
        ({"cart": [{"qty": 1}]}, "cart[0].sku"),
        ({"cart": [{"sku": "SKU-1"}, {"sku": "bad sku!"}]}, "cart[1].sku"),
        ({"cart": [{"sku": "SKU-1", "qty": 0}]}, "cart[0].qty"),
        ({"cart": [{"sku": "SKU-1", "price": "39"}]}, "cart[0].price"),
        ({"cart": [{"sku": "SKU-1", "price": False}]}, "cart[0].price"),
        ({"cart": [{"sku": "SKU-1", "currency": "eur"}]}, "cart[0].currency"),
        ({"cart": [{"sku": "SKU-1", "url": "javascript:alert(1)"}]}, "cart[0].url"),
        ({"cart": [{"sku": "SKU-1", "image_url": "//cdn.example.com/x"}]}, "cart[0].image_url"),
        ({"cart": [{"sku": "SKU-1", "colour": "red"}]}, "cart[0].colour"),
        ({"cart": [{"sku": "SKU-1", "title": "t" * 201}]}, "cart[0].title"),
        ({"cart": [{"sku": "S" * 65}]}, "cart[0].sku"),
        ({"recommendations": [{"sku": "SKU-1", "score": "high"}]}, "recommendations[0].score"),
        ({"consent": {"personalization": "yes"}}, "consent.personalization"),
        ({"consent": {"marketing": True}}, "consent.marketing"),
        ({"consent": True}, "consent"),
        ({"attributes": []}, "attributes"),
        ({"attributes": {"k" * 65: 1}}, "attributes"),
        ({"attributes": {"": 1}}, "attributes"),
        ({"attributes": {"blob": "x" * 17_000}}, "attributes"),
    ],
)
def test_invalid_fields_are_named(doc: dict, field: str):
    with pytest.raises(Unprocessable) as info:
        validate_profile(doc)
    assert info.value.field == field
    assert info.value.message.startswith(field)
    assert info.value.body()["error"]["field"] == field


def test_list_size_limit():
    ok = [{"sku": f"SKU-{i}"} for i in range(MAX_LIST)]
    assert len(validate_profile({"cart": ok})["cart"]) == MAX_LIST
    with pytest.raises(Unprocessable) as info:
        validate_profile({"cart": [*ok, {"sku": "one-more"}]})
    assert info.value.field == "cart"
    assert f"at most {MAX_LIST}" in info.value.message


def test_attributes_key_limit():
    ok = {f"k{i}": i for i in range(MAX_ATTRIBUTES)}
    assert validate_profile({"attributes": ok}) == {"attributes": ok}
    with pytest.raises(Unprocessable, match="at most 100 keys"):
        validate_profile({"attributes": {**ok, "extra": 1}})


def test_string_size_limits_are_inclusive():
    assert validate_profile({"first_name": "x" * 100})["first_name"] == "x" * 100


@pytest.mark.parametrize(
    "text", ["<script>alert(1)</script>", "{{ 7*7 }}", "{% raw %}", "Zoë 🎉 \u202e", "a\x00b"]
)
def test_strings_are_kept_exactly(text: str):
    clean = validate_profile({"first_name": text, "attributes": {"note": text}})
    assert clean["first_name"] == text
    assert clean["attributes"]["note"] == text


def test_timezone_accepts_iana_names():
    assert validate_profile({"timezone": "America/New_York"}) == {"timezone": "America/New_York"}


@pytest.mark.parametrize("zone", ["Europe", "America", "America/Argentina", "Etc"])
def test_timezone_that_names_a_region_directory_is_invalid(zone: str):
    # Regression: _timezone caught only ZoneInfoNotFoundError and ValueError; ZoneInfo()
    # of a tzdata directory raises IsADirectoryError, so the API answered 500, not 422.
    with pytest.raises(Unprocessable) as info:
        validate_profile({"timezone": zone})
    assert info.value.field == "timezone"


# --- merge patch (RFC 7396, appendix A) --------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7396(target, patch, result):
    before = copy.deepcopy(target)
    assert merge_patch(target, patch) == result
    assert target == before  # the target is not modified


def test_writable_and_computed_parts():
    stored = {
        "first_name": "Ada",
        "segments": ["vip"],
        "counters": {"opens": 3},
        "updated_at": "2024-01-01T00:00:00Z",
        "user_id": "ada",
    }
    assert writable_part(stored) == {"first_name": "Ada"}
    assert computed_part(stored) == {
        "segments": ["vip"],
        "counters": {"opens": 3},
        "user_id": "ada",
    }
