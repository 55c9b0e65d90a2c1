"""The dashboard's workflow pages: the recent workflows and one workflow's graph, drawn
as nested boxes (a chain left to right, a group top to bottom, a chord as its header
then its callback) with each task's state, from the graph data of
``flask_taskq/workflow_graph.py``. Both pages refresh through the dashboard's live
regions (``static/dashboard.js``); their regions are the macros of
``_workflow_regions.html``. The views themselves are in ``views.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Response, current_app, get_template_attribute, render_template, url_for

from .. import workflow_graph
from .context import POLL_INTERVAL_MS, base_context

if TYPE_CHECKING:
    from ..state import AppState

REGIONS_TEMPLATE = "taskq_dashboard/_workflow_regions.html"
#: How many workflows the list shows.
LIST_LIMIT = 50
#: How many members of a group the graph draws; the others are summed up by state.
GROUP_SHOWN = 40
LIST_REGIONS = ("workflow_list",)
GRAPH_REGIONS = ("workflow_graph",)


def _state() -> AppState:
    state: AppState = current_app.extensions["taskq"]
    return state


def _trim(node: dict[str, Any]) -> dict[str, Any]:
    """The tree as drawn: each group's first :data:`GROUP_SHOWN` members, and ``hidden``:
    how many of the others are in each state."""
    children = node.get("children")
    if children is None:
        return node
    shown = children
    hidden: dict[str, int] = {}
    if node["kind"] == "group" and len(children) > GROUP_SHOWN:
        shown = children[:GROUP_SHOWN]
        for child in children[GROUP_SHOWN:]:
            hidden[child["state"]] = hidden.get(child["state"], 0) + 1
    return {
        **node,
        "children": [_trim(c) for c in shown],
        "hidden": sorted(hidden.items()),
        "hidden_total": sum(hidden.values()),
    }


def list_context() -> dict[str, Any]:
    """The recent workflows, newest first."""
    return base_context(
        workflows=workflow_graph.recent(_state(), LIST_LIMIT),
        limit=LIST_LIMIT,
        recent_limit=workflow_graph.RECENT_LIMIT,
    )


def graph_context(workflow_id: str) -> dict[str, Any] | None:
    """One workflow with its states, or None if no workflow has this (or any task of it
    has this) id."""
    doc = workflow_graph.load(_state(), workflow_id)
    if doc is None:
        return None
    doc = workflow_graph.with_states(_state(), doc)
    return base_context(workflow=doc, tree=_trim(doc["tree"]), asked=workflow_id)


def workflow_of(task_id: str) -> str | None:
    """The id of the workflow ``task_id`` is part of, or None."""
    return workflow_graph.workflow_id_of(_state(), task_id)


def live(page: str, context: dict[str, Any], regions: tuple[str, ...]) -> dict[str, Any]:
    """What ``dashboard.js`` polls: the page's regions re-rendered."""
    rendered = {
        name: str(get_template_attribute(REGIONS_TEMPLATE, name)(context)) for name in regions
    }
    return {"page": page, "time": context["now"], "regions": rendered, "charts": None}


def _render(template: str, context: dict[str, Any], api_url: str, regions: tuple[str, ...]) -> str:
    return render_template(
        f"taskq_dashboard/{template}",
        c=context,
        page="workflows",
        live_url=api_url,
        poll_ms=POLL_INTERVAL_MS,
        initial=live("workflows", context, regions),
    )


def list_page() -> str:
    """``/workflows``: the recent workflows."""
    return _render("workflows.html", list_context(), url_for(".workflows_api"), LIST_REGIONS)


def graph_page(workflow_id: str) -> str | tuple[str, int]:
    """``/workflows/<id>``: one workflow's graph (404 page when unknown)."""
    context = graph_context(workflow_id)
    if context is None:
        return render_template(
            "taskq_dashboard/workflow.html",
            c=base_context(workflow=None, asked=workflow_id),
            page="workflows",
            live_url=None,
            initial=None,
        ), 404
    return _render(
        "workflow.html", context, url_for(".workflow_api", workflow_id=workflow_id), GRAPH_REGIONS
    )


def list_api() -> dict[str, Any]:
    """The live region of ``/workflows``."""
    return live("workflows", list_context(), LIST_REGIONS)


def graph_api(workflow_id: str) -> dict[str, Any] | Response:
    """The live region of ``/workflows/<id>``."""
    context = graph_context(workflow_id)
    if context is None:
        return Response('{"error": "unknown workflow"}\n', 404, mimetype="application/json")
    return live("workflows", context, GRAPH_REGIONS)
