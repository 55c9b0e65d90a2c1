"""``shared_task``: tasks defined without a ``TaskQueue``, for reusable modules and
blueprints (as Celery's ``shared_task``).

A module of shared tasks imports nothing but ``shared_task``. Each definition is kept in
a process-wide registry, and becomes a :class:`~flask_taskq.Task` in every ``TaskQueue``
of the process: those that exist when it is defined, and those created later (an app
factory called after the import). The worker therefore finds it by name in its app's
``TaskQueue`` like any ``@tq.task``. What ``shared_task`` returns sends through the
``TaskQueue`` of the current app.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

from .state import resolve_state, taskqueues
from .task import Task

if TYPE_CHECKING:
    from flask import Flask

    from .extension import TaskQueue
    from .result import AsyncResult

#: Every shared task defined in this process, by name (a later definition replaces one).
_definitions: dict[str, SharedTask] = {}


class SharedTask(Task):
    """What ``@shared_task`` returns: a task bound to no ``TaskQueue`` of its own.

    Calling it runs the function inline. :meth:`delay` and :meth:`apply_async` send it
    with the ``TaskQueue`` of the current app (or of the single app bound to any
    ``TaskQueue`` when there is no app context; otherwise ``RuntimeError``).
    """

    def __init__(
        self, fn: Callable[..., Any], name: str, bind: bool = False, **options: Any
    ) -> None:
        super().__init__(None, fn, name, bind=bind, **options)

    def __repr__(self) -> str:
        return f"<SharedTask {self.name}>"

    @property
    def run(self) -> Callable[..., Any]:
        """What the task runs (see :attr:`Task.run`). Replacing it, as
        ``mock.patch("module.task.run")`` does, replaces it in every ``TaskQueue``'s copy
        of the task too, so a worker or eager mode runs the replacement; deleting it (the
        end of the patch) restores every copy's own."""
        return self._run

    @run.setter
    def run(self, value: Callable[..., Any]) -> None:
        self._run = value
        if "_own_run" not in self.__dict__:  # the first time, from Task.__init__
            self._own_run = value
            return
        for copy in self._copies():
            copy.run = _own_run(copy) if value is self._own_run else value

    @run.deleter
    def run(self) -> None:
        self.run = self._own_run

    def _copies(self) -> list[Task]:
        """This task as registered in each existing TaskQueue."""
        found = (taskqueue.tasks.get(self.name) for taskqueue in list(taskqueues))
        return [task for task in found if task is not None and task.fn is self.fn]

    def register(self, taskqueue: TaskQueue) -> Task:
        """Make this task known to ``taskqueue`` (replacing a task of the same name)."""
        task = taskqueue.task(name=self.name, bind=self.bind, **self.own_options)(self.fn)
        if self._run is not self._own_run:
            task.run = self._run
        return task

    def for_app(self, app: Flask | None = None) -> Task:
        """This task as registered in the ``TaskQueue`` of ``app`` (default: the current
        app, else the single bound app)."""
        return resolve_state(app).taskqueue.tasks[self.name]

    def apply_async(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task through the current app's ``TaskQueue``; the arguments are those
        of :meth:`Task.apply_async`."""
        return self.for_app().apply_async(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """:meth:`Task.delay` through the current app's ``TaskQueue``."""
        return self.for_app().delay(*args, **kwargs)

    def delay_many(self, *args: Any, **kwargs: Any) -> list[AsyncResult]:
        """:meth:`Task.delay_many` through the current app's ``TaskQueue``."""
        return self.for_app().delay_many(*args, **kwargs)

    def apply_many(self, *args: Any, **kwargs: Any) -> list[AsyncResult]:
        """:meth:`Task.apply_many` through the current app's ``TaskQueue``."""
        return self.for_app().apply_many(*args, **kwargs)


@overload
def shared_task(fn: Callable[..., Any], /) -> SharedTask: ...


@overload
def shared_task(
    *, name: str | None = None, bind: bool = False, **options: Any
) -> Callable[[Callable[..., Any]], SharedTask]: ...


def shared_task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    bind: bool = False,
    **options: Any,
) -> SharedTask | Callable[[Callable[..., Any]], SharedTask]:
    """Define a task without a ``TaskQueue``: ``@shared_task`` or
    ``@shared_task(bind=True, queue="mail", ...)``, with the options of
    :meth:`TaskQueue.task <flask_taskq.TaskQueue.task>`.

    The task is registered in every ``TaskQueue`` of the process, existing or created
    later; ``.delay()`` uses the current app's. The default name is
    ``"<module>.<function name>"``.

    .. versionadded:: 0.2
    """

    def define(func: Callable[..., Any]) -> SharedTask:
        return _define(
            SharedTask(func, name or f"{func.__module__}.{func.__name__}", bind=bind, **options)
        )

    return define(fn) if fn is not None else define


def _own_run(task: Task) -> Callable[..., Any]:
    """``task``'s run as :class:`Task` sets it up: its function, bound when ``bind``."""
    return types.MethodType(task.fn, task) if task.bind else task.fn


def _define(task: SharedTask) -> SharedTask:
    """Keep ``task`` in the registry and register it in every existing TaskQueue."""
    _definitions[task.name] = task
    for taskqueue in list(taskqueues):
        task.register(taskqueue)
    return task


def register_shared_tasks(taskqueue: TaskQueue) -> None:
    """Register every shared task defined so far in ``taskqueue`` (a new TaskQueue)."""
    for task in list(_definitions.values()):
        task.register(taskqueue)
