"""An app factory whose tasks are the shared tasks of ``tests.apps.shared_tasks``
(``flask --app tests.apps.shared_app:create_app``).

Every app gets a ``TaskQueue`` of its own, created after the tasks were defined. Config
comes from ``$TASKQ_BROKER_URL``, then ``FLASK_*`` variables (``FLASK_TASKQ_KEY_PREFIX=a``,
``FLASK_LABEL=a``, values parsed as JSON), then the ``config`` argument.

:func:`isolated_shared_tasks` keeps tests from leaving shared tasks behind in the
process-wide registry, where every ``TaskQueue`` created later by other tests would find
them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from flask import Flask

from flask_taskq import SharedTask, TaskQueue, shared
from flask_taskq.state import taskqueues


def create_app(config: dict[str, Any] | None = None) -> Flask:
    from tests.apps import shared_tasks  # noqa: F401 - defines the tasks

    app = Flask(__name__)
    app.config["TASKQ_BROKER_URL"] = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config.from_prefixed_env()
    app.config.update(config or {})
    TaskQueue(app)
    return app


@contextmanager
def isolated_shared_tasks(*modules: str) -> Iterator[list[ModuleType]]:
    """Import ``modules`` and make sure their shared tasks are defined; on exit, forget
    every shared task defined meanwhile, in the registry and in the TaskQueues that
    existed before."""
    saved = dict(shared._definitions)
    before = {taskqueue: dict(taskqueue.tasks) for taskqueue in list(taskqueues)}
    loaded = [importlib.import_module(name) for name in modules]
    for module in loaded:
        for task in vars(module).values():
            if isinstance(task, SharedTask) and shared._definitions.get(task.name) is not task:
                shared._define(task)
    try:
        yield loaded
    finally:
        shared._definitions.clear()
        shared._definitions.update(saved)
        for taskqueue, tasks in before.items():
            taskqueue.tasks.clear()
            taskqueue.tasks.update(tasks)
