"""``TASKQ_ROUTES``: which queue (and options) a task goes to, by exact name or glob."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

#: Options a route may set.
ROUTE_OPTIONS = frozenset({"queue", "priority"})


class Router:
    """Resolves task names against ``TASKQ_ROUTES``: exact names win over globs, and
    globs are tried in the order given. A route is a queue name or a dict of options."""

    def __init__(self, routes: Mapping[str, str | Mapping[str, Any]] | None) -> None:
        self.exact: dict[str, dict[str, Any]] = {}
        self.globs: list[tuple[re.Pattern[str], dict[str, Any]]] = []
        self._in_order: list[dict[str, Any]] = []
        for pattern, route in (routes or {}).items():
            options = {"queue": route} if isinstance(route, str) else dict(route)
            unknown = set(options) - ROUTE_OPTIONS
            if unknown:
                raise ValueError(f"TASKQ_ROUTES[{pattern!r}]: unknown option(s) "
                                 f"{', '.join(sorted(unknown))}")
            self._in_order.append(options)
            if any(c in pattern for c in "*?["):
                self.globs.append((re.compile(fnmatch.translate(pattern)), options))
            else:
                self.exact[pattern] = options
        self._cache: dict[str, dict[str, Any]] = {}

    def route(self, name: str) -> dict[str, Any]:
        """The options the routes give task ``name`` (empty if none matches)."""
        found = self._cache.get(name)
        if found is None:
            found = self.exact.get(name)
            if found is None:
                found = next((opts for rx, opts in self.globs if rx.match(name)), {})
            self._cache[name] = found
        return found

    def queues(self) -> list[str]:
        """Every queue a route names, in the order of ``TASKQ_ROUTES``."""
        return [o["queue"] for o in self._in_order if o.get("queue")]
