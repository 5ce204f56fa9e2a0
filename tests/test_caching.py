"""`Bounded` (app/caching.py): a dict that forgets its oldest entry when full."""

from __future__ import annotations

import pytest

from app.caching import Bounded


def test_put_evicts_the_oldest_entry_first():
    cache: Bounded[str, int] = Bounded(3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    cache.put("d", 3)
    assert list(cache.items()) == [("b", 1), ("c", 2), ("d", 3)]
    cache.put("e", 4)
    assert list(cache) == ["c", "d", "e"]


def test_reading_does_not_make_an_entry_younger():
    # First in, first out: a hit does not save an entry, unlike an LRU.
    cache: Bounded[str, int] = Bounded(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert "a" not in cache
    assert dict(cache) == {"b": 2, "c": 3}


def test_putting_an_existing_key_again_does_not_evict():
    cache: Bounded[str, int] = Bounded(2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 10)
    assert dict(cache) == {"a": 10, "b": 2}
    # ...and keeps its place: it is still the oldest, the next to go.
    cache.put("c", 3)
    assert dict(cache) == {"b": 2, "c": 3}


def test_never_holds_more_than_its_size():
    cache: Bounded[int, int] = Bounded(5)
    for i in range(100):
        cache.put(i, i)
        assert len(cache) <= 5
    assert list(cache) == [95, 96, 97, 98, 99]


def test_a_size_of_one_keeps_the_last_entry():
    cache: Bounded[str, str] = Bounded(1)
    cache.put("a", "x")
    cache.put("b", "y")
    assert dict(cache) == {"b": "y"}


@pytest.mark.parametrize("size", [0, -1, -100])
def test_a_size_below_one_is_refused(size: int):
    with pytest.raises(ValueError, match="at least one"):
        Bounded(size)


def test_get_is_the_dicts_own():
    # The hot paths rely on `get` being dict.get, in C (the module doc says why).
    assert Bounded.get is dict.get
    cache: Bounded[str, int] = Bounded(2)
    cache.put("a", 1)
    assert cache.get("a") == 1
    assert cache.get("missing") is None
    assert cache.get("missing", 7) == 7
    assert cache.size == 2
