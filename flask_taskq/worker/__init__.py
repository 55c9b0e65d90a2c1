"""The worker: ``flask taskq worker`` and the in-process worker of ``memory://``."""

from .worker import POOLS, Worker, default_queues, setup_logging

__all__ = ["POOLS", "Worker", "default_queues", "setup_logging"]
