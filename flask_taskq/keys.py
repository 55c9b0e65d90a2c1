"""Every Redis key flask-taskq uses, built in one place.

A queue's keys carry the queue name as a hash tag (``{queue}``) so they share one Redis
Cluster slot and a Lua script may touch them together. See ``docs/data-model.rst``.
"""

from __future__ import annotations

PRIORITIES = range(9, -1, -1)  # highest first
DEFAULT_PRIORITY = 5
GROUP = "workers"  # the consumer group every worker joins


class Keys:
    """Key builder for one ``TASKQ_KEY_PREFIX``."""

    def __init__(self, prefix: str = "taskq") -> None:
        self.prefix = prefix

    def stream(self, queue: str, priority: int) -> str:
        """Stream holding ready messages of ``queue`` at ``priority`` (0-9)."""
        return f"{self.prefix}:{{{queue}}}:p{priority}"

    def streams(self, queue: str) -> list[str]:
        """The ten priority streams of ``queue``, highest priority first."""
        return [self.stream(queue, p) for p in PRIORITIES]

    def delayed(self, queue: str) -> str:
        """Sorted set of messages waiting for their ETA (score = due unix time)."""
        return f"{self.prefix}:{{{queue}}}:delayed"

    def queues(self) -> str:
        """Set of every queue name a message was ever sent to."""
        return f"{self.prefix}:queues"

    def result(self, task_id: str) -> str:
        """String holding a task's current state and result (JSON)."""
        return f"{self.prefix}:result:{{{task_id}}}"

    def done(self, task_id: str) -> str:
        """List that receives one element when a task reaches a ready state."""
        return f"{self.prefix}:result:{{{task_id}}}:done"

    def dead(self, queue: str) -> str:
        """Stream of ``queue``'s dead letters: messages that could not be run, with why."""
        return f"{self.prefix}:{{{queue}}}:dead"
