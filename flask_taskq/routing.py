"""``TASKQ_ROUTES``: which queue (and options) a task goes to, by exact name or glob, or as
a router function decides (Celery's ``task_routes`` forms)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

#: Options a route may set.
ROUTE_OPTIONS = frozenset({"queue", "priority"})

#: What ``TASKQ_ROUTES`` accepts, for the error message.
ACCEPTED = (
    "a dict of task name or glob -> queue or options, a router function "
    "(name, args, kwargs, options, task=None, **kw) -> dict | str | None, or a "
    "list/tuple of those"
)

#: A router function, Celery's signature.
RouterFunction = Callable[..., Any]


class _Map:
    """One dict of routes: exact names win over globs (and compiled regular
    expressions), which are tried in the order given."""

    def __init__(self, routes: Mapping[Any, Any], where: str) -> None:
        self.exact: dict[str, dict[str, Any]] = {}
        self.globs: list[tuple[re.Pattern[str], dict[str, Any]]] = []
        self.in_order: list[dict[str, Any]] = []
        for pattern, route in routes.items():
            if isinstance(route, str):
                options = {"queue": route}
            elif isinstance(route, Mapping):
                options = dict(route)
            else:
                raise ValueError(
                    f"{where}[{pattern!r}]: a route is a queue name or a dict "
                    f"of options, not {type(route).__name__}"
                )
            unknown = set(options) - ROUTE_OPTIONS
            if unknown:
                raise ValueError(
                    f"{where}[{pattern!r}]: unknown option(s) {', '.join(sorted(unknown))}"
                )
            self.in_order.append(options)
            if isinstance(pattern, re.Pattern):
                self.globs.append((pattern, options))
            elif any(c in pattern for c in "*?["):
                self.globs.append((re.compile(fnmatch.translate(pattern)), options))
            else:
                self.exact[pattern] = options

    def __call__(self, name: str) -> dict[str, Any] | None:
        found = self.exact.get(name)
        if found is None:
            found = next((opts for rx, opts in self.globs if rx.match(name)), None)
        return found


class Router:
    """Resolves task names against ``TASKQ_ROUTES``: a dict, a router function, or a
    list/tuple of dicts and router functions consulted in order (the first that gives a
    route wins), as Celery's ``task_routes``. Anything else is a ``ValueError``."""

    def __init__(self, routes: Any) -> None:
        if routes is None or isinstance(routes, Mapping) or callable(routes):
            items = [routes] if routes else []
            label = "TASKQ_ROUTES"
        elif isinstance(routes, list | tuple):
            items = list(routes)
            label = "TASKQ_ROUTES[{}]"
        else:
            raise ValueError(f"TASKQ_ROUTES is a {type(routes).__name__}; it must be {ACCEPTED}")
        self.routers: list[_Map | RouterFunction] = []
        for index, item in enumerate(items):
            where = label.format(index)
            if isinstance(item, Mapping):
                self.routers.append(_Map(item, where))
            elif callable(item):
                self.routers.append(item)
            else:
                raise ValueError(
                    f"{where} is a {type(item).__name__}; TASKQ_ROUTES must be {ACCEPTED}"
                )
        #: True when a router function takes part: routes then depend on each call.
        self.dynamic = any(not isinstance(r, _Map) for r in self.routers)
        self._cache: dict[str, dict[str, Any]] = {}

    def route(
        self,
        name: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        task: Any = None,
    ) -> dict[str, Any]:
        """The options the routes give task ``name`` (empty if none matches). Router
        functions get ``(name, args, kwargs, options, task=task)``; a string they return
        is a queue name. ``ValueError`` when one returns something else than a dict, a
        string or None, or a dict with options other than ``queue`` and ``priority``."""
        if not self.dynamic:
            found = self._cache.get(name)
            if found is None:
                found = next((r for m in self.routers if (r := m(name)) is not None), {})
                self._cache[name] = found
            return found
        for router in self.routers:
            if isinstance(router, _Map):
                found = router(name)
            else:
                found = _function_route(router, name, args, kwargs or {}, options or {}, task)
            if found:
                return found
        return {}

    def queues(self) -> list[str]:
        """Every queue a route of a dict names, in the order of ``TASKQ_ROUTES`` (router
        functions name none)."""
        return [
            o["queue"]
            for m in self.routers
            if isinstance(m, _Map)
            for o in m.in_order
            if o.get("queue")
        ]


def _function_route(
    router: RouterFunction,
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    options: dict[str, Any],
    task: Any,
) -> dict[str, Any] | None:
    found = router(name, args, kwargs, options, task=task)
    if found is None:
        return None
    if isinstance(found, str):
        return {"queue": found}
    label = getattr(router, "__qualname__", repr(router))
    if not isinstance(found, Mapping):
        raise ValueError(
            f"router {label} returned {found!r} for task {name!r}; a router "
            "returns a dict, a queue name or None"
        )
    unknown = set(found) - ROUTE_OPTIONS
    if unknown:
        raise ValueError(
            f"router {label} returned unknown option(s) "
            f"{', '.join(sorted(unknown))} for task {name!r}; a route may set "
            "queue and priority"
        )
    return dict(found)
