"""The ``TASKQ_*`` configuration keys, their defaults, and the check for misspelt keys."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import MutableMapping
from typing import Any

#: Marks TASKQ_RESULT_BACKEND as "same as the broker".
SAME_AS_BROKER = "same-as-broker"

DEFAULTS: dict[str, Any] = {
    "TASKQ_BROKER_URL": "redis://localhost:6379/0",
    "TASKQ_RESULT_BACKEND": SAME_AS_BROKER,
    "TASKQ_RESULT_EXPIRES": 86400,
    "TASKQ_DEFAULT_QUEUE": "default",
    "TASKQ_ROUTES": {},
    "TASKQ_ALWAYS_EAGER": False,
    "TASKQ_SERIALIZER": "json",
    "TASKQ_VISIBILITY_TIMEOUT": 30,
    "TASKQ_BEAT_SCHEDULE": {},
    "TASKQ_TIMEZONE": "UTC",
    "TASKQ_KEY_PREFIX": "taskq",
    "TASKQ_WORKER_CONCURRENCY": None,
    "TASKQ_WORKER_POOL": "prefork",
    "TASKQ_WORKER_PREFETCH": 64,
    "TASKQ_MAX_TASKS_PER_CHILD": None,
    "TASKQ_WORKER_SHUTDOWN_TIMEOUT": 30,
    "TASKQ_MAX_MESSAGE_BYTES": 1024 * 1024,
    "TASKQ_MAX_DELIVERIES": 5,
    "TASKQ_ENQUEUE_TIMEOUT": 5,
    "TASKQ_SIGNING_KEY": None,
    "TASKQ_DASHBOARD": False,
    "TASKQ_DASHBOARD_URL_PREFIX": "/taskq",
    "TASKQ_DASHBOARD_AUTH": None,
}


def apply_defaults(config: MutableMapping[str, Any]) -> None:
    """Fill in missing ``TASKQ_*`` keys and warn about unknown ones."""
    for key, value in DEFAULTS.items():
        config.setdefault(key, value)
    if config["TASKQ_RESULT_BACKEND"] == SAME_AS_BROKER:
        config["TASKQ_RESULT_BACKEND"] = config["TASKQ_BROKER_URL"]
    for key in config:
        if key.startswith("TASKQ_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.warn(f"unknown flask-taskq setting {key}{hint}", UserWarning, stacklevel=3)
