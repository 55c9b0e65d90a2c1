"""``AsyncResult``: values, exceptions, states, waiting, expiry and forgetting, with tasks
run by real workers on the test Redis (SPEC section 2)."""

from __future__ import annotations

import builtins
import json
import sys
import threading
import time
import uuid

import pytest
from flask import Flask

import flask_taskq
from flask_taskq import AsyncResult, TaskError, TaskQueue
from flask_taskq.testing import InThreadWorker
from tests.apps import api
from tests.apps.basic import CustomError, add, fail, noop
from tests.conftest import wait_until


def result_key(task_id: str) -> str:
    return f"taskq:result:{{{task_id}}}"


def done_key(task_id: str) -> str:
    return f"taskq:result:{{{task_id}}}:done"


@pytest.fixture
def worker(start_worker):
    """A real ``flask taskq worker -P solo`` for the basic app."""
    return start_worker("-P", "solo")


@pytest.fixture
def api_app(redis_url):
    return api.create_app({"TASKQ_BROKER_URL": redis_url})


# -- values and exceptions -----------------------------------------------------------------------


def test_get_returns_the_value(app, worker):
    with app.app_context():
        result = add.delay(2, 3)
        assert result.get(timeout=10) == 5
        assert result.result == 5
        assert result.info == 5


def test_async_result_by_id_reads_the_same_result(app, worker):
    with app.app_context():
        task_id = add.delay(20, 22).id
        assert AsyncResult(task_id).get(timeout=10) == 42
        assert app.extensions["taskq"].taskqueue.AsyncResult(task_id).get(timeout=1) == 42


def test_task_exception_is_reraised_with_its_type_and_the_worker_traceback(app, worker):
    with app.app_context():
        result = fail.delay("boom")
        with pytest.raises(CustomError, match="boom") as info:
            result.get(timeout=10)

    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Traceback in the worker" in notes
    assert "raise CustomError(message)" in notes  # the failing line, from the worker
    assert "CustomError: boom" in notes
    assert "CustomError: boom" in result.traceback


def test_get_without_propagate_returns_the_exception(app, worker):
    with app.app_context():
        result = fail.delay("quietly")
        exc = result.get(timeout=10, propagate=False)

    assert isinstance(exc, CustomError)
    assert str(exc) == "quietly"
    assert isinstance(result.result, CustomError)


def test_exception_type_unknown_here_becomes_task_error(app, r):
    assert "nowhere_to_be_found" not in sys.modules
    r.set(
        result_key("t-unknown"),
        json.dumps(
            {
                "status": "FAILURE",
                "task": "remote.job",
                "date_done": time.time(),
                "exc_type": "GoneError",
                "exc_module": "nowhere_to_be_found",
                "exc_message": "it went away",
                "exc_args": ["it went away"],
                "traceback": "Traceback (most recent call last):\n  ...\nGoneError: it went away\n",
            }
        ),
    )

    with app.app_context():
        result = AsyncResult("t-unknown")
        with pytest.raises(TaskError) as info:
            result.get(timeout=5)
        assert result.failed()
        assert isinstance(result.result, TaskError)

    exc = info.value
    assert exc.exc_type == "nowhere_to_be_found.GoneError"
    assert exc.message == "it went away"
    assert "GoneError: it went away" in exc.traceback
    assert "GoneError" in str(exc) and "it went away" in str(exc)
    assert "nowhere_to_be_found" not in sys.modules  # never imported on the result's behalf
    assert flask_taskq.TaskError is TaskError


def test_a_none_result_is_stored_without_its_field_and_reads_as_none(app, worker, r):
    """A ``None`` result leaves ``result`` out, a SUCCESS the task name, and
    ``date_done`` is kept to the millisecond (a smaller Redis allocation); all read as
    before."""
    with app.app_context():
        result = noop.delay()
        assert result.get(timeout=10) is None
        doc = json.loads(r.get(result_key(result.id)))
        assert set(doc) == {"status", "date_done"}
        assert doc["status"] == "SUCCESS"
        assert doc["date_done"] == round(doc["date_done"], 3)
        assert abs(doc["date_done"] - time.time()) < 60
        assert result.successful() and result.result is None and result.info is None
        assert result.date_done == doc["date_done"]


def test_a_success_leaves_out_the_task_name_and_a_failure_keeps_it(app, worker, r):
    """Without ``TASKQ_RESULT_EXTENDED`` (the default, as Celery's ``result_extended``)
    a SUCCESS document has no ``task``; FAILURE documents, rarer and read by the
    dashboard's failures, keep it."""
    with app.app_context():
        ok = add.delay(2, 3)
        bad = fail.delay("named")
        assert ok.get(timeout=10) == 5
        assert isinstance(bad.get(timeout=10, propagate=False), CustomError)
        assert ok.state == "SUCCESS" and ok.result == 5 and ok.successful()
        assert bad.state == "FAILURE" and bad.failed()
        success = json.loads(r.get(result_key(ok.id)))
        failure = json.loads(r.get(result_key(bad.id)))
        assert set(success) == {"status", "date_done", "result"}
        assert ok.date_done == success["date_done"]
        assert failure["status"] == "FAILURE" and failure["task"] == fail.name
        assert not {"args", "kwargs", "queue", "worker", "retries"} & set(failure)
        assert (ok.name, ok.args, ok.kwargs, ok.worker) == (None, None, None, None)
        assert (bad.name, bad.args, bad.queue, bad.retries) == (fail.name, None, None, None)


def test_result_extended_documents_say_what_ran(app, start_worker, r):
    """``TASKQ_RESULT_EXTENDED = True``: final documents carry the task's name,
    arguments, queue, attempt and the worker's name (Celery's ``result_extended``)."""
    start_worker("-P", "solo", "-n", "ext@test", env={"TASKQ_RESULT_EXTENDED": "1"})
    with app.app_context():
        ok = add.delay(2, y=3)
        bad = fail.delay("told")
        assert ok.get(timeout=10) == 5
        assert isinstance(bad.get(timeout=10, propagate=False), CustomError)
        assert ok.successful() and ok.result == 5 and ok.date_done is not None
        # what Celery's AsyncResult says with result_extended
        assert (ok.name, ok.args, ok.kwargs) == (add.name, [2], {"y": 3})
        assert (ok.queue, ok.retries, ok.worker) == ("default", 0, "ext@test")
        assert (bad.name, bad.args, bad.kwargs) == (fail.name, ["told"], {})
    success = json.loads(r.get(result_key(ok.id)))
    failure = json.loads(r.get(result_key(bad.id)))
    run = {"queue": "default", "retries": 0, "worker": "ext@test"}
    assert success == {
        "status": "SUCCESS",
        "task": add.name,
        "args": [2],
        "kwargs": {"y": 3},
        **run,
        "date_done": success["date_done"],
        "result": 5,
    }
    assert failure["status"] == "FAILURE" and failure["exc_type"] == "CustomError"
    assert {k: failure[k] for k in ("task", "args", "kwargs", *run)} == {
        "task": fail.name,
        "args": ["told"],
        "kwargs": {},
        **run,
    }


def test_a_full_document_of_an_earlier_version_reads_the_same(app, r):
    r.set(
        result_key("t-full"),
        json.dumps(
            {
                "status": "SUCCESS",
                "task": "tests.apps.basic.noop",
                "date_done": 1796534344.7541234,
                "result": None,
            }
        ),
    )
    with app.app_context():
        result = AsyncResult("t-full")
        assert result.get(timeout=5) is None
        assert result.successful() and result.date_done == 1796534344.7541234


# -- waiting -------------------------------------------------------------------------------------


def test_get_times_out_with_flask_taskq_timeout_error(app):
    with app.app_context():
        result = add.delay(1, 1)  # no worker runs it

    start = time.monotonic()
    with pytest.raises(flask_taskq.TimeoutError) as info:
        result.get(timeout=0.5)
    elapsed = time.monotonic() - start

    assert isinstance(info.value, builtins.TimeoutError)
    assert result.id in str(info.value)
    assert 0.4 <= elapsed < 10  # waited, and gave up in bounded time
    assert result.state == "PENDING"


def test_get_blocks_without_polling_redis(app, r):
    with app.app_context():
        result = add.delay(1, 1)
    r.config_resetstat()

    with pytest.raises(flask_taskq.TimeoutError):
        result.get(timeout=1.0)

    stats = r.info("commandstats")
    reads = stats.get("cmdstat_get", {}).get("calls", 0)
    assert reads <= 3, f"{reads} GETs while waiting 1 s: get() is polling"


def test_two_threads_waiting_on_one_result_both_wake(app, r, start_worker):
    with app.app_context():
        result = add.delay(4, 5)
    values = []

    def wait():
        values.append(result.get(timeout=30))

    threads = [threading.Thread(target=wait) for _ in range(2)]
    for t in threads:
        t.start()
    wait_until(
        lambda: r.info("clients")["blocked_clients"] >= 2,
        10,
        message="both threads blocked on the result",
    )

    start_worker("-P", "solo")
    for t in threads:
        t.join(30)

    assert values == [9, 9]


# -- states --------------------------------------------------------------------------------------


def test_unknown_task_is_pending(app):
    with app.app_context():
        result = AsyncResult("never-sent")
        assert result.state == "PENDING"
        assert result.status == "PENDING"
        assert result.result is None
        assert not result.ready()
        assert not result.successful()
        assert not result.failed()


def test_states_of_a_successful_task(app, worker):
    with app.app_context():
        result = add.delay(1, 2)
        result.get(timeout=10)

        assert result.state == "SUCCESS"
        assert result.status == "SUCCESS"
        assert result.ready()
        assert result.successful()
        assert not result.failed()
        assert result.traceback is None
        assert result.date_done is not None


def test_states_of_a_failed_task(app, worker):
    with app.app_context():
        result = fail.delay("no")
        result.get(timeout=10, propagate=False)

        assert result.state == "FAILURE"
        assert result.ready()
        assert result.failed()
        assert not result.successful()


# -- storage ---------------------------------------------------------------------------------------


def test_ignore_result_task_leaves_no_result(api_app, r):
    with api_app.app_context():
        ignored = api.quiet.delay("t1")
        kept = api.add.delay(1, 2)
    with InThreadWorker(api_app) as worker:
        worker.drain()

    assert r.lrange("test:quiet", 0, -1) == ["t1"]  # it ran
    assert not r.exists(result_key(ignored.id))
    assert not r.exists(done_key(ignored.id))
    assert ignored.state == "PENDING"
    assert r.exists(result_key(kept.id))  # while a normal task's result is there


def test_results_expire_after_one_day_by_default(app, r, worker):
    with app.app_context():
        result = add.delay(1, 2)
        result.get(timeout=10)

    assert 86400 - 60 < r.ttl(result_key(result.id)) <= 86400


def test_result_expires_setting_sets_the_ttl(redis_url, r):
    app = api.create_app({"TASKQ_BROKER_URL": redis_url, "TASKQ_RESULT_EXPIRES": 120})
    with app.app_context():
        result = api.add.delay(1, 2)
    with InThreadWorker(app) as worker:
        worker.drain()

    assert result.get(timeout=5) == 3
    assert 0 < r.ttl(result_key(result.id)) <= 120
    assert not r.exists(done_key(result.id))  # nobody waited while it was stored


def test_a_no_op_result_takes_at_most_250_bytes_of_redis(redis_url, r):
    """Issue 19: the result of a no-op task with a 33-character name takes at most 250
    bytes (``MEMORY USAGE``: key, value and object overhead), less than the same document
    with its task name (as 0.2 stored it) takes."""
    tq = TaskQueue()
    name = "bench.peers.taskq_app.noop" + "x" * 7
    assert len(name) == 33

    @tq.task(name=name)
    def nothing() -> None:
        pass

    app = Flask("result_memory")
    app.config["TASKQ_BROKER_URL"] = redis_url
    tq.init_app(app)
    with app.app_context():
        result = nothing.delay()
    with InThreadWorker(app) as worker:
        worker.drain()
    with app.app_context():
        assert result.get(timeout=5) is None

    key = result_key(result.id)
    usage = r.memory_usage(key)
    assert usage <= 250
    named = {"status": "SUCCESS", "task": name, **json.loads(r.get(key))}
    other = result_key(str(uuid.uuid4()))  # a key of the same length
    r.set(other, json.dumps(named, separators=(",", ":")), ex=86400)
    assert usage < r.memory_usage(other)


def test_forget_deletes_the_result(app, r, worker):
    with app.app_context():
        result = add.delay(1, 2)
        assert result.get(timeout=10) == 3
        assert r.exists(result_key(result.id))

        result.forget()

        assert not r.exists(result_key(result.id))
        assert not r.exists(done_key(result.id))
        assert result.state == "PENDING"


def test_result_backend_none_disables_results(redis_url, r):
    app = api.create_app({"TASKQ_BROKER_URL": redis_url, "TASKQ_RESULT_BACKEND": None})
    with app.app_context():
        result = api.add.delay(1, 2)  # sending still works
        api.quiet.delay("ran")

    with pytest.raises(RuntimeError, match="disabled"):
        result.get(timeout=1)
    with pytest.raises(RuntimeError, match="disabled"):
        result.state  # noqa: B018

    with InThreadWorker(app) as worker:
        worker.drain()
    assert r.lrange("test:quiet", 0, -1) == ["ran"]
    assert r.keys("taskq:result:*") == []


def test_a_running_task_is_not_ready_until_it_finishes(r, start_worker, api_app):
    start_worker("-P", "solo", app="tests.apps.api:create_app")
    with api_app.app_context():
        result = api.gate.delay("g1")
    wait_until(lambda: r.lrange("test:entered", 0, -1) == ["g1"], 10, message="task started")

    assert not result.ready()
    with pytest.raises(flask_taskq.TimeoutError):
        result.get(timeout=0.2)

    r.rpush("test:gate:g1", "go")
    assert result.get(timeout=10) == "g1"
    assert result.ready()
    assert result.successful()
