"""Access log and request metrics, labelled by route template (never by raw path, which
may hold a token and would explode the metric's cardinality)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from app.metrics import Metrics

# Set in the scope by handlers that served fallback content, for the access log.
FALLBACK_SCOPE_KEY = "kairos.fallback"

log = logging.getLogger("kairos.access")
# A path segment longer than this is not logged for a path no route matched: it may be a
# token (ours are over 60 characters) or a reader's id.
MAX_LOGGED_SEGMENT = 24

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Observer:
    """Records one answered request: metrics and the access log. `routes` name the
    route of a request answered before routing (a body refused by the cap), whose path
    may hold a token that must not reach the log."""

    def __init__(self, metrics: Metrics, routes: Sequence[BaseRoute] = ()) -> None:
        self.metrics = metrics
        self.routes = routes
        self._children: dict[tuple[str, str, int], tuple[object, object]] = {}

    def record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = scope.get("route") or self._route_of(scope)
        template = getattr(route, "path", None) or "unmatched"
        method = scope["method"]
        if method not in METHODS:
            method = "OTHER"  # a label per made-up method would grow without bound
        key = (template, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.metrics.requests.labels(template, method, str(status)),
                self.metrics.latency.labels(template),
            )
            self._children[key] = children
        children[0].inc()  # type: ignore[attr-defined]
        children[1].observe(elapsed)  # type: ignore[attr-defined]
        if log.isEnabledFor(logging.INFO):
            # A token or a reader's id in the path is logged as its template: reader ids
            # never reach the logs (an erasure's audit names the reader by a hash only).
            path = loggable_path(scope, template)
            fallback = scope.get(FALLBACK_SCOPE_KEY)
            log.info(
                "%s %s %d %.1fms%s",
                method,
                path,
                status,
                elapsed * 1000,
                f" fallback={fallback}" if fallback else "",
            )

    def _route_of(self, scope: Scope) -> BaseRoute | None:
        for route in self.routes:
            if route.matches(scope)[0] is not Match.NONE:
                return route
        return None


def loggable_path(scope: Scope, template: str | None = None) -> str:
    """The request's path as the logs may show it: a route's template where the path
    holds a token or a reader's id; for a path no route matched, its first two segments
    only (a mistyped or truncated URL may still carry a token)."""
    if template is None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
    if template == "unmatched":
        kept = []
        for part in scope["path"].split("/")[1:4]:
            if len(part) > MAX_LOGGED_SEGMENT or not part.isascii():
                break
            kept.append(part)
        return (
            "/"
            + "/".join(kept)
            + ("/…" if scope["path"].count("/") > len(kept) else "")
            + (" (unmatched)")
        )
    if "{token}" in template or "{user_id}" in template:
        return template
    return str(scope["path"])
