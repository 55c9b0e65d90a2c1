"""Issue 17 item 7: the Celery worker flags (``--logfile``/``-f``, globs in ``-Q``,
``--autoscale MAX,MIN``, ``--max-memory-per-child``) on real ``flask taskq worker``
processes and a real redis-server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask

from flask_taskq.worker.autoscale import Autoscaler
from flask_taskq.worker.queues import QueueSelection
from flask_taskq.worker.worker import expand_logfile
from tests.conftest import ROOT, wait_until

APP = "tests.apps.flags_app:create_app"


@pytest.fixture
def flags_app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    from tests.apps.flags_app import create_app

    return create_app()


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (Linux ``/proc``)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):
            found.add(int(entry))
    return found


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


# -- --logfile -----------------------------------------------------------------------------
def test_logfile_gets_the_ready_line_and_a_tasks_log(start_worker, flags_app, tmp_path):
    from tests.apps.flags_app import send_mail

    log = tmp_path / "worker.log"
    log.write_text("kept\n")  # appended to, not truncated
    worker = start_worker("-P", "solo", "-Q", "mail.send", "-f", str(log), app=APP, ready=0)
    wait_until(lambda: " ready" in read(log), message="the ready line in the log file")
    with flags_app.app_context():
        result = send_mail.delay("ann")
        result.get(timeout=15)
    wait_until(lambda: "sending mail to ann" in read(log), message="the task's log line")
    text = read(log)
    assert text.startswith("kept\n")
    line = next(ln for ln in text.splitlines() if "sending mail to ann" in ln)
    assert f" tests.apps.flags_app.send_mail[{result.id}] " in line
    assert line.startswith("[") and "WARNING/" in line
    assert " ready" not in worker.log  # the log went to the file, not to stderr


def test_logfile_fields_give_each_prefork_child_its_file(start_worker, tmp_path):
    """``-n w1@%h --logfile %n%I.log``: the supervisor logs to ``w1.log``, child 1 to
    ``w1-1.log``, child 2 to ``w1-2.log``, as with Celery."""
    template = str(tmp_path / "%n%I.log")
    start_worker("-P", "prefork", "-c", "2", "-n", "w1@%h", "--logfile", template, app=APP, ready=0)
    for child in ("w1-1.log", "w1-2.log"):
        wait_until(lambda c=child: " ready" in read(tmp_path / c), message=f"ready in {child}")
    assert (tmp_path / "w1.log").exists()
    assert " ready" not in read(tmp_path / "w1.log")


def test_logfile_fields_expand_as_in_celery():
    assert expand_logfile("%n%I.log", "w1@%h", 2, hostname="web1.example.org") == "w1-2.log"
    assert expand_logfile("%h-%d-%p.log", "w1@%h", hostname="web1.example.org") == (
        "web1.example.org-example.org-w1@web1.example.org.log"
    )
    # without -n (or without an @ in it), %n and %h are the host's, as for -n itself
    assert expand_logfile("%n%I.log", None, 0, hostname="web1.example.org") == "web1.log"
    assert expand_logfile("%n-%i.log", "solo", 3, hostname="web1.x") == "web1-3.log"
    with pytest.raises(ValueError, match="unknown field %q in log file"):
        expand_logfile("%q.log", None)


# -- -Q globs ------------------------------------------------------------------------------
def test_queue_selection_keeps_plain_names_and_adds_matches():
    selection = QueueSelection(["reports", "mail.*"])
    known = ["default", "mail.send", "reports", "mail.bulk", "mailbox"]
    assert selection.resolve(known) == ["reports", "mail.send", "mail.bulk"]
    assert QueueSelection(["x.*"]).resolve(known) == []


def test_glob_consumes_matching_queues_only(start_worker, flags_app, r):
    from tests.apps.flags_app import bulk_mail, elsewhere, pid, send_mail

    worker = start_worker("-P", "solo", "-Q", "mail.*", app=APP)
    assert "queues=mail.send,mail.bulk (and new queues matching mail.*)" in worker.log
    with flags_app.app_context():
        other = elsewhere.delay()
        mail = send_mail.delay("bob")
        bulk = bulk_mail.delay()
        assert mail.get(timeout=15) == bulk.get(timeout=15) == worker.proc.pid
        # a queue that becomes known later (another worker serves it) is picked up
        flags_app.extensions["taskq"].broker.ensure_groups(["mail.late"])
        late = pid.apply_async(queue="mail.late")
        assert late.get(timeout=30) == worker.proc.pid
        assert other.state == "PENDING"
    assert flags_app.extensions["taskq"].broker.queue_length("other") == 1
    assert "Consuming new queue(s) matching -Q: mail.late" in worker.log


# -- --autoscale ---------------------------------------------------------------------------
def test_autoscale_grows_under_a_backlog_and_shrinks_when_idle(start_worker, flags_app):
    from tests.apps.flags_app import slow

    worker = start_worker("-P", "prefork", "--autoscale", "3,1", app=APP, ready=1)
    supervisor = worker.proc.pid
    assert "concurrency=1..3 (autoscale)" in worker.log
    assert len(children_of(supervisor)) == 1
    with flags_app.app_context():
        results = [slow.delay(1.5) for _ in range(6)]
        wait_until(lambda: len(children_of(supervisor)) == 3, timeout=30, message="three children")
        pids = {res.get(timeout=60) for res in results}
    assert len(pids) > 1
    assert "Autoscale: 1 -> 3 children" in worker.log
    wait_until(lambda: len(children_of(supervisor)) == 1, timeout=60, message="back to one child")
    assert "stopping idle slot" in worker.log
    with flags_app.app_context():  # the one left still runs tasks
        assert slow.delay(0).get(timeout=15) in children_of(supervisor)


def test_autoscale_policy():
    scaler = Autoscaler(4, 1, now=0.0)
    assert scaler.decide(1.0, live=1, busy=1, waiting=10) == 3  # up to MAX at once
    assert scaler.decide(2.0, live=4, busy=4, waiting=10) == 0  # at MAX
    assert scaler.decide(3.0, live=2, busy=1, waiting=5) == 0  # an idle child takes them
    assert scaler.decide(12.0, live=4, busy=0, waiting=0) == 0  # 9 s after demand
    assert scaler.decide(13.0, live=4, busy=0, waiting=0) == -1  # 10 s: one per interval
    assert scaler.decide(14.0, live=3, busy=1, waiting=0) == -1
    assert scaler.decide(14.5, live=2, busy=1, waiting=None) == 0  # Redis did not answer
    assert scaler.decide(15.0, live=1, busy=0, waiting=0) == 0  # at MIN
    assert Autoscaler(3, 0, now=0.0).decide(1.0, live=0, busy=0, waiting=1) == 1


# -- --max-memory-per-child ----------------------------------------------------------------
def test_max_memory_per_child_replaces_the_child_after_the_task(start_worker, flags_app):
    from tests.apps.flags_app import hog, pid

    limit_kib = 250 * 1024
    worker = start_worker(
        "-P", "prefork", "-c", "1", "--max-memory-per-child", str(limit_kib), app=APP
    )
    with flags_app.app_context():
        first = pid.delay().get(timeout=15)
        assert pid.delay().get(timeout=15) == first  # under the limit: the same child
        assert hog.delay(300).get(timeout=30) == first  # the task itself succeeds
        worker.wait_for_log("more than --max-memory-per-child")
        assert pid.delay().get(timeout=30) != first  # a new child
    assert f"{limit_kib} KiB: replacing it after task" in worker.log
    assert "exited with" not in worker.log  # a replacement, not a crash


# -- the rest of a Celery command line ---------------------------------------------------
def test_celery_noop_flags_and_prefork_only_flags_on_solo(start_worker, flags_app):
    """``-B``, ``-E`` and ``--without-*`` are accepted; ``--autoscale`` and
    ``--max-memory-per-child`` on a solo pool are ignored with a warning each."""
    from tests.apps.flags_app import pid

    worker = start_worker(
        "-P",
        "solo",
        "-B",
        "-E",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--autoscale",
        "3,1",
        "--max-memory-per-child",
        "1000",
        "-Q",
        "default",
        app=APP,
    )
    with flags_app.app_context():
        assert pid.delay().get(timeout=15) == worker.proc.pid
    assert "taskq beat " in worker.log
    assert "--autoscale applies to the prefork pool only: ignored" in worker.log
    assert "--max-memory-per-child applies to the prefork pool only: ignored" in worker.log


def test_autoscale_with_max_only_means_min_zero(start_worker, flags_app):
    from tests.apps.flags_app import pid

    worker = start_worker("--autoscale", "2", app=APP, ready=0)
    worker.wait_for_log("concurrency=0..2 (autoscale)")
    with flags_app.app_context():  # a child is started for the message
        assert pid.delay().get(timeout=30) != worker.proc.pid
    worker.wait_for_log("Autoscale: 0 -> 1 children")


# -- bad values ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--autoscale", "3,5"], "'3,5': give MAX,MIN with MAX >= 1 and 0 <= MIN <= MAX"),
        (["--autoscale", "three,1"], "'three,1': give MAX,MIN, two whole numbers"),
        (["--autoscale", "0"], "'0': give MAX,MIN with MAX >= 1"),
        (["--max-memory-per-child", "0"], "0 is not in the range x>=1"),
        (["--max-memory-per-child", "1G"], "'1G' is not a valid integer"),
        (["--logfile", "/no/such/dir/w.log"], "cannot open log file /no/such/dir/w.log"),
        (["--logfile", "/no/such/dir/%I.log"], "cannot open log file /no/such/dir"),
        (["--logfile", "%q.log"], "unknown field %q in log file '%q.log'"),
        (["-Q", "nothing.*"], "-Q nothing.* matches no known queue"),
    ],
)
def test_bad_values_are_one_line_errors(redis_url, args, message):
    env = {**os.environ, "TASKQ_BROKER_URL": redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "worker", "-P", "solo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_hostname_fields_in_logfile_use_this_host(tmp_path, start_worker):
    """Without ``-n``, ``%n`` is the host name up to its first dot (as ``-n`` expands)."""
    start_worker("-P", "solo", "-f", str(tmp_path / "%n.log"), app=APP, ready=0)
    log = tmp_path / f"{socket.gethostname().partition('.')[0]}.log"
    wait_until(lambda: " ready" in read(log), message=f"ready in {log.name}")
