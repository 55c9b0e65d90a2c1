"""Task events kept in this process (``memory://``, an AMQP broker without a Redis
store): readable through the API in the same process, not by other processes."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence


class MemoryEventStore:
    """A capped list of events with stream-like ids, readable with a blocking wait."""

    shared = False

    def __init__(self) -> None:
        self._events: deque[tuple[tuple[int, int], dict[str, str]]] = deque()
        self._last = (0, 0)
        self._changed = threading.Condition()

    def publish(self, events: Sequence[Sequence[str]], maxlen: int) -> None:
        """Append ``events``; keep the last ``maxlen``."""
        with self._changed:
            for event in events:
                ms = int(time.time() * 1000)
                last_ms, seq = self._last
                self._last = (ms, 0) if ms > last_ms else (last_ms, seq + 1)
                self._events.append((self._last, dict(zip(event[::2], event[1::2], strict=True))))
            while len(self._events) > maxlen:
                self._events.popleft()
            self._changed.notify_all()

    def last_id(self) -> str:
        """The newest event's id (``"0-0"`` when there is none)."""
        with self._changed:
            return _id(self._events[-1][0]) if self._events else "0-0"

    def read(self, after: str, count: int, block: float) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` events newer than ``after``, waiting up to ``block`` seconds."""
        ms, _, seq = after.partition("-")
        floor = (int(ms), int(seq or 0))
        deadline = time.monotonic() + block
        with self._changed:
            while True:
                out = [(_id(i), dict(e)) for i, e in self._events if i > floor][:count]
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                self._changed.wait(left)

    def length(self) -> int:
        """How many events are kept."""
        with self._changed:
            return len(self._events)


def _id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}-{pair[1]}"
