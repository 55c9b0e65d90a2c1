"""Celery's config keys in a Flask app's config, read at ``init_app``.

An app moved from Celery often keeps its settings: a ``CELERY`` dict (Flask's Celery
pattern), upper-case ``CELERY_*`` keys (``conf.update(app.config)``, Django's namespace) or
Celery's lower-case names. Each one with a ``TASKQ_*`` equivalent is applied to that key
with a warning naming it (unless the ``TASKQ_*`` key is set, which wins); the others are
listed in one warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, MutableMapping
from datetime import timedelta
from typing import Any

#: Celery setting (its lower-case name) -> the ``TASKQ_*`` key that takes its value.
CELERY_EQUIVALENTS: dict[str, str] = {
    "broker_url": "TASKQ_BROKER_URL",
    "result_backend": "TASKQ_RESULT_BACKEND",
    "result_expires": "TASKQ_RESULT_EXPIRES",
    "result_extended": "TASKQ_RESULT_EXTENDED",
    "task_default_queue": "TASKQ_DEFAULT_QUEUE",
    "task_routes": "TASKQ_ROUTES",
    "task_always_eager": "TASKQ_ALWAYS_EAGER",
    "task_serializer": "TASKQ_SERIALIZER",
    "beat_schedule": "TASKQ_BEAT_SCHEDULE",
    "timezone": "TASKQ_TIMEZONE",
    "imports": "TASKQ_IMPORTS",
    "include": "TASKQ_IMPORTS",
    "worker_concurrency": "TASKQ_WORKER_CONCURRENCY",
    "worker_pool": "TASKQ_WORKER_POOL",
    "worker_max_tasks_per_child": "TASKQ_MAX_TASKS_PER_CHILD",
    "task_ignore_result": "TASKQ_TASK_IGNORE_RESULT",
    "task_acks_late": "TASKQ_TASK_ACKS_LATE",
    "task_time_limit": "TASKQ_TASK_TIME_LIMIT",
    "task_soft_time_limit": "TASKQ_TASK_SOFT_TIME_LIMIT",
    "task_default_rate_limit": "TASKQ_TASK_DEFAULT_RATE_LIMIT",
    "worker_send_task_events": "TASKQ_EVENTS",
    "task_track_started": "TASKQ_TRACK_STARTED",
}

#: Celery settings whose ``TASKQ_*`` counterpart means something else: not applied, and
#: the warning says what to set instead.
CONVERT_BY_HAND: dict[str, str] = {
    "task_default_priority": "TASKQ_TASK_DEFAULT_PRIORITY (9 runs first: use 9 - value)",
    "worker_prefetch_multiplier": (
        "TASKQ_WORKER_PREFETCH (a number of messages per process, not a multiplier)"
    ),
    "broker_transport_options": "TASKQ_VISIBILITY_TIMEOUT (for its visibility_timeout)",
    "security_key": "TASKQ_SIGNING_KEY (a shared secret)",
}

#: Celery 3 upper-case names that are not ``CELERY_`` + the new name.
OLD_NAMES: dict[str, str] = {
    "BROKER_URL": "broker_url",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_ROUTES": "task_routes",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    "CELERY_TRACK_STARTED": "task_track_started",
}

#: Lower-case Celery names recognised at the top level of ``app.config`` although they
#: have no counterpart (every key of a ``CELERY`` dict or ``CELERY_*`` key is Celery's).
CELERY_ONLY: frozenset[str] = frozenset(
    {
        "accept_content",
        "result_serializer",
        "result_accept_content",
        "task_reject_on_worker_lost",
        "task_acks_on_failure_or_timeout",
        "task_eager_propagates",
        "task_create_missing_queues",
        "task_queues",
        "task_default_exchange",
        "task_default_routing_key",
        "task_annotations",
        "task_compression",
        "task_send_sent_event",
        "worker_hijack_root_logger",
        "worker_redirect_stdouts",
        "worker_max_memory_per_child",
        "worker_disable_rate_limits",
        "broker_connection_retry_on_startup",
        "broker_connection_retry",
        "broker_pool_limit",
        "broker_heartbeat",
        "enable_utc",
        "beat_scheduler",
        "beat_max_loop_interval",
        "redis_max_connections",
    }
)

_PREFIXES = (("CELERYBEAT_", "beat_"), ("CELERYD_", "worker_"), ("CELERY_", ""))


def celery_name(key: str) -> str:
    """Celery's lower-case name for ``key``: ``CELERY_BROKER_URL`` and ``BROKER_URL`` ->
    ``broker_url``, ``CELERYD_CONCURRENCY`` -> ``worker_concurrency``; a lower-case key is
    returned as it is."""
    if key in OLD_NAMES:
        return OLD_NAMES[key]
    if key != key.upper():
        return key
    for prefix, replacement in _PREFIXES:
        if key.startswith(prefix):
            return replacement + key[len(prefix) :].lower()
    return key.lower()


def find_celery_settings(config: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """The Celery settings in ``config``: ``(where, Celery name, value)`` triples, where
    ``where`` is the key as written (``CELERY['broker_url']`` for the ``CELERY`` dict)."""
    found: list[tuple[str, str, Any]] = []
    nested = config.get("CELERY")
    if isinstance(nested, Mapping):
        found += [
            (f"CELERY[{key!r}]", celery_name(str(key)), value) for key, value in nested.items()
        ]
    for key, value in config.items():
        if key == "CELERY":
            continue
        if key in OLD_NAMES or key.startswith(("CELERY_", "CELERYD_", "CELERYBEAT_")):
            found.append((key, celery_name(key), value))
        elif key in CELERY_EQUIVALENTS or key in CONVERT_BY_HAND or key in CELERY_ONLY:
            found.append((key, key, value))
    return found


def _convert(name: str, value: Any) -> Any:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if CELERY_EQUIVALENTS[name] == "TASKQ_IMPORTS":
        return [value] if isinstance(value, str) else list(value or ())
    return value


def apply_celery_settings(config: MutableMapping[str, Any]) -> None:
    """Apply the Celery settings of ``config`` to their ``TASKQ_*`` keys, warning once per
    setting, and list in one warning those without a counterpart. A ``TASKQ_*`` key set in
    ``config`` wins over the Celery setting. ``imports`` and ``include`` both add to
    ``TASKQ_IMPORTS``. Call it before the defaults are filled in."""
    settings = find_celery_settings(config)
    if not settings:
        return
    explicit = {key for key in config if key.startswith("TASKQ_")}
    ignored: list[str] = []
    for where, name, value in settings:
        target = CELERY_EQUIVALENTS.get(name)
        if target is None:
            if name in CONVERT_BY_HAND:
                _warn(f"Celery setting {where} is not applied: set {CONVERT_BY_HAND[name]}")
            else:
                ignored.append(where)
            continue
        if target in explicit:
            _warn(f"Celery setting {where} is ignored: {target} is set")
            continue
        value = _convert(name, value)
        if target == "TASKQ_IMPORTS" and target in config:
            value = [*config[target], *value]
        config[target] = value
        _warn(f"Celery setting {where} is applied as {target}: rename it to {target}")
    if ignored:
        _warn(f"Celery settings without a flask-taskq counterpart, ignored: {', '.join(ignored)}")


def _warn(text: str) -> None:
    warnings.warn(text, UserWarning, stacklevel=4)
