"""`Reason`, `Fallback` and `reason_for` (app/fallbacks.py): the one mapping from what
went wrong with a reader's data to the fallback reason every surface names; and every
reason is documented where readers of the README look for it."""

from __future__ import annotations

import re

import pytest

from app.errors import CorruptData, Forbidden, NotFound, StoreUnavailable
from app.fallbacks import Fallback, Reason, reason_for
from app.settings import PROJECT_ROOT

CASES: list[tuple[str, BaseException, Reason]] = [
    ("timeout", TimeoutError(), Reason.BUDGET),
    ("store down", StoreUnavailable("connection refused"), Reason.STORE_UNAVAILABLE),
    ("corrupt data", CorruptData("not JSON"), Reason.INVALID_DATA),
    *[(f"fallback {r.value}", Fallback(r, "detail"), r) for r in Reason],
    ("a bug", RuntimeError("boom"), Reason.ERROR),
    ("key error", KeyError("sku"), Reason.ERROR),
    ("value error", ValueError("bad"), Reason.ERROR),
    # Typed HTTP errors are not data failures: a handler must not raise them for data.
    ("http error", NotFound("no such thing"), Reason.ERROR),
    ("forbidden", Forbidden("no"), Reason.ERROR),
]


@pytest.mark.parametrize(
    ("exc", "reason"), [pytest.param(exc, reason, id=name) for name, exc, reason in CASES]
)
def test_reason_for(exc: BaseException, reason: Reason):
    assert reason_for(exc) is reason


def test_a_subclass_of_a_known_error_has_its_reason():
    class SlowStore(StoreUnavailable):
        pass

    assert reason_for(SlowStore()) is Reason.STORE_UNAVAILABLE


def test_fallback_names_its_reason_and_detail():
    bare = Fallback(Reason.MISSING_DATA)
    assert bare.reason is Reason.MISSING_DATA
    assert str(bare) == "missing-data"
    detailed = Fallback(Reason.INVALID_DATA, "cart is not a list")
    assert str(detailed) == "invalid-data: cart is not a list"


def test_reasons_are_their_header_values():
    # The values are what X-Kairos-Fallback and the metric's label say: lower-case words
    # joined by dashes, each one distinct.
    values = [r.value for r in Reason]
    assert len(set(values)) == len(values)
    for reason in Reason:
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", reason.value), reason
        assert str(reason) == reason.value
        assert reason.encode() == reason.value.encode("ascii")


def _section(readme: str, heading: str) -> str:
    start = readme.index(f"\n{heading}\n")
    end = readme.find("\n#", start + len(heading) + 2)
    return readme[start : end if end != -1 else None]


def _backticked_words(text: str) -> set[str]:
    """Every word (letters and dashes) inside a backtick span of `text`."""
    words: set[str] = set()
    for span in re.findall(r"`([^`]+)`", text):
        words.update(re.findall(r"[a-z]+(?:-[a-z]+)*", span))
    return words


def test_every_reason_is_documented_in_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text()
    documented = _backticked_words(_section(readme, "### Feeds")) | _backticked_words(
        _section(readme, "### Live images")
    )
    missing = sorted(r.value for r in Reason if r.value not in documented)
    assert not missing, f"fallback reasons missing from the README's feed and image docs: {missing}"


def test_the_readme_check_would_see_a_missing_reason():
    # The check above reads words in backticks, not anywhere in the text.
    assert "error" in _backticked_words("say `X-Kairos-Fallback: budget |\nerror` here")
    assert "error" not in _backticked_words("an error, `budget`")
