"""``flask taskq inspect workflow ID``: a workflow's tree with the state of each task, from
the graph data recorded when it was sent (``flask_taskq/workflow_graph.py``)."""

from __future__ import annotations

import json

import click

from .. import workflow_graph
from .inspect import inspect_group, inspect_state, json_option


@inspect_group.command("workflow")
@click.argument("workflow_id")
@json_option
def workflow_command(workflow_id: str, as_json: bool = False) -> None:
    """The chain, group or chord WORKFLOW_ID as an indented tree: one line per node with
    its task name (or kind), short id and state. WORKFLOW_ID is the id of the result its
    sender got back, or the id of any task or group in it."""
    state = inspect_state()
    doc = workflow_graph.load(state, workflow_id)
    if doc is None:
        raise click.ClickException(
            f"no workflow {workflow_id!r}: unknown id, not part of a chain, group or "
            "chord, or its data expired with the results"
        )
    doc = workflow_graph.with_states(state, doc)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    counts = ", ".join(f"{n} {s}" for s, n in sorted(doc["counts"].items()))
    click.echo(f"Workflow {doc['id']} ({doc['kind']}, {doc['size']} tasks: {counts})")
    for line in workflow_graph.tree_lines(doc["tree"]):
        click.echo(line)
