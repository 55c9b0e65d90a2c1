"""``flask taskq dead-letter list|show|requeue|purge``: look at dead letters and recover them.

A dead letter is named by its *entry id*, the id of its entry in the queue's dead-letter
stream (``taskq:{<queue>}:dead``), which ``list`` prints first. ``show`` and ``requeue``
also accept the *task id* of the message instead. See ``docs/dead-letters.rst``.

A message refused before it was verified (a bad signature, an undecodable envelope) is
recorded with ``?`` for task and id; these commands show the name and id its body claims,
marked ``(unverified)`` (``unverified_task``/``unverified_task_id`` with ``--json``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ..exceptions import DecodeError
from ..message import Message
from ..signing import peek
from .common import app_state, check_broker, queue_names, taskq_cli

if TYPE_CHECKING:
    from ..state import AppState

#: Characters of a reason shown in the ``list`` table (``--json`` and ``show`` give all).
REASON_WIDTH = 50
#: Dead letters read per round trip when a command goes through a whole store.
PAGE = 500
#: Bytes of an undecodable body that ``show`` prints.
BODY_PREVIEW = 200

ID_HELP = "ID is a dead-letter entry id (the first column of `list`) or the task id of the message."

LIST_COLUMNS = {
    "entry_id": "ENTRY ID",
    "queue": "QUEUE",
    "task": "TASK",
    "task_id": "TASK ID",
    "reason": "REASON",
    "time": "TIME",
}

#: Appended to a task name or id read from a body that was not verified.
UNVERIFIED = " (unverified)"

SHOW_LABELS = {
    "entry_id": "Entry ID",
    "queue": "Queue",
    "task": "Task",
    "task_id": "Task ID",
    "reason": "Reason",
    "time": "Time",
    "worker": "Worker",
    "priority": "Priority",
    "retries": "Retries",
    "eta": "ETA",
    "expires": "Expires",
    "sent": "Sent",
    "args": "Args",
    "kwargs": "Kwargs",
    "headers": "Headers",
    "decode_error": "Decode error",
    "body": "Body",
    "traceback": "Traceback",
}

queues_option = click.option(
    "-Q",
    "--queues",
    help="Comma-separated queues (default: the app's queues and every queue that has "
    "dead letters).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of text."
)


@taskq_cli.group("dead-letter")
def dead_letter_group() -> None:
    """Messages a worker could not run: list, show, requeue or purge them.

    Undecodable messages, unknown task names, messages delivered more than
    TASKQ_MAX_DELIVERIES times, rejected tasks and tasks that exhausted their retries
    land there with the reason.
    """


# -- helpers -------------------------------------------------------------------------------
def iso_time(value: object) -> str | None:
    """A unix time (number or text) as ISO-8601 UTC with milliseconds, e.g.
    ``2024-05-01T12:00:00.250Z``; None when there is none."""
    if value is None or value == "":
        return None
    try:
        when = datetime.fromtimestamp(float(value), timezone.utc)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return str(value)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _entry_order(row: dict[str, object]) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(row["entry_id"]).split("-"))
    except ValueError:
        return (0,)


def _dead_queues(state: AppState, option: str | None) -> list[str]:
    """The queues of ``-Q``, or the app's queues plus every queue holding dead letters."""
    if option:
        names = queue_names(state, option)
        if not names:
            raise click.BadParameter("name at least one queue", param_hint="'-Q'")
        return names
    names = queue_names(state, None)
    names += [q for q in state.broker.dead_letter_queues() if q not in names]
    return names


def _scan(state: AppState, queue: str) -> Iterator[dict[str, object]]:
    """Every dead letter of ``queue``, newest first, a page at a time."""
    before = None
    while True:
        rows = state.broker.dead_letters(queue, PAGE, before=before)
        for row in rows:
            row["queue"] = queue
            yield row
        if len(rows) < PAGE:
            return
        before = str(rows[-1]["entry_id"])


def _find(state: AppState, queues: list[str], ident: str) -> tuple[str, list[dict[str, object]]]:
    """The dead letters ``ident`` names: ``("entry", rows)`` when it is an entry id,
    ``("task", rows)`` (newest first) when it is a task id."""
    rows = []
    for queue in queues:
        row = state.broker.dead_letter_get(queue, ident)
        if row is not None:
            row["queue"] = queue
            rows.append(row)
    if rows:
        return "entry", rows
    rows = [
        row
        for queue in queues
        for row in _scan(state, queue)
        if row["id"] == ident or (_claimed(row) or ("", ""))[1] == ident
    ]
    rows.sort(key=_entry_order, reverse=True)
    return "task", rows


def _find_one(
    state: AppState, queues: list[str], ident: str, several_ok: bool
) -> dict[str, object]:
    kind, rows = _find(state, queues, ident)
    if not rows:
        raise click.ClickException(
            f"no dead letter with entry id or task id {ident!r} in queue(s) {', '.join(queues)}"
        )
    if len(rows) == 1:
        return rows[0]
    if kind == "entry":
        raise click.ClickException(
            f"entry id {ident!r} is in the dead letters of queues "
            f"{', '.join(str(r['queue']) for r in rows)}: choose one with -Q"
        )
    where = ", ".join(f"{r['entry_id']} ({r['queue']})" for r in rows)
    if not several_ok:
        raise click.ClickException(
            f"task id {ident!r} has {len(rows)} dead letters ({where}): "
            "give the entry id of the one to requeue"
        )
    click.echo(
        f"Task id {ident!r} has {len(rows)} dead letters ({where}); showing the newest.", err=True
    )
    return rows[0]


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _claimed(row: dict[str, object]) -> tuple[str, str] | None:
    """The task name and id the body of a dead letter recorded as ``?`` claims
    (unverified), or None."""
    if row.get("task") not in ("?", "", None) and row.get("id") not in ("?", "", None):
        return None
    body = row.get("body")
    return peek(body) if isinstance(body, bytes) else None


def _identity(row: dict[str, object]) -> dict[str, object]:
    """``task``/``task_id`` as recorded, plus ``unverified_task``/``unverified_task_id``
    (None unless the record says ``?`` and the body claims a name and id)."""
    claimed = _claimed(row)
    return {
        "task": row["task"],
        "task_id": row["id"],
        "unverified_task": claimed[0] if claimed else None,
        "unverified_task_id": claimed[1] if claimed else None,
    }


def _list_row(row: dict[str, object]) -> dict[str, object]:
    return {
        "entry_id": row["entry_id"],
        "queue": row["queue"],
        **_identity(row),
        "reason": row["reason"],
        "time": iso_time(row["time"]),
    }


def _shown(row: dict[str, object], key: str) -> str:
    """``task`` or ``task_id`` of a list/detail row for text output, with an unverified
    claim marked as such."""
    claimed = row.get(f"unverified_{key}")
    return f"{claimed}{UNVERIFIED}" if claimed else _text(row[key] or "")


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def _detail(state: AppState, row: dict[str, object]) -> dict[str, Any]:
    """Everything about one dead letter, with the decoded message when it decodes."""
    body = row.get("body") or b""
    assert isinstance(body, bytes)
    out: dict[str, Any] = {
        "entry_id": row["entry_id"],
        "queue": row["queue"],
        **_identity(row),
        "reason": row["reason"],
        "time": iso_time(row["time"]),
        "worker": row["worker"],
    }
    try:
        message = Message.from_bytes(body, state.serializer)
    except DecodeError as exc:
        out.update(
            priority=None,
            retries=None,
            eta=None,
            expires=None,
            sent=None,
            args=None,
            kwargs=None,
            headers=None,
            decode_error=str(exc),
        )
    else:
        out.update(
            priority=message.priority,
            retries=message.retries,
            eta=iso_time(message.eta),
            expires=iso_time(message.expires),
            sent=iso_time(message.sent or None),
            args=list(message.args),
            kwargs=message.kwargs,
            headers=message.headers,
            decode_error=None,
        )
    out["body"] = body
    out["traceback"] = row["traceback"]
    return out


def _dumps(value: object, **kw: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False, **kw)


# -- commands ------------------------------------------------------------------------------
@dead_letter_group.command("list")
@queues_option
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show the newest N dead letters.",
)
@json_option
def list_command(queues: str | None, limit: int, as_json: bool) -> None:
    """List dead letters, newest first.

    One row per dead letter: entry id, queue, task, task id, reason (shortened; --json
    gives it whole) and time (ISO-8601, UTC). A task and id read from a message that was
    not verified (e.g. a bad signature) are marked (unverified)."""
    state = app_state()
    check_broker(state)
    names = _dead_queues(state, queues)
    rows: list[dict[str, object]] = []
    for queue in names:
        for row in state.broker.dead_letters(queue, limit):
            row["queue"] = queue
            rows.append(row)
    rows.sort(key=_entry_order, reverse=True)
    table = [_list_row(row) for row in rows[:limit]]
    if as_json:
        click.echo(_dumps(table, indent=2))
        return
    if not table:
        click.echo("No dead letters.")
        return
    cells = [
        [
            _short(_text(r[k] or ""), REASON_WIDTH)
            if k == "reason"
            else _shown(r, k)
            if k in ("task", "task_id")
            else _text(r[k] or "")
            for k in LIST_COLUMNS
        ]
        for r in table
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(LIST_COLUMNS.values())]
    for line in [list(LIST_COLUMNS.values()), *cells]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    total = sum(state.broker.dead_letter_count(q) for q in names)
    if total > len(table):
        click.echo(
            f"(the newest {len(table)} of {total} dead letters; see more with --limit)", err=True
        )


@dead_letter_group.command("show", epilog=ID_HELP)
@click.argument("ident", metavar="ID")
@queues_option
@json_option
def show_command(ident: str, queues: str | None, as_json: bool) -> None:
    """Show one dead letter in full.

    Reason, time, worker, traceback and the message's arguments and options when it
    can be decoded (otherwise its raw body). With --json the body is base64."""
    state = app_state()
    check_broker(state)
    detail = _detail(state, _find_one(state, _dead_queues(state, queues), ident, several_ok=True))
    body: bytes = detail["body"]
    if as_json:
        detail["body"] = base64.b64encode(body).decode()
        click.echo(_dumps(detail, indent=2))
        return
    decoded = detail["decode_error"] is None
    width = max(len(label) for label in SHOW_LABELS.values()) + 2
    for key, label in SHOW_LABELS.items():
        value = detail[key]
        if key == "traceback":
            continue
        if key == "body":
            if decoded:
                continue
            value = repr(body[:BODY_PREVIEW]) + (
                f" ... ({len(body)} bytes)" if len(body) > BODY_PREVIEW else ""
            )
        elif key in ("task", "task_id"):
            value = _shown(detail, key)
        elif value is None or (key in ("eta", "expires", "headers") and not value):
            continue
        elif key in ("args", "kwargs", "headers"):
            value = _dumps(value)
        click.echo(f"{label + ':':<{width}}{value}")
    traceback = str(detail["traceback"]).rstrip()
    if traceback:
        click.echo("Traceback:")
        for line in traceback.splitlines():
            click.echo(f"  {line}")


@dead_letter_group.command("requeue", epilog=ID_HELP)
@click.argument("idents", metavar="[ID]...", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter of the queues.")
@queues_option
def requeue_command(idents: tuple[str, ...], everything: bool, queues: str | None) -> None:
    """Put dead letters back in their queue.

    Each message goes back as it was (same task id, arguments and retry count) at its
    priority, as a new message whose delivery count starts again from one. The result
    stored when it died is forgotten, so its state is PENDING until it runs again."""
    if bool(idents) == everything:
        raise click.UsageError("give the IDs of dead letters to requeue, or --all (not both)")
    state = app_state()
    check_broker(state)
    names = _dead_queues(state, queues)
    targets: dict[str, list[str]] = {}
    if everything:
        for queue in names:  # a snapshot: letters that die again meanwhile stay dead
            rows = list(_scan(state, queue))
            ids = [str(row["entry_id"]) for row in rows]
            if ids:
                targets[queue] = ids
        if not targets:
            click.echo("No dead letters.")
            return
    else:
        for ident in idents:
            row = _find_one(state, names, ident, several_ok=False)
            ids = targets.setdefault(str(row["queue"]), [])
            if row["entry_id"] not in ids:
                ids.append(str(row["entry_id"]))
    wanted = sum(len(ids) for ids in targets.values())
    moved = 0
    for queue, ids in targets.items():  # the old FAILURE is forgotten: get() waits anew
        moved += state.requeue_dead(queue, ids)
    line = f"Requeued {moved} dead letter(s) to {', '.join(targets)}."
    if moved < wanted:
        line += f" {wanted - moved} left the store meanwhile."
    click.echo(line)


@dead_letter_group.command("purge")
@queues_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(queues: str | None, yes: bool) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    state = app_state()
    check_broker(state)
    counts = {q: state.broker.dead_letter_count(q) for q in _dead_queues(state, queues)}
    holding = [q for q, n in counts.items() if n]
    if not holding:
        click.echo("No dead letters.")
        return
    if not yes:
        click.confirm(
            f"Delete {sum(counts.values())} dead letter(s) of {', '.join(holding)}?", abort=True
        )
    purged = sum(state.broker.purge_dead(q) for q in holding)
    click.echo(f"Purged {purged} dead letter(s) from {', '.join(holding)}.")
