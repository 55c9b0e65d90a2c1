"""A short road to Redis for the producer's hot path.

``redis.Redis.execute_command`` spends more time in Python than Redis spends running an
XADD: it takes a connection from the pool and gives it back, records metrics, looks up
retry and response-callback settings. :class:`DirectCommands` keeps one connection per
thread (and per process, so a fork never shares a socket) made with the pool's own
settings, and sends packed commands on it directly: one ``sendall`` and one read per
command, or per batch with :meth:`pipeline`.

Errors are redis-py's own (``ConnectionError``, ``TimeoutError``, ``ResponseError``); a
connection that failed is closed and the next command opens a fresh one. Pools that
choose their server per connection (Sentinel) are left to redis-py: :attr:`enabled` is
false for them and callers use the client.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import AbstractConnection


class DirectCommands:
    """Send commands on a per-thread connection that bypasses the client's command layer."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self.enabled = type(pool) is redis.ConnectionPool and getattr(pool, "cache", None) is None
        self._connection_class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._local = threading.local()
        # Every connection opened, whatever its thread, for close(); weak, so that a
        # finished thread's connection goes with it.
        self._opened: weakref.WeakSet[AbstractConnection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()

    def _connection(self) -> AbstractConnection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._connection_class(**self._kwargs)
            local.conn, local.pid = conn, os.getpid()
            with self._opened_lock:
                self._opened.add(conn)
        return conn

    def command(self, *args: Any) -> Any:
        """Run one command and return its raw reply."""
        conn = self._connection()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except redis.ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Run several commands in one round trip; return their replies in order (a reply
        that is an error is returned as the ``ResponseError``, not raised)."""
        conn = self._connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            conn.disconnect()
            raise

    def close(self) -> None:
        """Close the connections of every thread (a thread that sends again afterwards
        opens a new one)."""
        with self._opened_lock:
            opened = list(self._opened)
        for conn in opened:
            conn.disconnect()
