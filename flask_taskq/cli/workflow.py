"""``flask taskq workflow``: act on a whole workflow (see ``flask_taskq/workflow_actions.py``)
and launch workflow templates (``flask_taskq/workflow_templates.py``)."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import workflow_actions
from ..workflow_templates import TemplateError
from .common import app_state, check_broker, taskq_cli


@taskq_cli.group("workflow")
def workflow_group() -> None:
    """Retry, revoke or launch workflows (chains, groups, chords)."""


@workflow_group.command("retry")
@click.argument("workflow_id")
def retry_command(workflow_id: str) -> None:
    """Run the failed workflow WORKFLOW_ID again from its failed steps: the tasks that
    failed (and those after them) run again under the same ids; those that succeeded keep
    their results. WORKFLOW_ID may also be the id of any task or group in it."""
    state = app_state()
    check_broker(state)
    try:
        retried = workflow_actions.retry(state, workflow_id)
    except workflow_actions.WorkflowActionError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Retrying workflow {retried.workflow_id}: {len(retried.task_ids)} task(s) run "
        f"again: {', '.join(retried.task_ids)}"
    )


@workflow_group.command("revoke")
@click.argument("workflow_id")
@click.option("--terminate", is_flag=True, help="Also stop its running tasks.")
def revoke_command(workflow_id: str, terminate: bool) -> None:
    """Revoke every unfinished task of the workflow WORKFLOW_ID."""
    state = app_state()
    check_broker(state)
    try:
        ids = workflow_actions.revoke(state, workflow_id, terminate=terminate)
    except workflow_actions.WorkflowActionError as exc:
        raise click.ClickException(str(exc)) from None
    verb = "Revoked and terminating" if terminate else "Revoked"
    click.echo(f"{verb} {len(ids)} task(s) of workflow {workflow_id}")


def _json(text: str | None, kind: type, option: str) -> Any:
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc})", param_hint=option) from None
    if not isinstance(value, kind):
        raise click.BadParameter(
            f"give a JSON {'list' if kind is list else 'object'}", param_hint=option
        )
    return value


@workflow_group.command("launch")
@click.argument("name")
@click.option("--args", "args_json", help="Arguments, a JSON list.")
@click.option("--kwargs", "kwargs_json", help="Keyword arguments, a JSON object.")
def launch_command(name: str, args_json: str | None, kwargs_json: str | None) -> None:
    """Launch the workflow template NAME (declared with ``tq.workflow``); prints its id."""
    state = app_state()
    check_broker(state)
    args = _json(args_json, list, "--args")
    kwargs = _json(kwargs_json, dict, "--kwargs")
    try:
        result = state.taskqueue.workflows.launch(name, args, kwargs, app=state.app)
    except TemplateError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.id)
