"""The store: shared state beside the transport (see :mod:`flask_taskq.store.base`)."""

from __future__ import annotations

from .base import Store

__all__ = ["Store"]
