"""Issue 17, tasks as a Celery user calls them: ``task.AsyncResult(id)``, direct calls
in an app context, ``task.run`` of a bound task (and ``mock.patch`` of it), and ``async
def`` refused at definition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from flask import Flask, current_app

from flask_taskq import AsyncResult, SharedTask, TaskQueue, shared_task
from tests.apps.shared_app import isolated_shared_tasks

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def no_shared_tasks_left():
    with isolated_shared_tasks():
        yield


def make_app(tq: TaskQueue, label: str = "one", **config) -> Flask:
    app = Flask(label)
    app.config.update(TASKQ_ALWAYS_EAGER=True, LABEL=label, **config)
    tq.init_app(app)
    return app


def test_task_async_result_reads_the_result_of_its_id():
    """Item 1."""
    tq = TaskQueue()

    @tq.task
    def add(x, y):
        return x + y

    app = make_app(tq)
    with app.app_context():
        task_id = add.delay(2, 3).id
    handle = add.AsyncResult(task_id)  # outside the context: the single bound app
    assert isinstance(handle, AsyncResult)
    assert (handle.id, handle.state, handle.get(timeout=1)) == (task_id, "SUCCESS", 5)
    with app.app_context():
        assert add.AsyncResult("unknown").state == "PENDING"


def test_shared_task_async_result_uses_the_current_app():
    """Item 1, shared tasks."""

    @shared_task(name="mig.double")
    def double(x):
        return 2 * x

    app = make_app(TaskQueue())
    with app.app_context():
        task_id = double.delay(21).id
        assert double.AsyncResult(task_id).get(timeout=1) == 42


def test_a_direct_call_pushes_the_context_of_the_only_bound_app():
    """Item 2: outside an app context, the task runs in one of the single bound app."""
    tq = TaskQueue()

    @tq.task
    def label():
        return current_app.config["LABEL"]

    make_app(tq, "only")
    assert label() == "only"


SHARED_ONLY_APP = """
from flask import Flask, current_app
from flask_taskq import TaskQueue, shared_task

@shared_task(name="mig.shared_label", bind=True)
def shared_label(self):
    return (self.name, current_app.config["LABEL"])

app = Flask("only")
app.config.update(TASKQ_ALWAYS_EAGER=True, LABEL="only")
TaskQueue(app)
print(shared_label())
"""


def test_a_direct_call_of_a_shared_task_pushes_the_context_of_the_only_app():
    """Item 2, shared tasks: the one app bound to any TaskQueue. Run in a fresh
    interpreter, where no app of another test is still bound."""
    out = subprocess.run(
        [sys.executable, "-c", SHARED_ONLY_APP],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "('mig.shared_label', 'only')"


def test_a_direct_call_inside_a_context_uses_that_context():
    """Item 2: an existing app context (even of another app) is used as it is."""
    tq = TaskQueue()

    @tq.task
    def label():
        return current_app.config["LABEL"]

    make_app(tq, "bound")
    other = Flask("other")
    other.config["LABEL"] = "other"
    with other.app_context():
        assert label() == "other"


def test_a_direct_call_with_several_apps_bound_pushes_no_context():
    """Item 2: no app is implied when two are bound; the function runs as it is."""
    tq = TaskQueue()

    @tq.task
    def label():
        return current_app.config["LABEL"]

    first, second = make_app(tq, "first"), make_app(tq, "second")
    with pytest.raises(RuntimeError, match="outside of application context"):
        label()
    assert first and second


def test_run_of_a_bound_task_passes_the_task_as_self():
    """Item 3: ``task.run(...)`` as in Celery, for ``@tq.task`` and ``@shared_task``."""
    tq = TaskQueue()

    @tq.task(bind=True)
    def whoami(self, suffix):
        return f"{self.name}{suffix}"

    @shared_task(bind=True, name="mig.shared_whoami")
    def shared_whoami(self, suffix):
        return f"{self.name}{suffix}"

    assert whoami.run("!") == f"{whoami.name}!"
    assert shared_whoami.run("?") == "mig.shared_whoami?"
    assert tq.tasks["mig.shared_whoami"].run("?") == "mig.shared_whoami?"


def test_mock_patch_of_run_replaces_the_body_for_direct_calls_and_eager_runs():
    """Item 3: ``mock.patch("module.task.run")``; the mock gets the arguments without
    ``self``, as in Celery, and the task's own body is back after the patch."""
    tq = TaskQueue()

    @tq.task(bind=True)
    def bound(self, x):
        return ("real", x)

    @shared_task(bind=True, name="mig.shared_bound")
    def shared_bound(self, x):
        return ("real shared", x)

    app = make_app(tq)
    with (
        mock.patch.object(bound, "run", return_value="mocked") as run,
        mock.patch.object(shared_bound, "run", return_value="mocked shared") as srun,
    ):
        assert bound(1) == "mocked"
        with app.app_context():
            assert bound.delay(2).get(timeout=1) == "mocked"
            assert shared_bound.delay(3).get(timeout=1) == "mocked shared"
        assert shared_bound(4) == "mocked shared"
    assert run.call_args_list == [mock.call(1), mock.call(2)]
    assert srun.call_args_list == [mock.call(3), mock.call(4)]
    assert bound(5) == ("real", 5)
    with app.app_context():
        assert bound.delay(6).get(timeout=1) == ["real", 6]
        assert shared_bound.delay(7).get(timeout=1) == ["real shared", 7]
    assert isinstance(shared_bound, SharedTask)


def test_mock_patch_by_module_path():
    """Item 3: the usual spelling, ``mock.patch("package.module.task.run")``."""
    from tests.apps import migration_tasks

    with mock.patch("tests.apps.migration_tasks.long_task.run", return_value={"x": 1}):
        assert migration_tasks.long_task(3) == {"x": 1}
    assert migration_tasks.long_task.run.__self__ is migration_tasks.long_task


def test_async_def_is_a_task_and_an_async_generator_is_refused():
    """Item 9, then issue 20 item 1: ``async def`` functions are tasks (docs/async.rst);
    an async generator is refused in one line, at definition time."""
    tq = TaskQueue()

    async def fetch(url):
        return url

    async def stream():
        yield 1

    assert tq.task(fetch).is_async
    assert tq.task(name="other.fetch")(fetch).is_async
    with pytest.raises(TypeError, match=r"^task '.*stream' is an async generator"):
        tq.task(bind=True)(stream)
    with pytest.raises(TypeError, match="async generator"):
        shared_task(stream)
    assert not any(name.endswith("stream") for name in tq.tasks)
