"""The app's tasks, defined with ``shared_task``: this module never sees the TaskQueue."""

from __future__ import annotations

import time

from flask_taskq import Task, shared_task


@shared_task(ignore_result=False)
def add(a: int, b: int) -> int:
    """Add two numbers; the result is kept, so the page can show it."""
    return a + b


@shared_task
def block() -> None:
    """Keep a worker busy for five seconds. The app's default (TASKQ_TASK_IGNORE_RESULT)
    applies: nothing is stored, so its result stays PENDING."""
    time.sleep(5)


@shared_task(bind=True, ignore_result=False)
def process(self: Task, total: int) -> dict[str, int]:
    """Work through ``total`` one-second steps, reporting PROGRESS after each."""
    for done in range(1, total + 1):
        time.sleep(1)
        self.update_state(state="PROGRESS", meta={"current": done, "total": total})
    return {"current": total, "total": total}
