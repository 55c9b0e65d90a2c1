"""``--autoscale MAX,MIN``: when the prefork supervisor starts or stops children.

Every :attr:`Autoscaler.INTERVAL` seconds the supervisor counts its children, how many of
them are running a task, and the messages waiting in the worker's (unpaused) queues:

- every child busy and messages waiting: start one child per waiting message, up to MAX;
- no message waiting and at least one child idle, continuously for
  :attr:`Autoscaler.KEEPALIVE` seconds: stop one idle child per interval, down to MIN.

A stopped child leaves as on SIGTERM: it hands back what it fetched and has not started,
and finishes a task it started meanwhile, so nothing is lost.
"""

from __future__ import annotations


class Autoscaler:
    """Celery's ``--autoscale MAX,MIN`` policy (``decide`` is pure: the supervisor acts)."""

    #: Seconds between two decisions.
    INTERVAL = 1.0
    #: Seconds without demand (a waiting message, or every child busy) before the pool
    #: shrinks; then it shrinks by one child per :attr:`INTERVAL`.
    KEEPALIVE = 10.0

    def __init__(self, maximum: int, minimum: int, now: float) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.last_demand = now

    def decide(self, now: float, live: int, busy: int, waiting: int | None) -> int:
        """How many children to start (> 0) or stop (< 0) now, given ``live`` children
        of which ``busy`` run a task, and ``waiting`` messages (``None``: unknown, as
        when Redis does not answer, which changes nothing)."""
        if live < self.minimum:
            return self.minimum - live
        if waiting is None:
            return 0
        all_busy = busy >= live
        if waiting or all_busy:
            self.last_demand = now
        if waiting and all_busy and live < self.maximum:
            return min(waiting, self.maximum - live)
        if live > self.minimum and not all_busy and now - self.last_demand >= self.KEEPALIVE:
            return -1
        return 0
