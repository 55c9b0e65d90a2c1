"""The store's workflows concern: chord members, the once-only chord firing, and the
workflow graph documents."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Outgoing:
    """A message ready to enqueue: its queue, priority (0-9), encoded body and ETA (unix
    time, None for now)."""

    queue: str
    priority: int
    body: bytes
    eta: float | None = None


class Fired(enum.Enum):
    """What :meth:`WorkflowStore.fire_chord` did."""

    #: The chord was fired by this call and its callback enqueued in the same step.
    SENT = "sent"
    #: The chord was fired by this call; the caller enqueues the callback now.
    CLAIMED = "claimed"
    #: The chord was fired before (by another member, or an earlier run of this one).
    BEFORE = "before"


class WorkflowStore(Protocol):
    """Chord counters and member results, the once-only firing of a chord callback, and
    workflow graph documents."""

    def chord_member_done(
        self, chord_id: str, index: int, value: bytes, size: int, ttl: int
    ) -> list[bytes] | None:
        """Record the encoded return ``value`` of member ``index`` of a chord of ``size``
        (kept ``ttl`` seconds, 0 = forever). Idempotent: a member recorded again keeps its
        first value. Returns every member's value in order once all are in, else None."""

    def fire_chord(self, chord_id: str, callback: Outgoing, ttl: int, send: bool = True) -> Fired:
        """Fire the chord once: the first call claims its fired marker (kept ``ttl``
        seconds) and, with ``send``, has ``callback`` enqueued: in the same atomic step
        where the store holds the transport's queues (:attr:`Fired.SENT`), else by the
        caller (:attr:`Fired.CLAIMED`). Every later call gets :attr:`Fired.BEFORE`.
        ``send=False`` only claims (the chord failed)."""

    def save_chain(self, chain_id: str, steps: Sequence[bytes], ttl: int) -> None:
        """Keep the encoded ``steps`` of a chain (after its first task) for ``ttl``
        seconds (0 = forever), so that its messages need not carry them."""

    def chain_steps(self, chain_id: str, start: int, stop: int) -> list[bytes]:
        """Steps ``start`` to ``stop`` (included; -1: the last) kept by :meth:`save_chain`;
        fewer or none once they expired."""

    def save_graph(
        self,
        workflow_id: str,
        doc: dict[str, Any],
        ids: Iterable[str],
        ttl: int,
        keep: int,
        canvas: bytes | None = None,
    ) -> None:
        """Store the graph document ``doc`` of workflow ``workflow_id``, make each of
        ``ids`` find it, and add it to the most recent (``keep`` of them are kept), in one
        step; everything but the recent list expires after ``ttl`` seconds (0 = never).
        ``canvas``: the workflow as sent (encoded), kept beside it for
        :meth:`graph_canvas` (re-running its failed steps)."""

    def graph_id_of(self, any_id: str) -> str | None:
        """The id of the workflow ``any_id`` (a workflow, task or group id) is part of."""

    def graph(self, any_id: str) -> dict[str, Any] | None:
        """The graph document of the workflow ``any_id`` is part of, or None."""

    def recent_graphs(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recent graph documents still stored, newest first."""

    def graph_canvas(self, workflow_id: str) -> bytes | None:
        """The encoded canvas saved with the graph of ``workflow_id`` (its own id, not
        any task's), or None."""
