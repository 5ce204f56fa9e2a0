"""What a template's compile may reuse of its last one: the Jinja pieces made and the
files checked, by their text. A save recompiles the templates using the saved block,
but the Jinja of their unchanged blocks is not compiled again.

The memo of the compile under way is a context variable (set by `reusing`, per
thread), so the compiler's functions need not carry it. A memo keeps only what its
compile used: a template's memos never outgrow one version of it."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

Used = Mapping[Hashable, Any]
NONE: Used = MappingProxyType({})


class Memo:
    """What one compile made (`used`), and what the last compile of the same template
    made, to be found again."""

    def __init__(self, last: Used = NONE) -> None:
        self._last = last
        self._used: dict[Hashable, Any] = {}

    def get(self, key: Hashable) -> Any:
        """What was made for `key` (by this compile or the last), or None."""
        found = self._used.get(key)
        if found is None:
            found = self._last.get(key)
            if found is not None:
                self._used[key] = found
        return found

    def put(self, key: Hashable, value: Any) -> None:
        self._used[key] = value

    @property
    def used(self) -> Used:
        """What this compile made or found again: the memo of its template's next one."""
        return MappingProxyType(self._used)


_CURRENT: ContextVar[Memo | None] = ContextVar("kairos_compile_memo", default=None)


def current() -> Memo | None:
    """The memo of the compile under way in this thread, if any."""
    return _CURRENT.get()


@contextlib.contextmanager
def reusing(memo: Memo) -> Iterator[Memo]:
    """Compile with `memo` within the block."""
    token = _CURRENT.set(memo)
    try:
        yield memo
    finally:
        _CURRENT.reset(token)
