"""``self.update_state(state, meta)`` of bound tasks (SPEC section 2): while a task is in a
custom state such as PROGRESS, ``AsyncResult.state`` is that state and ``.result`` /
``.info`` hold the meta it reported; the final result replaces it."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask

from flask_taskq import AsyncResult, TaskQueue
from tests.apps.shared_app import create_app, isolated_shared_tasks
from tests.conftest import wait_until

APP = "tests.apps.shared_app:create_app"
NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture(autouse=True)
def tasks():
    with isolated_shared_tasks("tests.apps.shared_tasks") as [module]:
        yield module


@pytest.fixture
def app(tasks, redis_url: str) -> Flask:
    # Depends on ``tasks``: pytest-flask's autouse fixtures build ``app`` first otherwise.
    return create_app({"TASKQ_BROKER_URL": redis_url})


@pytest.fixture
def eager():
    """A TaskQueue and its eager app (no Redis involved)."""
    tq = TaskQueue()
    app = Flask("eager")
    app.config.update(TASKQ_BROKER_URL=NO_REDIS, TASKQ_ALWAYS_EAGER=True)
    tq.init_app(app)
    with app.app_context():
        yield tq


def progress_of(result: AsyncResult, step: int, total: int) -> bool:
    return result.state == "PROGRESS" and result.info == {"current": step, "total": total}


@pytest.mark.parametrize(
    "pool", [["-P", "solo"], ["-P", "prefork", "-c", "1"], ["-P", "threads", "-c", "2"]]
)
def test_progress_is_visible_while_the_task_runs(tasks, app, r, start_worker, pool):
    start_worker(*pool, app=APP)
    gate = f"test:gate:{uuid.uuid4()}"

    with app.app_context():
        result = tasks.progress.delay(3, gate)
        for step in (1, 2, 3):
            wait_until(
                lambda step=step: progress_of(result, step, 3),
                timeout=20,
                message=f"PROGRESS {step}/3",
            )
            assert result.result == {"current": step, "total": 3}
            assert not result.ready() and not result.successful()
            r.rpush(gate, "go")

        assert result.get(timeout=20) == {"current": 3, "total": 3}
        assert result.state == "SUCCESS"


def test_a_task_that_keeps_no_result_reports_no_state(tasks, app, r, start_worker):
    start_worker("-P", "solo", app=APP)

    with app.app_context():
        result = tasks.quiet_progress.delay("quiet")
        wait_until(
            lambda: r.lrange("test:quiet", 0, -1) == ["quiet"],
            timeout=20,
            message="quiet_progress to run",
        )
        assert result.state == "PENDING"
    assert r.keys("taskq:result:*") == []


def test_eager_tasks_report_into_the_eager_results(eager):
    @eager.task(bind=True)
    def steps(self):
        self.update_state(state="PROGRESS", meta={"current": 1, "total": 2})
        seen = AsyncResult(self.request.id)
        return [seen.state, seen.info, seen.ready()]

    result = steps.delay()

    assert result.get() == ["PROGRESS", {"current": 1, "total": 2}, False]
    assert result.state == "SUCCESS"


def test_state_and_meta_positionally_and_for_another_task_id(eager):
    @eager.task(bind=True)
    def checkpoint(self, other):
        self.update_state("CHECKPOINT", [1, 2], task_id=other)

    checkpoint.delay("other-task")

    other = AsyncResult("other-task")
    assert (other.state, other.result, other.ready()) == ("CHECKPOINT", [1, 2], False)


def test_meta_the_serializer_cannot_encode_fails_the_task(eager):
    @eager.task(bind=True)
    def odd(self):
        self.update_state(state="PROGRESS", meta={"when": object()})

    result = odd.delay()

    assert result.state == "FAILURE"
    with pytest.raises(TypeError, match=r"meta of task '.*odd' cannot be encoded by the json"):
        result.get()


def test_calling_a_task_directly_reports_nothing(eager):
    @eager.task(bind=True)
    def direct(self):
        self.update_state(state="PROGRESS", meta={"current": 1})
        return "done"

    assert direct() == "done"
    assert AsyncResult("").state == "PENDING"
