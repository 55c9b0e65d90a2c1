"""``-Q`` with globs: which known queues a worker consumes.

A name with ``*``, ``?`` or ``[`` in it is a glob (:mod:`fnmatch`): it selects every
*known* queue that matches, where the known queues are those the app names (the default
queue, ``TASKQ_ROUTES``, the ``queue`` option of its tasks) and those workers have served
(the broker's set of queues). A queue that only ever appears in ``apply_async(queue=...)``
is unknown until some worker consumes it by name.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import AppState

logger = logging.getLogger("flask_taskq.worker")

GLOB_CHARS = frozenset("*?[")


def is_glob(name: str) -> bool:
    """Whether ``name`` is a glob rather than a queue name."""
    return not GLOB_CHARS.isdisjoint(name)


def split_option(option: str) -> list[str]:
    """The names in a ``-Q a,b,mail.*`` option, blanks dropped, order and first copy kept."""
    return list(dict.fromkeys(q.strip() for q in option.split(",") if q.strip()))


class QueueSelection:
    """The queues a ``-Q`` option selects: its plain names, then the known queues that
    match one of its globs (in the order they are known)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.plain = [n for n in self.names if not is_glob(n)]
        self.globs = [n for n in self.names if is_glob(n)]

    def resolve(self, known: Iterable[str]) -> list[str]:
        """The plain names, then each ``known`` queue that a glob matches."""
        chosen = dict.fromkeys(self.plain)
        for queue in known:
            if queue not in chosen and any(fnmatch.fnmatchcase(queue, g) for g in self.globs):
                chosen[queue] = None
        return list(chosen)

    def describe_empty(self) -> str:
        """The error when nothing is selected (only globs, and none matches)."""
        return (
            f"-Q {','.join(self.globs)} matches no known queue; name the queues in "
            "TASKQ_ROUTES or a task's queue option, or in -Q"
        )


def known_queues(state: AppState, broker: Any) -> list[str]:
    """The queues the app names, then those the broker has seen (sorted)."""
    from .worker import default_queues

    known = dict.fromkeys(default_queues(state))
    known.update(dict.fromkeys(sorted(broker.known_queues())))
    return list(known)
