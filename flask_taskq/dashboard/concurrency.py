"""The dashboard's concurrency page: the per-key concurrency limits at their limit, with
their running and waiting tasks (``docs/concurrency.rst``), refreshed through the
dashboard's live regions (``static/dashboard.js``); the region is the macro of
``_concurrency_regions.html``."""

from __future__ import annotations

from typing import Any

from flask import current_app, get_template_attribute, jsonify, render_template, url_for
from werkzeug.wrappers import Response

from ..concurrency import key_states
from .context import POLL_INTERVAL_MS, base_context
from .views import blueprint

REGIONS_TEMPLATE = "taskq_dashboard/_concurrency_regions.html"
REGIONS = ("concurrency_keys",)
#: How many keys the page lists.
LIMIT = 200


def context() -> dict[str, Any]:
    """The keys at their limit, most waiting first."""
    states = key_states(current_app.extensions["taskq"].store.concurrency)
    rows = []
    for s in states[:LIMIT]:
        task, _, key = s.key.partition(":")
        rows.append(
            {"task": task, "key": key, "limit": s.limit, "running": s.holders, "waiting": s.waiting}
        )
    return base_context(keys=rows, total=len(states), limit=LIMIT)


def live(ctx: dict[str, Any]) -> dict[str, Any]:
    """What ``dashboard.js`` polls: the page's region re-rendered."""
    rendered = {name: str(get_template_attribute(REGIONS_TEMPLATE, name)(ctx)) for name in REGIONS}
    return {"page": "concurrency", "time": ctx["now"], "regions": rendered, "charts": None}


@blueprint.get("/concurrency")
def concurrency() -> str:
    """Concurrency keys at their limit: tasks running (holding a slot) and waiting."""
    ctx = context()
    return render_template(
        "taskq_dashboard/concurrency.html",
        c=ctx,
        page="concurrency",
        live_url=url_for(".concurrency_api"),
        poll_ms=POLL_INTERVAL_MS,
        initial=live(ctx),
    )


@blueprint.get("/api/concurrency")
def concurrency_api() -> Response:
    """The live region of ``/concurrency``, as JSON."""
    return jsonify(live(context()))
