"""The dashboard's workflow actions: the Launch page (send a registered task or a workflow
template with JSON arguments), and revoking or retrying a whole workflow from its graph
page.

Like every dashboard action they sit behind ``TASKQ_DASHBOARD_AUTH`` and the CSRF check
(``views.guard``). Each one is logged on the ``flask_taskq.dashboard`` logger with who did
it, when the auth tells: the basic-auth user name, the name an auth callable returned (a
string instead of True) or put in ``flask.g.taskq_user``, or else the client's address.
"""

from __future__ import annotations

import inspect
import json
import logging
from typing import TYPE_CHECKING, Any

from flask import current_app, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from .. import workflow_actions, workflow_graph
from ..workflow_templates import TemplateError
from .context import base_context
from .views import blueprint, flash

if TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_taskq.dashboard")

KINDS = ("task", "template")


class LaunchError(ValueError):
    """Why a launch was refused: shown on the form, nothing is sent."""


def _state() -> AppState:
    state: AppState = current_app.extensions["taskq"]
    return state


#: Longest args/kwargs text written to the log.
LOGGED_ARGS = 300


def _logged(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= LOGGED_ARGS else text[: LOGGED_ARGS - 1] + "…"


def actor() -> str:
    """Who is acting, as far as the dashboard's auth tells: ``user 'x' from 1.2.3.4``."""
    auth = request.authorization
    user = g.get("taskq_user") or (auth.username if auth is not None else None)
    user = user or request.remote_user
    where = request.remote_addr or "?"
    return f"user {user!r} from {where}" if user else f"an unnamed user from {where}"


# -- the launch form ------------------------------------------------------------------------
def _json(name: str, kind: type) -> Any:
    text = (request.form.get(name) or "").strip()
    if not text:
        return kind()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LaunchError(f"{name}: not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        what = "list, such as [1, 2]" if kind is list else 'object, such as {"key": 1}'
        raise LaunchError(f"{name}: give a JSON {what}, not {type(value).__name__}")
    return value


def _check_task_args(name: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    task = _state().taskqueue.tasks.get(name)
    if task is None:
        raise LaunchError(f"unknown task {name!r}: no task of this app has this name")
    try:
        inspect.signature(task.run).bind(*args, **kwargs)
    except TypeError as exc:
        raise LaunchError(f"wrong arguments for task {name!r}: {exc}") from None
    except ValueError:  # no signature to check (a builtin): the worker will say
        pass


def _launch(kind: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> Response:
    state = _state()
    if kind == "task":
        _check_task_args(name, args, kwargs)
        queue = (request.form.get("queue") or "").strip() or None
        result = state.taskqueue.send_task(name, args, kwargs, queue=queue, app=state.app)
        logger.info(
            "dashboard: %s launched task %s[%s] args=%s kwargs=%s",
            actor(),
            name,
            result.id,
            _logged(args),
            _logged(kwargs),
        )
        flash(f"Launched task {name} as {result.id}.", "ok")
        return redirect(url_for(".task", task_id=result.id), 303)
    try:
        result = state.taskqueue.workflows.launch(name, args, kwargs, app=state.app)
    except TemplateError as exc:
        raise LaunchError(str(exc)) from None
    workflow_id = str(result.id)
    logger.info(
        "dashboard: %s launched workflow template %r as workflow %s args=%s kwargs=%s",
        actor(),
        name,
        workflow_id,
        _logged(args),
        _logged(kwargs),
    )
    if workflow_graph.workflow_id_of(state, workflow_id) is None:  # a template of one task
        flash(f"Launched workflow template {name!r}: task {workflow_id}.", "ok")
        return redirect(url_for(".task", task_id=workflow_id), 303)
    flash(f"Launched workflow template {name!r} as workflow {workflow_id}.", "ok")
    return redirect(url_for(".workflow", workflow_id=workflow_id), 303)


def _form_context(error: str | None = None) -> dict[str, Any]:
    state = _state()
    source = request.form if request.method == "POST" else request.args
    kind = source.get("kind") if source.get("kind") in KINDS else None
    templates = list(state.taskqueue.workflows)
    return base_context(
        templates=templates,
        tasks=sorted(state.taskqueue.tasks),
        kind=kind or ("template" if templates else "task"),
        name=source.get("name") or "",
        args=source.get("args") or "",
        kwargs=source.get("kwargs") or "",
        queue=source.get("queue") or "",
        error=error,
    )


def _form(error: str | None = None) -> tuple[str, int]:
    page = render_template(
        "taskq_dashboard/launch.html",
        c=_form_context(error),
        page="launch",
        live_url=None,
        initial=None,
    )
    return page, 400 if error else 200


@blueprint.route("/launch", methods=["GET", "POST"])
def launch() -> Any:
    """The Launch page; its POST sends a task or a workflow template, then goes to the
    workflow's graph (or the task's page). Bad input re-shows the form with the error."""
    if request.method == "GET":
        return _form()
    kind = (request.form.get("kind") or "").strip()
    name = (request.form.get("name") or "").strip()
    try:
        if kind not in KINDS:
            raise LaunchError("choose what to launch: a task or a workflow template")
        if not name:
            raise LaunchError(f"give the name of the {'task' if kind == 'task' else 'template'}")
        return _launch(kind, name, _json("args", list), _json("kwargs", dict))
    except LaunchError as exc:
        logger.info("dashboard: %s: launch of %s %r refused: %s", actor(), kind, name, exc)
        return _form(str(exc))


# -- whole-workflow actions -----------------------------------------------------------------
@blueprint.post("/workflows/<workflow_id>/revoke")
def revoke_workflow(workflow_id: str) -> Response:
    """Revoke every unfinished task of a workflow (``terminate`` stops running ones)."""
    terminate = request.form.get("terminate") in ("1", "on", "true")
    try:
        ids = workflow_actions.revoke(_state(), workflow_id, terminate=terminate)
    except workflow_actions.WorkflowActionError as exc:
        flash(str(exc), "error")
    else:
        logger.warning(
            "dashboard: %s revoked workflow %s (%d task(s)%s)",
            actor(),
            workflow_id,
            len(ids),
            ", terminating running ones" if terminate else "",
        )
        verb = "Revoked and terminating" if terminate else "Revoked"
        flash(f"{verb} {len(ids)} unfinished task(s) of workflow {workflow_id}.", "ok")
    return redirect(url_for(".workflow", workflow_id=workflow_id), 303)


@blueprint.post("/workflows/<workflow_id>/retry")
def retry_workflow(workflow_id: str) -> Response:
    """Run a failed workflow again from its failed steps."""
    try:
        retried = workflow_actions.retry(_state(), workflow_id)
    except workflow_actions.WorkflowActionError as exc:
        flash(str(exc), "error")
    else:
        logger.warning(
            "dashboard: %s retried workflow %s: %d task(s) run again",
            actor(),
            retried.workflow_id,
            len(retried.task_ids),
        )
        flash(
            f"Retrying workflow {retried.workflow_id}: {len(retried.task_ids)} task(s) "
            "run again; those that succeeded keep their results.",
            "ok",
        )
    return redirect(url_for(".workflow", workflow_id=workflow_id), 303)
