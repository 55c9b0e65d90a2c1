"""Result backends: where task states and return values are kept."""

from __future__ import annotations

from .base import ResultBackend


def backend_from_url(url: str, **options: object) -> ResultBackend:
    """Build the result backend for ``TASKQ_RESULT_BACKEND``."""
    if url.startswith("memory://"):
        from .memory import MemoryBackend

        return MemoryBackend(**options)  # type: ignore[arg-type]
    from .redis import RedisBackend

    return RedisBackend(url, **options)  # type: ignore[arg-type]


__all__ = ["ResultBackend", "backend_from_url"]
