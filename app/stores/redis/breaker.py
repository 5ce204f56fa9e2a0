"""A circuit breaker in front of Redis: while the server does not answer, calls fail at
once (`StoreUnavailable`) instead of each waiting out its timeout on a fresh connection.

After `threshold` failures in a row (a timeout, a refused or reset connection: not an
error reply, which is an answer), the breaker opens for `open_s`; then it lets one call
through (half open). That call's success closes it; its failure opens it again for twice
as long, up to `max_open_s`. A black-holed Redis thus costs a probe now and then, not a
connection per request (a pool of 64 had opened 539 in 20 s).

Its `state` and the calls it `refused` are read by `/readyz` and `/metrics`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.errors import CircuitOpen

log = logging.getLogger("kairos.redis")


class Breaker:
    """See the module's docstring. `clock` is monotonic seconds."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        open_s: float = 0.5,
        max_open_s: float = 4.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold, self.open_s, self.max_open_s = threshold, open_s, max_open_s
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0  # 0: closed
        self._opened_for = 0.0
        self._probing = False
        self.opened = 0  # how many times it opened (for tests and metrics)
        self.refused = 0  # calls failed at once while open

    @property
    def state(self) -> str:
        """Closed; open (calls fail at once); half-open (its one probe may go, or is
        out): "closed", "open", "half-open"."""
        if not self._open_until:
            return "closed"
        return "half-open" if self._probing or self._clock() >= self._open_until else "open"

    @property
    def is_open(self) -> bool:
        return bool(self._open_until)

    def admit(self) -> bool:
        """Let a call through, or raise `StoreUnavailable` while the breaker is open (or
        while its one probe is out). True when the call is that probe: it must end in
        `succeeded`, `failed` or `abandoned`."""
        if not self._open_until:  # closed: the hot path
            return False
        if self._probing or self._clock() < self._open_until:
            self.refused += 1
            raise CircuitOpen("redis: not answering (circuit open); retrying shortly")
        self._probing = True
        return True

    def abandoned(self) -> None:
        """The probe ended with no verdict on Redis: its caller cancelled it (a request's
        budget is often shorter than Redis's timeout). The next call may probe; else the
        breaker would refuse every call for good."""
        self._probing = False

    def succeeded(self) -> None:
        if self._failures or self._open_until:
            if self._open_until:
                log.info("redis answers again: circuit closed")
            self._failures, self._open_until, self._opened_for = 0, 0.0, 0.0
            self._probing = False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or (not self._open_until and self._failures >= self.threshold):
            self._opened_for = min(
                self.max_open_s, self._opened_for * 2 if self._opened_for else self.open_s
            )
            self._open_until = self._clock() + self._opened_for
            self._probing = False
            self.opened += 1
            log.warning(
                "redis not answering (%d failures in a row): circuit open for %.1f s",
                self._failures,
                self._opened_for,
            )
