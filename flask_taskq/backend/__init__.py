"""Result backends: where task states and return values are kept."""

from __future__ import annotations

from .base import ResultBackend

#: URL schemes of the Redis result backend.
REDIS_SCHEMES = frozenset(
    {"redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster"}
)


def backend_from_url(url: str, **options: object) -> ResultBackend:
    """Build the result backend for ``TASKQ_RESULT_BACKEND``: ``memory://``, a Redis URL,
    ``"flask-sqlalchemy"`` or any other SQLAlchemy URL (``postgresql://``,
    ``mysql+pymysql://``, ``sqlite:///...``; :mod:`flask_taskq.backend.sql`). ``app`` is
    passed on to the SQL backend only."""
    app = options.pop("app", None)
    if url.startswith("memory://"):
        from .memory import MemoryBackend

        return MemoryBackend(**options)  # type: ignore[arg-type]
    scheme, sep, _ = url.partition("://")
    if url == "flask-sqlalchemy" or (sep and scheme.lower() not in REDIS_SCHEMES):
        try:
            from .sql import SQLBackend
        except ImportError as exc:
            raise ImportError(str(exc)) from None
        return SQLBackend(url, app=app, **options)  # type: ignore[arg-type]
    from .redis import RedisBackend

    return RedisBackend(url, **options)  # type: ignore[arg-type]


__all__ = ["ResultBackend", "backend_from_url"]
