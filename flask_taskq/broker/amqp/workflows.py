"""Chord callbacks with a RabbitMQ broker.

The Redis store fires a chord in one script that claims the chord and enqueues its callback
in the same step (``chord_fire.lua``), into the Redis stream of the callback's queue, or
into its delayed set when it has an ETA. With RabbitMQ the stream is read by no one, so
every callback is given an ETA at least :data:`MARGIN` seconds ahead: the script puts it in
the delayed set, atomically with the claim, and a worker publishes it to RabbitMQ when due
(within about a second). A crash between the claim and the publish loses nothing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from ...store.workflows import Fired, Outgoing

#: How far ahead (seconds) a callback's ETA is set, so that it lands in the delayed set.
MARGIN = 0.05


class DelayedCallbacks:
    """A workflow store whose chord callbacks always go through the delayed set; every
    other call goes to the wrapped store."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def fire_chord(self, chord_id: str, callback: Outgoing, ttl: int, send: bool = True) -> Fired:
        """Fire the chord once; its callback waits in the delayed set (see the module)."""
        if send:
            eta = max(callback.eta or 0.0, time.time() + MARGIN)
            callback = dataclasses.replace(callback, eta=eta)
        fired: Fired = self._inner.fire_chord(chord_id, callback, ttl, send)
        return fired
