"""Rate limits that hold across all workers together (SPEC section 5.7).

A task declared with ``rate_limit="100/s"`` (or ``"10/m"``, ``"500/h"``, or a plain
number meaning per second) has one token bucket in the store that every worker draws
from. The bucket holds one second's worth of tokens (at least one) and refills
continuously; the store refills and takes a token in one step (on Redis one script call,
``rate_limit.lua``, reading the time from Redis so that all workers share one clock; see
:mod:`flask_taskq.store.ratelimits`).
Over any window of ``T`` seconds a task therefore starts at most ``burst + rate * T``
times, whatever the number of workers. An idle bucket expires by itself.

``flask taskq rate-limit TASK 20/s`` stores a runtime override (task -> rate) in the
store; every :class:`RateLimiter` reads the overrides at most once per
``refresh_interval`` (one ``HGETALL`` on Redis), so a change reaches all workers within
about a second. ``flask taskq rate-limit TASK off`` removes it again.

How the worker uses it
----------------------
One limiter per worker process (it holds the store's rate-limit concern and a small
cache; it is safe to share between threads). Before running a task::

    rate = limiter.effective_rate(task.name, task.options.get("rate_limit"))
    if rate is not None:
        wait = limiter.acquire(task.name, rate, task_id=message.id)
        if wait > 0:
            # No token now: hand the same message back to the broker to run ``wait`` seconds
            # later, atomically (ack + ZADD to the delayed set, reschedule.lua), and go
            # on with other tasks.
            broker.reschedule(consumer, [(delivery, delivery.body, time.time() + wait)])
            continue
    run(task)

Tasks without a limit cost nothing beyond a dictionary lookup (plus one ``HGETALL`` per
second for the whole process); tasks with one cost exactly one script call per check.
Nothing waits in worker memory: a task waiting for a token is a message in the delayed
set, so it survives its worker dying, and the worker's other tasks are not held up.

Passing ``task_id`` is recommended: a message that finds no token then books the next
free one (the bucket goes into debt) and gets the wait until that slot; when it comes
back at its slot, ``acquire`` with the same id grants it without taking another token.
A backlog of N messages is thus spread over N distinct slots and each message is
rescheduled at most once, instead of every waiting message asking again at every token.
Without ``task_id``, ``acquire`` only tells how long until the next token.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

from .store.ratelimits import Bucket, RateLimitStore

logger = logging.getLogger(__name__)

#: Seconds per unit of ``N/<unit>``. Only ``s``, ``m`` and ``h`` (as in Celery); not
#: ``sec``, ``min``, ``hour`` or ``d``.
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}

#: Words that ``set_rate`` (and ``flask taskq rate-limit TASK off``) take as "remove the
#: runtime limit", besides anything ``parse_rate`` reads as no limit ("0", "").
OFF_WORDS = frozenset({"off", "none"})

_RATE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:\s*/\s*([a-z]+))?$")


def parse_rate(text: str | float | None) -> float | None:
    """Tokens per second for a rate limit, or None for no limit.

    ``"100/s"``, ``"10/m"``, ``"500/h"`` are per second, minute and hour; a plain number
    (``"20"``, ``20``, ``2.5``) is per second, as in Celery. ``None``, ``""`` and any zero
    rate (``"0"``, ``"0/m"``) mean no limit. Anything else raises :class:`ValueError`
    naming the string.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        raise ValueError(f"invalid rate limit {text!r}: expected N/s, N/m, N/h or a number")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"invalid rate limit {text!r}: must be a number >= 0")
        return float(text) or None
    if not isinstance(text, str):
        raise ValueError(f"invalid rate limit {text!r}: expected a string such as '10/s'")
    cleaned = text.strip().lower()
    if not cleaned:
        return None
    match = _RATE.match(cleaned)
    if match is None or (match.group(2) is not None and match.group(2) not in UNITS):
        raise ValueError(
            f"invalid rate limit {text!r}: expected N/s, N/m or N/h (per second, minute "
            f"or hour) or a plain number (per second), e.g. '10/s'"
        )
    count = float(match.group(1))
    per = UNITS[match.group(2) or "s"]
    return count / per if count else None


def format_rate(rate: float | None) -> str:
    """A readable form of ``rate`` tokens per second: ``"20/s"``, ``"10/m"``, ``"off"``."""
    if rate is None:
        return "off"
    counts = [(rate * seconds, unit) for unit, seconds in UNITS.items()]
    for count, unit in counts:  # the first unit giving a whole number: 500/h, not 8.3/m
        if count >= 1 - 1e-9 and abs(count - round(count)) < 1e-6 * count:
            return f"{round(count)}/{unit}"
    count, unit = next(((c, u) for c, u in counts if c >= 1), counts[-1])
    return f"{count:.6g}/{unit}"


def burst_for(rate: float) -> float:
    """The bucket capacity for ``rate``: one second's worth of tokens, at least one."""
    return max(1.0, rate)


_MISSING = object()


class RateLimiter:
    """Token buckets in the store shared by every worker, and the runtime overrides.

    ``store`` is the store's rate-limit concern (``Store.rate_limits``); ``errors`` the
    store's errors (``Store.errors``), on which the last overrides read are kept.
    Overrides are read at most once per ``refresh_interval`` seconds.
    """

    def __init__(
        self,
        store: RateLimitStore,
        refresh_interval: float = 1.0,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.errors = errors
        self.refresh_interval = refresh_interval
        self._overrides: dict[str, float] = {}
        self._loaded_at = -math.inf
        self._defaults: dict[Any, float | None] = {}
        self._bad: set[tuple[str, str]] = set()
        self._failing = False
        self._lock = threading.Lock()

    # -- the hot path ----------------------------------------------------------------------
    def acquire(self, task_name: str, rate: float, task_id: str | None = None) -> float:
        """Take a token for ``task_name`` at ``rate`` tokens per second (one store call).

        Returns 0.0 when a token was taken (run the task now), else the seconds until
        one may be had. With ``task_id``, a refusal books the next free token for that
        id and the wait is until it; asking again with the same id at or after that time
        returns 0.0 without taking another token (see the module docstring).
        """
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a positive number of tokens per second, not {rate!r}")
        return self.store.acquire(task_name, float(rate), burst_for(rate), task_id)

    def bucket(self, task_name: str) -> Bucket | None:
        """``task_name``'s token bucket as last touched (``tokens``, ``updated``), or None
        when it has none (never used, or idle long enough to be full)."""
        return self.store.bucket(task_name)

    def effective_rate(self, task_name: str, default: str | float | None = None) -> float | None:
        """The rate (tokens per second) that applies to ``task_name`` now, or None.

        A runtime override (``flask taskq rate-limit``) wins over ``default``, the task's
        own ``rate_limit``. Overrides come from a cache refreshed at most once per
        ``refresh_interval``; while the store cannot be read the last values are kept.
        An invalid ``default`` raises :class:`ValueError`.
        """
        if time.monotonic() - self._loaded_at >= self.refresh_interval:
            self._refresh()
        rate = self._overrides.get(task_name, _MISSING)
        if rate is not _MISSING:
            return rate  # type: ignore[return-value]
        if default is None:
            return None
        try:
            return self._defaults[default]
        except KeyError:
            parsed = self._defaults[default] = parse_rate(default)
            return parsed

    # -- overrides -------------------------------------------------------------------------
    def set_rate(self, task_name: str, rate_text: str | float | None) -> float | None:
        """Set the runtime rate limit of ``task_name`` for all workers; return the rate in
        tokens per second. ``"off"``, ``"none"``, ``"0"`` (or None) delete the override,
        so the task's own ``rate_limit`` applies again, and return None. An invalid rate
        raises :class:`ValueError` and changes nothing."""
        if not task_name:
            raise ValueError("a task name is required")
        text = "" if rate_text is None else str(rate_text).strip()
        rate = None if text.lower() in OFF_WORDS else parse_rate(text)
        with self._lock:
            if rate is None:
                self.store.remove_override(task_name)
                self._overrides.pop(task_name, None)
            else:
                self.store.set_override(task_name, text)
                self._overrides[task_name] = rate
        return rate

    def overrides(self) -> dict[str, str]:
        """The runtime overrides as stored, read now: task name -> rate text."""
        texts = self.store.overrides()
        self._store(texts)
        return texts

    @property
    def has_overrides(self) -> bool:
        """True if any runtime override is known (as of the last refresh); workers call
        :meth:`reload` every second so that tasks without a limit need no check."""
        return bool(self._overrides)

    def reload(self) -> None:
        """Read the overrides now instead of at the next refresh."""
        self.overrides()

    def _refresh(self) -> None:
        try:
            self.overrides()
        except self.errors as exc:
            log = logger.debug if self._failing else logger.warning
            log("Could not read runtime rate limits (%s); keeping the last ones", exc)
            self._failing = True
            self._loaded_at = time.monotonic()
        else:
            self._failing = False

    def _store(self, texts: dict[str, str]) -> None:
        parsed: dict[str, float] = {}
        for name, text in texts.items():
            try:
                rate = parse_rate(text)
            except ValueError as exc:
                if (name, text) not in self._bad:
                    self._bad.add((name, text))
                    logger.warning("Ignoring the runtime rate limit of %s: %s", name, exc)
                continue
            if rate is not None:
                parsed[name] = rate
        with self._lock:
            self._overrides = parsed
            self._loaded_at = time.monotonic()
