"""A small progress bar for the CLI, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        # Looked up now, not at import: stderr may have been redirected since.
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self._drawn_at = -1
        self._tty = self.stream.isatty()

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= (0.1 if self._tty else 2.0):
            self._last = now
            self._draw(end="\r" if self._tty else "\n")

    def close(self) -> None:
        if self._tty or self._drawn_at != self.done:
            self._draw(end="\n")

    def _draw(self, end: str) -> None:
        self._drawn_at = self.done
        fraction = min(self.done / self.total, 1.0)
        bar = "#" * int(fraction * 30)
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"{self.label} [{bar:<30}] {self.done}/{self.total} {fraction:4.0%} {rate:,.0f}/s{end}"
        )
        self.stream.flush()
