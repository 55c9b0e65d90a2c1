"""Workflow graph data: the shape of every chain, group and chord, kept in the store
(``state.store.workflows``) so that ``flask taskq inspect workflow`` and the dashboard can
draw it with each task's state.

When a workflow is sent (:meth:`flask_taskq.canvas.Canvas.apply_async`), :func:`record`
writes, in one step (in Redis, one pipeline; ``memory://`` keeps the same in the app's
process):

- ``taskq:workflow:{<id>}``: a JSON document (:func:`document`) with the workflow's tree
  (``kind``, ``id``, ``children``; a task node has ``task``, its name), the flat list of
  its task nodes and the edges along which values flow;
- ``taskq:workflow-of:{<task or group id>}`` = ``<id>`` for every other id in it, so any
  of them finds the workflow;
- ``<id>`` in the sorted set ``taskq:workflows`` (the most recent :data:`RECENT_LIMIT`);
- ``taskq:workflow:{<id>}:canvas``: the workflow as sent (its signatures with their
  arguments, encoded by ``TASKQ_SERIALIZER``), so that a failed workflow can be run
  again from its failed steps (:mod:`flask_taskq.workflow_actions`).

Every key but the sorted set expires with the results (``TASKQ_RESULT_EXPIRES``; kept
when that is 0 or None). The workflow's id is the id of the result its sender got back:
the last task's for a chain, the :class:`~flask_taskq.GroupResult`'s for a group and the
callback's (its last task's, for a chain) for a chord. States are not stored here: they
are read from the result backend when the graph is loaded (:func:`with_states`).

.. versionadded:: 0.2
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from . import states

if TYPE_CHECKING:
    from .canvas import Canvas
    from .state import AppState

#: How many workflow ids ``taskq:workflows`` keeps (the most recent).
RECENT_LIMIT = 200
#: Version of the stored document's layout.
VERSION = 1
#: The states a node can show besides the task states: some tasks finished, others not.
RUNNING = states.STARTED


# -- the document ---------------------------------------------------------------------------
def describe(flow: Any) -> dict[str, Any]:
    """The tree of ``flow``, a canvas object (its ids fixed): ``{"kind", "id",
    "children"}`` for a chain, group or chord (a chord's children are its header group
    and its callback), and ``{"kind": "task", "id", "task"}`` for a task.

    It reads what every canvas object says of itself (``kind``, ``id``, ``name``,
    ``tasks``, ``header``, ``body``), so this module does not import
    :mod:`flask_taskq.canvas`, which records workflows through it."""
    kind = flow.kind
    if kind == "signature":
        return {"kind": "task", "id": flow.id, "task": flow.name}
    if kind == "group":
        return {"kind": "group", "id": flow.id, "children": [describe(t) for t in flow.tasks]}
    if kind == "chain":
        children = [describe(t) for t in flow.tasks]
        return {"kind": "chain", "id": children[-1]["id"], "children": children}
    if kind != "chord":
        raise TypeError(f"not a canvas object: kind {kind!r}")
    header, body = describe(flow.header), describe(flow.body)
    return {"kind": "chord", "id": body["id"], "children": [header, body]}


def iter_nodes(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of ``tree``, depth first, the node before its children."""
    yield tree
    for child in tree.get("children", ()):
        yield from iter_nodes(child)


def task_nodes(tree: dict[str, Any]) -> list[dict[str, Any]]:
    """The task nodes of ``tree`` in order."""
    return [n for n in iter_nodes(tree) if n["kind"] == "task"]


def _ends(tree: dict[str, Any], edges: list[list[str]]) -> tuple[list[str], list[str]]:
    """The ids where values enter and leave ``tree``; appends its inner edges."""
    kind = tree["kind"]
    if kind == "task":
        return [tree["id"]], [tree["id"]]
    ends = [_ends(child, edges) for child in tree["children"]]
    if kind == "group":
        return [i for heads, _ in ends for i in heads], [i for _, tails in ends for i in tails]
    for (_, tails), (heads, _) in itertools.pairwise(ends):
        edges.extend([t, h] for t in tails for h in heads)
    return ends[0][0], ends[-1][1]


def edges_of(tree: dict[str, Any]) -> list[list[str]]:
    """``[from, to]`` task id pairs: ``to`` gets ``from``'s value (chain steps, chord
    members to the callback)."""
    edges: list[list[str]] = []
    _ends(tree, edges)
    return edges


def _label(tree: dict[str, Any]) -> str:
    if tree["kind"] == "task":
        return str(tree["task"]).rsplit(".", 1)[-1]
    children = tree["children"]
    if tree["kind"] == "group":
        names = sorted({_label(c) for c in children})
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        return f"group({len(children)}x {shown})" if len(names) == 1 else f"group({shown})"
    if tree["kind"] == "chord":
        return f"chord({_label(children[0])} → {_label(children[1])})"
    return " | ".join(_label(c) for c in children)


def document(
    workflow_id: str, tree: dict[str, Any], created: float | None = None
) -> dict[str, Any]:
    """What :func:`record` stores for the workflow ``tree``."""
    nodes = [{"id": n["id"], "task": n["task"], "kind": "task"} for n in task_nodes(tree)]
    return {
        "version": VERSION,
        "id": workflow_id,
        "kind": tree["kind"],
        "name": _label(tree),
        "created": time.time() if created is None else created,
        "size": len(nodes),
        "tree": tree,
        "nodes": nodes,
        "edges": edges_of(tree),
    }


# -- the store ------------------------------------------------------------------------------
def record(state: AppState, workflow_id: str, flow: Any) -> dict[str, Any]:
    """Store the shape of ``flow`` (its ids fixed) under ``workflow_id``, index its other
    ids and add it to the recent workflows, in one round trip. Returns the document."""
    doc = document(workflow_id, describe(flow))
    others = {n["id"] for n in iter_nodes(doc["tree"])} - {workflow_id}
    state.store.workflows.save_graph(
        workflow_id,
        doc,
        sorted(others),
        state.result_expires,
        RECENT_LIMIT,
        canvas=encode_canvas(state, flow),
    )
    return doc


def encode_canvas(state: AppState, flow: Canvas) -> bytes | None:
    """``flow`` as sent (ids fixed, not yet linked), encoded by the app's serializer, for
    re-running its failed steps later (``flask_taskq/workflow_actions.py``); None when
    its arguments cannot be encoded (then the workflow cannot be retried)."""
    try:
        return state.serializer.dumps(flow.to_dict())
    except Exception:  # the messages themselves will say what is wrong with the arguments
        return None


def load_canvas(state: AppState, workflow_id: str) -> dict[str, Any] | None:
    """The canvas (plain data) the workflow ``workflow_id`` was sent as, or None when it
    was not kept (sent by an older version, unencodable arguments, or expired)."""
    data = state.store.workflows.graph_canvas(workflow_id)
    if data is None:
        return None
    try:
        value = state.serializer.loads(data)
    except Exception:
        return None
    return value if isinstance(value, dict) else None


def workflow_id_of(state: AppState, any_id: str) -> str | None:
    """The id of the workflow that ``any_id`` (a workflow, task or group id) is part of,
    or None."""
    return state.store.workflows.graph_id_of(any_id)


def load(state: AppState, any_id: str) -> dict[str, Any] | None:
    """The stored document of the workflow that ``any_id`` (a workflow, task or group id)
    is part of, or None if it is unknown or expired."""
    return state.store.workflows.graph(any_id)


def _read_one(backend: Any, task_id: str, away: tuple[type[BaseException], ...]) -> dict[str, Any]:
    try:
        meta: dict[str, Any] | None = backend.get(task_id)
    except away:
        raise
    except Exception:  # a forged or unreadable result shows as unknown
        meta = None
    return meta or {"status": states.PENDING}


def task_states(state: AppState, task_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each task's state document from the result backend (PENDING when it has none or
    it cannot be read), read in one round trip per 1,000 tasks when the backend reads
    many at once (``get_many``)."""
    ids = list(dict.fromkeys(task_ids))
    backend = state.backend
    if backend is None:
        return {i: {"status": states.PENDING} for i in ids}
    away: tuple[type[BaseException], ...] = (*state.store.errors, ConnectionError, OSError)
    get_many = getattr(backend, "get_many", None)
    if get_many is None:
        return {i: _read_one(backend, i, away) for i in ids}
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        try:
            metas = get_many(chunk)
        except away:
            raise
        except Exception:  # one unreadable result: read them one by one
            metas = [_read_one(backend, i, away) for i in chunk]
        for task_id, meta in zip(chunk, metas, strict=True):
            found[task_id] = meta or {"status": states.PENDING}
    return found


def combined_state(children: Iterable[str]) -> str:
    """The state of a chain, group or chord from its parts': FAILURE if any failed,
    SUCCESS if all succeeded, PENDING if none started, REVOKED if all finished and some
    were revoked, else STARTED (under way)."""
    seen = list(children)
    if not seen:
        return states.SUCCESS
    if states.FAILURE in seen:
        return states.FAILURE
    if all(s == states.SUCCESS for s in seen):
        return states.SUCCESS
    if all(s == states.PENDING for s in seen):
        return states.PENDING
    if states.REVOKED in seen and all(s in states.READY_STATES for s in seen):
        return states.REVOKED
    return RUNNING


def _annotate(tree: dict[str, Any], found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if tree["kind"] == "task":
        meta = found.get(tree["id"]) or {"status": states.PENDING}
        return {
            **tree,
            "state": meta.get("status") or states.PENDING,
            "date_done": meta.get("date_done"),
        }
    children = [_annotate(c, found) for c in tree["children"]]
    return {**tree, "children": children, "state": combined_state(c["state"] for c in children)}


def with_states(state: AppState, doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with ``state`` on every node of its tree (tasks' from the result backend,
    the others' combined by :func:`combined_state`), ``state`` and ``counts`` (tasks per
    state) on the document itself."""
    return _stated(doc, task_states(state, (n["id"] for n in doc["nodes"])))


def _stated(doc: dict[str, Any], found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    tree = _annotate(doc["tree"], found)
    counts: dict[str, int] = {}
    for node in task_nodes(tree):
        counts[node["state"]] = counts.get(node["state"], 0) + 1
    return {**doc, "tree": tree, "state": tree["state"], "counts": counts}


def recent(state: AppState, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent workflows still stored, newest first, each a document with its
    states (see :func:`with_states`)."""
    docs = state.store.workflows.recent_graphs(max(limit, 1))
    if not docs:
        return []
    found = task_states(state, (n["id"] for doc in docs for n in doc["nodes"]))
    return [_stated(doc, found) for doc in docs]


# -- text -----------------------------------------------------------------------------------
def short_id(node_id: str | None) -> str:
    """The first 8 characters of an id."""
    return (node_id or "?")[:8]


def tree_lines(tree: dict[str, Any], indent: str = "  ") -> list[str]:
    """One line per node, children indented under their parent: kind or task name,
    short id and state (``with_states`` must have run)."""
    lines: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        name = node["task"] if node["kind"] == "task" else node["kind"]
        lines.append(f"{indent * depth}{name}  {short_id(node['id'])}  {node.get('state', '?')}")
        for child in node.get("children", ()):
            walk(child, depth + 1)

    walk(tree, 0)
    return lines
