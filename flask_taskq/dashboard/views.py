"""The dashboard's blueprint: pages, their live-update JSON, the metrics and the actions.

Every page is rendered on the server. Its live parts ("regions") are Jinja macros of
``_regions.html`` taking the page's context; ``GET api/<page>`` returns them re-rendered
with the chart series as JSON, which ``static/dashboard.js`` polls every few seconds.
Actions are HTML form POSTs carrying the CSRF token of the browser's cookie
(``csrf.py``), answered by a redirect. Neither needs a session, so neither needs
``SECRET_KEY``: without one, the notice an action leaves for the next page rides in a
cookie of its own instead of ``flask.flash``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import flask
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    get_flashed_messages,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import failures, metrics
from ..broker import ERRORS as TRANSPORT_ERRORS
from ..schedules import get_timezone
from . import auth, csrf, data
from .context import POLL_INTERVAL_MS, base_context

if TYPE_CHECKING:
    from ..state import AppState

blueprint = Blueprint(
    "taskq_dashboard", __name__, template_folder="templates", static_folder="static"
)

REGIONS_TEMPLATE = "taskq_dashboard/_regions.html"
#: Recent failures (tasks that failed without a dead letter) the failures page lists.
RECENT_FAILURES = 100
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _state() -> AppState:
    state: AppState = current_app.extensions["taskq"]
    return state


# -- request guards -------------------------------------------------------------------------
@blueprint.before_request
def guard() -> Response | None:
    """Authenticate, then require the CSRF token of POSTs."""
    setting = current_app.config.get("TASKQ_DASHBOARD_AUTH")
    refused = auth.refusal(setting, request, current_app.debug)
    if refused is not None:
        return refused
    if request.method in csrf.UNSAFE_METHODS and not csrf.valid(request):
        return Response(
            "The CSRF token is missing or invalid: reload the page and try again.\n",
            400,
            mimetype="text/plain",
        )
    return None


@blueprint.after_request
def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    csrf.set_cookie(response)
    _send_notices(response)
    if request.endpoint != "taskq_dashboard.static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def redis_down(exc: Exception) -> tuple[Any, int]:
    """A 503 page (or JSON error for the live updates) while the broker, its store or
    the result backend is unreachable or refusing; any other error goes on as before."""
    state = _state()
    backend_errors = state.backend.errors if state.backend is not None else ()
    if not isinstance(exc, (*state.broker.errors, *state.store.errors, *backend_errors)):
        raise exc
    line = state.unreachable(exc)
    message = line[:1].upper() + line[1:]
    if request.path.startswith(url_for(".overview") + "api/"):
        return jsonify(error=message), 503
    return render_template("taskq_dashboard/error.html", message=message, c=base_context()), 503


# The classes any transport flask-taskq ships may raise; redis_down keeps those of this
# app's transport and lets the others through.
for _error in TRANSPORT_ERRORS:
    if issubclass(_error, Exception):
        blueprint.register_error_handler(_error, redis_down)


# -- notices: flash() with a session, a cookie without ----------------------------------------
NOTICE_COOKIE = "taskq_notice"


def flash(message: str, category: str = "message") -> None:
    """Show ``message`` on the next page: :func:`flask.flash` when the app has a secret
    key (so a session), else in the cookie :data:`NOTICE_COOKIE`."""
    if current_app.secret_key:
        flask.flash(message, category)
    else:
        g.setdefault("taskq_notices", []).append([category, message[:500]])  # cookie: 4 KB


def _send_notices(response: Response) -> None:
    path = url_for("taskq_dashboard.overview")
    notices = g.get("taskq_notices")
    if notices:
        value = base64.urlsafe_b64encode(json.dumps(notices).encode()).decode()
        response.set_cookie(
            NOTICE_COOKIE,
            value,
            path=path,
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )
    elif g.get("taskq_notices_shown"):
        response.delete_cookie(
            NOTICE_COOKIE, path=path, secure=request.is_secure, httponly=True, samesite="Strict"
        )


@blueprint.app_template_global("taskq_notices")
def notices() -> list[tuple[str, str]]:
    """The ``(category, message)`` notices left for this page by the last action."""
    shown = list(cast("list[tuple[str, str]]", get_flashed_messages(with_categories=True)))
    raw = request.cookies.get(NOTICE_COOKIE)
    if raw:
        g.taskq_notices_shown = True
        try:
            pairs = json.loads(base64.urlsafe_b64decode(raw.encode()))
        except (binascii.Error, ValueError):
            pairs = []
        if isinstance(pairs, list):
            shown += [(str(p[0]), str(p[1])) for p in pairs if isinstance(p, list) and len(p) == 2]
    return shown


# -- formatting -----------------------------------------------------------------------------
@blueprint.app_template_filter("taskq_time")
def format_time(value: float | None) -> str:
    """A unix time in ``TASKQ_TIMEZONE``."""
    if value is None:
        return "—"
    tz = get_timezone(current_app.config.get("TASKQ_TIMEZONE"))
    return datetime.fromtimestamp(float(value), tz).strftime("%Y-%m-%d %H:%M:%S %Z")


@blueprint.app_template_filter("taskq_duration")
def format_duration(seconds: float | None) -> str:
    """``< 1 ms``, ``42 ms``, ``3.2 s``, ``5 m 02 s``, ``2 h 03 m``."""
    if seconds is None:
        return "—"
    seconds = max(0.0, float(seconds))
    if 0 < seconds < 0.0005:
        return "< 1 ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


@blueprint.app_template_filter("taskq_bytes")
def format_bytes(value: int | None) -> str:
    if not value:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


# -- page contexts --------------------------------------------------------------------------
def _processes() -> list[dict[str, Any]]:
    mon = data.monitor(_state())
    return mon.processes() if mon is not None else []


def overview_context() -> dict[str, Any]:
    state = _state()
    mon = data.monitor(state)
    processes = mon.processes() if mon is not None else []
    stats = data.activity(mon)
    queues = data.queues(state, mon, processes, stats)
    workers = data.workers(processes)
    return base_context(
        stats=stats,
        queues=queues,
        workers=workers,
        processes=processes,
        next=url_for(".overview"),
        waiting=sum(q["ready"] for q in queues),
        dead=sum(q["dead"] for q in queues),
        running=sum(len(w["running"]) for w in workers),
    )


def queues_context() -> dict[str, Any]:
    state = _state()
    mon = data.monitor(state)
    processes = mon.processes() if mon is not None else []
    stats = data.activity(mon)
    return base_context(
        stats=stats, queues=data.queues(state, mon, processes, stats), next=url_for(".queues")
    )


def workers_context() -> dict[str, Any]:
    return base_context(workers=data.workers(_processes()), next=url_for(".workers"))


def failures_context() -> dict[str, Any]:
    state = _state()
    queue = request.args.get("queue") or None
    stats = data.activity(data.monitor(state))
    failing = [t for t in stats["by_task"] if t["failed"]]
    recent = failures.recent_failures(state, RECENT_FAILURES)
    if queue:
        recent = [f for f in recent if f.get("queue") == queue]
    return base_context(
        stats=stats,
        failing=failing,
        queue=queue,
        recent=recent,
        dead_letters=data.dead_letters(state, queue),
        dead_counts=data.dead_letter_counts(state),
        next=url_for(".failures", queue=queue),
    )


def periodic_context() -> dict[str, Any]:
    state = _state()
    schedule = data.periodic(state)
    if schedule is not None:  # with each last run's state (tq.periodic.list)
        schedule["entries"] = state.taskqueue.periodic.list(state.app)
    return base_context(schedule=schedule, next=url_for(".periodic"))


def task_context(task_id: str) -> dict[str, Any]:
    queue = request.args.get("queue") or None
    entry = request.args.get("entry") or None
    info = data.task(_state(), task_id, _processes(), queue, entry)
    return base_context(task=info, next=url_for(".task", task_id=task_id, queue=queue, entry=entry))


#: page -> (template, context function, live regions: macro names of _regions.html)
PAGES: dict[str, tuple[str, Callable[[], dict[str, Any]], tuple[str, ...]]] = {
    "overview": ("overview.html", overview_context, ("summary", "queue_table", "worker_table")),
    "queues": ("queues.html", queues_context, ("queue_table",)),
    "workers": ("workers.html", workers_context, ("worker_details",)),
    "failures": (
        "failures.html",
        failures_context,
        ("failing_tasks", "recent_failures", "dead_letter_table"),
    ),
    "periodic": ("periodic.html", periodic_context, ("periodic_table",)),
}


def _live(page: str, context: dict[str, Any], regions: tuple[str, ...]) -> dict[str, Any]:
    """What the page script polls: the regions re-rendered and the chart series."""
    rendered = {
        name: str(get_template_attribute(REGIONS_TEMPLATE, name)(context)) for name in regions
    }
    stats = context.get("stats")
    return {
        "page": page,
        "time": context["now"],
        "regions": rendered,
        "charts": stats["series"] if stats else None,
    }


def _page(
    page: str, api_url: str, context: dict[str, Any], template: str, regions: tuple[str, ...]
) -> str:
    return render_template(
        f"taskq_dashboard/{template}",
        c=context,
        page=page,
        live_url=api_url,
        poll_ms=POLL_INTERVAL_MS,
        initial=_live(page, context, regions),
    )


# -- pages ----------------------------------------------------------------------------------
def _page_view(page: str) -> Callable[[], str]:
    template, context, regions = PAGES[page]

    def view() -> str:
        args: dict[str, Any] = request.args.to_dict()
        api_url = url_for(".api", page=page, **args)
        return _page(page, api_url, context(), template, regions)

    view.__name__ = page
    view.__doc__ = f"The {page} page."
    return view


blueprint.add_url_rule("/", view_func=_page_view("overview"))
for _name in ("queues", "workers", "failures", "periodic"):
    blueprint.add_url_rule(f"/{_name}", view_func=_page_view(_name))


@blueprint.get("/api/<page>")
def api(page: str) -> Response:
    """The live regions and chart series of ``page``, as JSON."""
    if page not in PAGES:
        abort(404)
    _, context, regions = PAGES[page]
    return jsonify(_live(page, context(), regions))


# -- workflows: the pages are built in workflows.py -----------------------------------------
@blueprint.get("/workflows")
def workflows() -> str:
    """The recent workflows (chains, groups, chords) with their state."""
    from . import workflows as pages

    return pages.list_page()


@blueprint.get("/workflows/<workflow_id>")
def workflow(workflow_id: str) -> Any:
    """One workflow's graph with each task's state (any task id of it works too)."""
    from . import workflows as pages

    return pages.graph_page(workflow_id)


@blueprint.get("/api/workflows")
def workflows_api() -> Any:
    from . import workflows as pages

    return pages.list_api()


@blueprint.get("/api/workflows/<workflow_id>")
def workflow_api(workflow_id: str) -> Any:
    from . import workflows as pages

    return pages.graph_api(workflow_id)


@blueprint.app_template_global("taskq_workflow_of")
def workflow_of(task_id: str) -> str | None:
    """The id of the workflow ``task_id`` is part of, or None (for the task page)."""
    from . import workflows as pages

    return pages.workflow_of(task_id)


@blueprint.get("/task")
def find_task() -> WerkzeugResponse:
    """The task search box: go to the page of the task id typed in."""
    task_id = (request.args.get("id") or "").strip()
    if not task_id:
        return redirect(url_for(".overview"))
    return redirect(url_for(".task", task_id=task_id))


TASK_REGIONS = ("task_panel",)


@blueprint.get("/task/<task_id>")
def task(task_id: str) -> str:
    """One task: state, arguments, result or traceback, timings, progress, retry."""
    context = task_context(task_id)
    api_url = url_for(
        ".task_api",
        task_id=task_id,
        queue=request.args.get("queue"),
        entry=request.args.get("entry"),
    )
    return _page("task", api_url, context, "task.html", TASK_REGIONS)


@blueprint.get("/api/task/<task_id>")
def task_api(task_id: str) -> Response:
    return jsonify(_live("task", task_context(task_id), TASK_REGIONS))


@blueprint.get("/metrics")
def metrics_view() -> Response:
    """The Prometheus metrics (same auth as the pages)."""
    body, content_type = metrics.exposition()
    return Response(body, 200, content_type=content_type)


# -- actions --------------------------------------------------------------------------------
def _back(default: str) -> WerkzeugResponse:
    """Redirect to the form's ``next`` if it is a dashboard page, else to ``default``."""
    target = request.form.get("next") or ""
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or target.startswith(("//", "/\\"))
        or not target.startswith(url_for(".overview"))
    ):
        target = default
    return redirect(target, 303)


def _field(name: str) -> str:
    value = (request.form.get(name) or "").strip()
    if not value:
        abort(Response(f"Missing form field {name!r}.\n", 400, mimetype="text/plain"))
    return value


@blueprint.post("/dead-letters/requeue")
def requeue_dead() -> WerkzeugResponse:
    """Send one dead letter back to its queue."""
    queue, entry = _field("queue"), _field("entry_id")
    moved = data.requeue_dead(_state(), queue, [entry])
    if moved:
        flash(f"Requeued dead letter {entry} to queue {queue!r}.", "ok")
    else:
        flash(f"No dead letter {entry} in queue {queue!r} (already requeued or deleted?).", "error")
    return _back(url_for(".failures"))


@blueprint.post("/dead-letters/delete")
def delete_dead() -> WerkzeugResponse:
    """Delete one dead letter."""
    queue, entry = _field("queue"), _field("entry_id")
    if data.delete_dead(_state(), queue, entry):
        flash(f"Deleted dead letter {entry} of queue {queue!r}.", "ok")
    else:
        flash(f"No dead letter {entry} in queue {queue!r}.", "error")
    return _back(url_for(".failures"))


@blueprint.post("/dead-letters/requeue-all")
def requeue_all_dead() -> WerkzeugResponse:
    """Send every dead letter of a queue back to it."""
    queue = _field("queue")
    moved = data.requeue_all_dead(_state(), queue)
    flash(f"Requeued {moved} dead letter{'s' * (moved != 1)} to queue {queue!r}.", "ok")
    return _back(url_for(".failures"))


@blueprint.post("/dead-letters/purge")
def purge_dead() -> WerkzeugResponse:
    """Delete every dead letter of a queue."""
    queue = _field("queue")
    purged = _state().broker.purge_dead(queue)
    flash(f"Deleted {purged} dead letter{'s' * (purged != 1)} of queue {queue!r}.", "ok")
    return _back(url_for(".failures"))


@blueprint.post("/tasks/retry")
def retry_task() -> WerkzeugResponse:
    """Run a failed task again, its message unchanged: requeue its dead letter or, for a
    task that failed without one, send the message kept with the recent failures. Goes
    back to the form's ``next`` page if given, else to the task's page."""
    task_id = _field("task_id")
    state = _state()
    dead = data.find_dead_letter(
        state, task_id, request.form.get("queue") or None, request.form.get("entry_id") or None
    )
    page = url_for(".task", task_id=task_id)
    if dead is None:
        queue = data.retry_failure(state, task_id)
        if queue is None:
            flash(
                f"Task {task_id} cannot be retried from here: neither a dead letter nor "
                "the recent failures hold its message (its arguments are not known).",
                "error",
            )
        else:
            flash(f"Retrying task {task_id}: its message is back in queue {queue!r}.", "ok")
        return _back(page)
    moved = data.requeue_dead(state, str(dead["queue"]), [str(dead["entry_id"])])
    if moved:
        flash(f"Retrying task {task_id}: its message is back in queue {dead['queue']!r}.", "ok")
    else:
        flash(f"The dead letter of task {task_id} was requeued or deleted meanwhile.", "error")
    return redirect(page, 303)


@blueprint.post("/queues/pause")
def pause_queue() -> WerkzeugResponse:
    """Stop workers fetching from a queue."""
    queue = _field("queue")
    mon = data.monitor(_state())
    if mon is None:
        flash("Pausing a queue needs a Redis broker.", "error")
    else:
        mon.pause([queue])
        flash(f"Paused queue {queue!r}: workers stop fetching from it within seconds.", "ok")
    return _back(url_for(".queues"))


@blueprint.post("/queues/resume")
def resume_queue() -> WerkzeugResponse:
    """Let workers fetch from a queue again."""
    queue = _field("queue")
    mon = data.monitor(_state())
    if mon is None:
        flash("Resuming a queue needs a Redis broker.", "error")
    else:
        mon.resume([queue])
        flash(f"Resumed queue {queue!r}.", "ok")
    return _back(url_for(".queues"))


# -- periodic entries changed at run time (flask_taskq.periodic) ------------------------------
def _json_field(name: str, kind: type) -> Any:
    text = (request.form.get(name) or "").strip()
    if not text:
        return None
    value = json.loads(text)  # ValueError: reported by _periodic_action
    if not isinstance(value, kind):
        raise ValueError(f"{name}: give a JSON {'list' if kind is list else 'object'}")
    return value


def _periodic_action(done: Callable[[], str]) -> WerkzeugResponse:
    """Run a periodic action; its one-line error (bad input, unknown entry) is shown."""
    try:
        flash(done(), "ok")
    except json.JSONDecodeError as exc:
        flash(f"Not valid JSON: {exc}", "error")
    except (TypeError, ValueError) as exc:
        flash(str(exc), "error")
    return _back(url_for(".periodic"))


@blueprint.post("/periodic/add")
def periodic_add() -> WerkzeugResponse:
    """Add a periodic entry (every or cron) from the periodic page's form."""
    state = _state()

    def add() -> str:
        every = (request.form.get("every") or "").strip() or None
        cron = (request.form.get("cron") or "").strip() or None
        entry = state.taskqueue.periodic.add(
            _field("name"),
            _field("task"),
            every=every,
            cron=cron,
            args=_json_field("args", list) or [],
            kwargs=_json_field("kwargs", dict) or {},
            queue=(request.form.get("queue") or "").strip() or None,
            app=state.app,
        )
        return f"Added periodic entry {entry.name!r}: {entry.task} {entry.schedule.describe()}."

    return _periodic_action(add)


def _periodic_simple(action: str, message: str) -> Callable[[], WerkzeugResponse]:
    def view() -> WerkzeugResponse:
        name = _field("name")
        state = _state()

        def run() -> str:
            outcome = getattr(state.taskqueue.periodic, action)(name, app=state.app)
            task_id = getattr(outcome, "id", "")
            return message.format(name=name, task_id=task_id)

        return _periodic_action(run)

    view.__name__ = f"periodic_{action}"
    view.__doc__ = f"{action.capitalize()} a periodic entry (the periodic page's button)."
    return view


for _action, _message in (
    ("pause", "Paused periodic entry {name!r}."),
    ("resume", "Resumed periodic entry {name!r}: it counts from now."),
    ("remove", "Removed periodic entry {name!r}."),
    ("run", "Sent periodic entry {name!r} now: task {task_id}."),
):
    blueprint.add_url_rule(
        f"/periodic/{_action}", view_func=_periodic_simple(_action, _message), methods=["POST"]
    )
