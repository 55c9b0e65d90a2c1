"""The store's beat concern: the leader lease, per-fire keys and periodic entry state."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


def format_time(when: float) -> str:
    """A unix time as beat stores it (in keys and state): ``1700000000`` or
    ``1700000000.5``, to the microsecond."""
    return f"{when:.6f}".rstrip("0").rstrip(".")


class LeaseStatus(enum.Enum):
    """What :meth:`BeatStore.hold_lease` found."""

    #: The caller did not hold the lease and took it now.
    TAKEN = "taken"
    #: The caller held the lease and renewed it.
    RENEWED = "renewed"
    #: Another beat holds it.
    HELD = "held"


@dataclass(frozen=True)
class Lease:
    """The reply of :meth:`BeatStore.hold_lease`: ``ttl`` is the seconds the lease has
    left (the other holder's when ``HELD``; 0 when unknown)."""

    status: LeaseStatus
    ttl: float


class Claim(enum.Enum):
    """What :meth:`BeatStore.claim` did."""

    #: Fire: the due time is claimed, the caller sends the task. Skip: marked handled.
    DONE = "done"
    #: The due time was handled before (sent by someone, or a later one was).
    BEFORE = "before"
    #: The caller does not hold the lease.
    NOT_LEADER = "not-leader"
    #: The entry is not registered (the store lost it): sync the entries again.
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class EntryState:
    """What the store keeps of one periodic entry (all None until it is registered):
    ``since`` (due times count from then), ``last`` (last handled due time), ``run_at``
    (when it last fired), ``schedule`` (the fingerprint it was registered with) and
    ``run_id`` (the task id of its last run, when known)."""

    since: float | None = None
    last: float | None = None
    run_at: float | None = None
    schedule: str | None = None
    run_id: str | None = None


class BeatStore(Protocol):
    """The beat lease (one active scheduler), per-fire keys (each due run sent once), and the
    state of each periodic entry, so a beat that takes over carries on where the last one
    stopped."""

    def hold_lease(self, token: str, seconds: float) -> Lease:
        """Take the lease for ``token`` if nobody holds it, or renew it if ``token`` does,
        for ``seconds``; else report the holder's remaining time."""

    def release_lease(self, token: str) -> bool:
        """Give the lease up if ``token`` holds it; True when it did."""

    def leader(self) -> tuple[str | None, float | None]:
        """The token holding the lease and its remaining seconds (None, None: nobody)."""

    def sync_entries(
        self, token: str, now: float, entries: Sequence[tuple[str, str, str]]
    ) -> list[str] | None:
        """Make the registry match ``entries`` (``(name, schedule fingerprint, task)``) in
        one step, only if ``token`` holds the lease: an entry that is new or whose
        fingerprint changed counts its due times from ``now``; entries not listed are
        forgotten. Returns the names forgotten, or None when ``token`` does not lead."""

    def entries(self, names: Sequence[str]) -> list[EntryState]:
        """The state of each of ``names``, in order."""

    def claim(
        self,
        token: str,
        name: str,
        due: float,
        now: float,
        fire: bool,
        fired_ttl: int,
        task_id: str | None = None,
    ) -> Claim:
        """Handle due time ``due`` of entry ``name`` in one step, only if ``token`` holds
        the lease and ``due`` is after the entry's last handled one: with ``fire``, set
        its per-fire key once (kept ``fired_ttl`` seconds) and note the run at ``now``
        (and ``task_id``, the id the run is sent with); without, only mark it handled (a
        skipped catch-up)."""

    def note_run(self, name: str, now: float, task_id: str) -> bool:
        """Note a run of entry ``name`` sent at ``now`` outside its schedule (run now)
        as its last run, leaving its due times alone."""

    # -- entries added at run time (flask_taskq.periodic) --------------------------------
    def dynamic_version(self) -> int:
        """The counter every change of the run-time entries raises (beats poll it)."""

    def dynamic_entries(self) -> tuple[int, dict[str, str]]:
        """The version and the run-time entries (name -> JSON spec), read together."""

    def change_dynamic(self, mode: str, name: str, spec: str = "") -> bool:
        """In one step, ``mode`` ``"add"`` stores ``spec`` for a new ``name``,
        ``"replace"`` for an existing one, ``"remove"`` deletes it; each raises the
        version. False (and nothing changed) when ``name`` exists (add) or does not."""
