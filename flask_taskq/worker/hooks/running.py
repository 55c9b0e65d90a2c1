"""What runs where: the consumer's guard notes the running task (for time limits,
``revoke(terminate=True)`` and the heartbeat) and, in an autoscaling prefork child, the
slot's busy flag is raised while it runs. An ``async def`` task is noted under a key of its
own (it runs on the event loop, :mod:`..aio`); the flag stays up while any coroutine
runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..aio import coroutine_key
from ..guard import Guard
from .base import Context, Hook

if TYPE_CHECKING:
    import mmap


class Running(Hook):
    """Arms the soft/hard time limits and marks the slot busy; undoes both after."""

    def __init__(self, guard: Guard, busy: mmap.mmap | None = None, slot: int = 0) -> None:
        self.guard = guard
        self.busy = busy
        self.slot = slot

    def before(self, ctx: Context) -> bool:
        assert ctx.delivery is not None
        options = ctx.options
        task = ctx.task
        self.guard.begin(
            ctx.message,
            ctx.delivery,
            options.get("soft_time_limit"),
            options.get("time_limit"),
            coroutine_key(ctx) if task is not None and task.is_async else None,
        )
        if self.busy is not None:
            self.busy[self.slot] = 1
        return True

    def finish(self, ctx: Context) -> None:
        task = ctx.task
        self.guard.end(coroutine_key(ctx) if task is not None and task.is_async else None)
        if self.busy is not None:  # busy while a task or a coroutine still runs
            self.busy[self.slot] = 1 if self.guard.running else 0
