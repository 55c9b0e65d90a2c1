"""The ``TASKQ_*`` configuration keys, their defaults, and the check for misspelt keys."""

from __future__ import annotations

import copy
import difflib
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any

from .concurrency import check_config as check_concurrency_limits
from .ratelimit import parse_rate

#: Marks TASKQ_RESULT_BACKEND as "same as the broker".
SAME_AS_BROKER = "same-as-broker"

DEFAULTS: dict[str, Any] = {
    "TASKQ_BROKER_URL": "redis://localhost:6379/0",
    "TASKQ_RESULT_BACKEND": SAME_AS_BROKER,
    # The Redis store beside an AMQP broker (docs/rabbitmq.rst); defaults to a Redis
    # TASKQ_RESULT_BACKEND.
    "TASKQ_STORE_URL": None,
    # RabbitMQ's consumer_timeout (seconds): tasks running longer than half of it are
    # parked in the store (docs/rabbitmq.rst).
    "TASKQ_AMQP_CONSUMER_TIMEOUT": 1800,
    # "classic" (x-max-priority) or "quorum" (three priority bands) RabbitMQ queues.
    "TASKQ_AMQP_QUEUE_TYPE": "classic",
    "TASKQ_RESULT_EXPIRES": 86400,
    # Celery's result_extended: a result document also says what ran (task name, args,
    # kwargs, queue, worker, retries); without it a SUCCESS leaves out the task name
    # (docs/results.rst).
    "TASKQ_RESULT_EXTENDED": False,
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
    "TASKQ_WORKER_PREFETCH": None,  # automatic: 64, more on a slow link (docs/worker.rst)
    # Most ``async def`` tasks in flight at once per worker process (docs/async.rst).
    "TASKQ_WORKER_ASYNC_CONCURRENCY": 100,
    "TASKQ_MAX_TASKS_PER_CHILD": None,
    "TASKQ_WORKER_SHUTDOWN_TIMEOUT": 30,
    "TASKQ_MAX_MESSAGE_BYTES": 1024 * 1024,
    "TASKQ_MAX_DELIVERIES": 5,
    "TASKQ_DEAD_LETTER_MAX_BYTES": 256 * 1024 * 1024,
    "TASKQ_ENQUEUE_TIMEOUT": 5,
    # Replicas that must hold a sent message before ``.delay()`` returns, and a worker's
    # acks before its ack batch is done (Redis WAIT on the same connection; 0: do not
    # wait). docs/scaling.rst, "Failover".
    "TASKQ_WAIT_REPLICAS": 0,
    # Seconds after which a worker deletes a consumer that holds nothing and has not read
    # (what a killed worker leaves in the groups; 0: never). docs/data-model.rst.
    "TASKQ_IDLE_CONSUMER_TTL": 3600,
    # Queues spread over several shards (queue -> number of shards), each its own Redis
    # Cluster slot; every process of the app needs the same value. docs/scaling.rst.
    "TASKQ_QUEUE_SHARDS": {},
    # Per-key concurrency limits by task name, over the tasks' own (docs/concurrency.rst).
    "TASKQ_CONCURRENCY_LIMITS": {},
    "TASKQ_SIGNING_KEY": None,
    # Task events to the capped stream <prefix>:events (``flask taskq worker -E`` turns
    # them on for one worker). docs/observability.rst.
    "TASKQ_EVENTS": False,
    "TASKQ_EVENTS_MAXLEN": 100_000,
    "TASKQ_DASHBOARD": False,
    "TASKQ_DASHBOARD_URL_PREFIX": "/taskq",
    "TASKQ_DASHBOARD_AUTH": None,
    # Modules the worker and beat import at start, for the tasks they define (Celery's
    # ``imports`` / ``include``).
    "TASKQ_IMPORTS": [],
    # Defaults of task options (TASK_OPTION_KEYS): a task's own option wins.
    "TASKQ_TASK_IGNORE_RESULT": False,
    "TASKQ_TASK_ACKS_LATE": True,
    "TASKQ_TASK_TIME_LIMIT": None,
    "TASKQ_TASK_SOFT_TIME_LIMIT": None,
    "TASKQ_TASK_DEFAULT_RATE_LIMIT": None,
    "TASKQ_TASK_DEFAULT_PRIORITY": 5,
    "TASKQ_TASK_EXPIRES": None,
    "TASKQ_TASK_MAX_RETRIES": 3,
    "TASKQ_TASK_DEFAULT_RETRY_DELAY": 180,
    "TASKQ_TASK_RETRY_BACKOFF": False,
    "TASKQ_TASK_RETRY_BACKOFF_MAX": 600,
    "TASKQ_TASK_RETRY_JITTER": True,
    # Default of the track_started task option (docs/results.rst: STARTED).
    "TASKQ_TRACK_STARTED": True,
}

#: Task options whose default an app sets in its config: option -> key. The queue's
#: default is TASKQ_DEFAULT_QUEUE; ``name``, ``autoretry_for`` and ``unique`` belong to
#: each task and have no app-wide default.
TASK_OPTION_KEYS: dict[str, str] = {
    "ignore_result": "TASKQ_TASK_IGNORE_RESULT",
    "acks_late": "TASKQ_TASK_ACKS_LATE",
    "time_limit": "TASKQ_TASK_TIME_LIMIT",
    "soft_time_limit": "TASKQ_TASK_SOFT_TIME_LIMIT",
    "rate_limit": "TASKQ_TASK_DEFAULT_RATE_LIMIT",
    "priority": "TASKQ_TASK_DEFAULT_PRIORITY",
    "expires": "TASKQ_TASK_EXPIRES",
    "max_retries": "TASKQ_TASK_MAX_RETRIES",
    "default_retry_delay": "TASKQ_TASK_DEFAULT_RETRY_DELAY",
    "retry_backoff": "TASKQ_TASK_RETRY_BACKOFF",
    "retry_backoff_max": "TASKQ_TASK_RETRY_BACKOFF_MAX",
    "retry_jitter": "TASKQ_TASK_RETRY_JITTER",
    "track_started": "TASKQ_TRACK_STARTED",
}

#: What acks_late=False would promise and this version does not do.
ACKS_EARLY_UNSUPPORTED = (
    "acks_late=False is not supported: a task is always acknowledged after it finished, "
    "so a worker that dies runs it again (at-least-once)"
)


def apply_defaults(config: MutableMapping[str, Any]) -> None:
    """Fill in missing ``TASKQ_*`` keys and warn about unknown ones.

    Each app gets its own copy of a mutable default (``TASKQ_ROUTES``,
    ``TASKQ_BEAT_SCHEDULE``, ...), so changing one app's never changes another's or
    :data:`DEFAULTS`.
    """
    for key, value in DEFAULTS.items():
        if key not in config:
            config[key] = copy.deepcopy(value)
    if config["TASKQ_RESULT_BACKEND"] == SAME_AS_BROKER:
        broker = str(config["TASKQ_BROKER_URL"])
        # RabbitMQ keeps no results: they go to the store beside it, if there is one.
        amqp = broker.lower().startswith(("amqp://", "amqps://"))
        config["TASKQ_RESULT_BACKEND"] = config["TASKQ_STORE_URL"] if amqp else broker
    for key in config:
        if key.startswith("TASKQ_") and key not in DEFAULTS:
            close = difflib.get_close_matches(key, DEFAULTS, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.warn(f"unknown flask-taskq setting {key}{hint}", UserWarning, stacklevel=3)
    _check_task_defaults(config)


def task_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """The app's defaults of task options (option name -> value), from ``TASKQ_TASK_*``."""
    return {option: config[key] for option, key in TASK_OPTION_KEYS.items()}


def _check_task_defaults(config: Mapping[str, Any]) -> None:
    """Refuse a default that would make every task fail later, at ``init_app``."""
    try:
        parse_rate(config["TASKQ_TASK_DEFAULT_RATE_LIMIT"])
    except ValueError as exc:
        raise ValueError(f"TASKQ_TASK_DEFAULT_RATE_LIMIT: {exc}") from None
    check_concurrency_limits(config["TASKQ_CONCURRENCY_LIMITS"])
    priority = config["TASKQ_TASK_DEFAULT_PRIORITY"]
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ValueError(
            f"TASKQ_TASK_DEFAULT_PRIORITY must be an integer from 0 to 9, not {priority!r}"
        )
    if config["TASKQ_TASK_ACKS_LATE"] is False:
        warnings.warn(
            f"TASKQ_TASK_ACKS_LATE = False: {ACKS_EARLY_UNSUPPORTED}", UserWarning, stacklevel=4
        )
