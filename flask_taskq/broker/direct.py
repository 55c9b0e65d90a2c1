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

``timeout=`` bounds one call (connecting, writing and every read) whatever the client's
socket timeout: a frozen server cannot hold the caller longer. With it, pools that are
not :attr:`enabled` lend one of their connections for the call. An error raised after the
command was written is marked (see :func:`maybe_sent`): Redis may have run it.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis

#: redis-py's connection class: its methods are not annotated, so it is handled as ``Any``.
Connection = Any


class DirectCommands:
    """Send commands on a per-thread connection that bypasses the client's command layer."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._local = threading.local()
        # Every connection opened, whatever its thread, for close(); weak, so that a
        # finished thread's connection goes with it.
        self._opened: weakref.WeakSet[Connection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()
        #: A Redis Cluster client: commands go through it (it routes each to the node of
        #: its slot and follows redirections); ``timeout=`` is then bounded by its socket
        #: timeout. See docs/scaling.rst.
        self.cluster = not hasattr(client, "connection_pool")
        if self.cluster:
            self.enabled = False
            return
        pool = client.connection_pool
        self.enabled = type(pool) is redis.ConnectionPool and getattr(pool, "cache", None) is None
        self._connection_class = pool.connection_class
        self._kwargs = dict(pool.connection_kwargs)
        self._pool = pool

    def _connection(self) -> Connection:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = self._connection_class(**self._kwargs)
            local.conn, local.pid, local.bound = conn, os.getpid(), None
            with self._opened_lock:
                self._opened.add(conn)
        elif getattr(local, "bound", None) is not None:  # left by packed_many: as it was
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                sock.settimeout(conn.socket_timeout)
            local.bound = None
        return conn

    def command(self, *args: Any, timeout: float | None = None) -> Any:
        """Run one command and return its raw reply; ``timeout`` bounds the whole call."""
        if self.cluster:
            try:
                return self._client.execute_command(*args)
            except BaseException as exc:
                _mark_sent(exc)  # the cluster client does not say whether it was written
                raise
        if timeout is not None:
            reply = self._bounded([args], timeout)[0]
            if isinstance(reply, redis.ResponseError):
                raise reply
            return reply
        conn = self._connection()
        try:
            conn.send_packed_command(conn.pack_command(*args), check_health=False)
            return conn.read_response()
        except redis.ResponseError:
            raise
        except BaseException as exc:
            conn.disconnect()
            _mark_sent(exc)
            raise

    def packed_many(self, packed: bytes, count: int, timeout: float) -> list[Any]:
        """Run ``count`` commands packed in RESP together in ``packed`` (:func:`pack_head`),
        in one round trip; return their replies (errors as replies). ``timeout`` bounds
        the call as in :meth:`command`. The producer's hot path: the socket keeps the last
        bound it was given while the next one is within a millisecond of it, instead of
        being set and reset around every command; with hiredis (RESP2), the bytes are
        written to the socket and the replies parsed by the connection's own hiredis
        reader, without redis-py's per-reply layers (see :func:`_lean_replies`)."""
        if not self.enabled:
            raise RuntimeError("packed commands need a direct connection (enabled)")
        local = self._local
        conn: Connection = getattr(local, "conn", None)
        sock: Any = getattr(conn, "_sock", None)
        if sock is None or local.pid != os.getpid():
            conn = self._connection()
            local.bound = None
            if getattr(conn, "_sock", None) is None:
                _connect_within(conn, max(timeout, 0.001))
            sock = getattr(conn, "_sock", None)
        held = local.bound
        if held is None or not (timeout - 0.001 <= held <= timeout + 0.001):
            sock.settimeout(max(timeout, 0.001))
            local.bound = timeout
        parser = conn._parser
        try:
            if _LEAN and type(parser) is _HiredisParser:
                return _lean_replies(sock, parser, packed, count)
            conn.send_packed_command((packed,), check_health=False)
            if count == 1:
                try:
                    return [conn.read_response()]
                except redis.ResponseError as exc:
                    return [exc]
            return _read_replies(conn, count)
        except BaseException as exc:
            conn.disconnect()
            local.bound = None
            _mark_sent(exc)
            raise

    def pipeline(
        self, commands: Sequence[Sequence[Any]], timeout: float | None = None
    ) -> list[Any]:
        """Run several commands in one round trip; return their replies in order (a reply
        that is an error is returned as the ``ResponseError``, not raised). ``timeout``
        bounds the whole call."""
        if self.cluster:
            pipe = self._client.pipeline(transaction=False)
            for c in commands:
                pipe.execute_command(*c)
            try:
                replies: list[Any] = pipe.execute(raise_on_error=False)
            except BaseException as exc:
                _mark_sent(exc)
                raise
            return replies
        if timeout is not None:
            return self._bounded(commands, timeout)
        conn = self._connection()
        try:
            conn.send_packed_command([pack_commands(commands)], check_health=False)
            return _read_replies(conn, len(commands))
        except BaseException as exc:
            conn.disconnect()
            _mark_sent(exc)
            raise

    def _bounded(self, commands: Sequence[Sequence[Any]], timeout: float) -> list[Any]:
        """``commands`` in one round trip, none of it (connect, write, reads) allowed to
        take longer than ``timeout`` seconds: beyond it, redis-py's ``TimeoutError``."""
        timeout = max(timeout, 0.001)
        deadline = time.monotonic() + timeout
        pool = self._pool
        if self.enabled:
            conn = self._connection()
            release = None
            if getattr(conn, "_sock", None) is None:
                _connect_within(conn, timeout)
        else:  # the pool connects it (within the client's own timeouts) and takes it back
            conn = _borrow(pool)
            release = pool.release
        sent = False
        try:
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
            packed = (
                conn.pack_command(*commands[0])
                if len(commands) == 1
                else conn.pack_commands(commands)
            )
            conn.send_packed_command(packed, check_health=False)
            sent = True
            if sock is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
            replies = _read_replies(conn, len(commands))
            if sock is not None:
                sock.settimeout(conn.socket_timeout)
            return replies
        except BaseException as exc:
            conn.disconnect()
            if sent:
                _mark_sent(exc)
            raise
        finally:
            if release is not None:
                release(conn)

    def close(self) -> None:
        """Close the connections of every thread (a thread that sends again afterwards
        opens a new one)."""
        with self._opened_lock:
            opened = list(self._opened)
        for conn in opened:
            conn.disconnect()


#: Attribute set on a redis-py error raised after the command was written.
_SENT_MARK = "taskq_maybe_sent"


def mark_sent(exc: BaseException) -> None:
    """Mark ``exc`` (a redis-py connection error or timeout) as raised after the command
    was written (see :func:`maybe_sent`)."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        setattr(exc, _SENT_MARK, True)


_mark_sent = mark_sent


def maybe_sent(exc: BaseException) -> bool:
    """True if ``exc`` (from :class:`DirectCommands`) came after the command was written:
    Redis may have run it although no reply arrived."""
    return bool(getattr(exc, _SENT_MARK, False))


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """``commands`` in RESP, as redis-py packs them (bytes as they are, text in UTF-8,
    numbers as their ``repr``) at a third of its cost: a worker packs every result and
    ack through here."""
    parts: list[bytes] = []
    append = parts.append
    for command in commands:
        append(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is bytes:
                raw = arg
            elif kind is str:
                raw = arg.encode()
            elif kind is int:
                raw = b"%d" % arg
            else:
                raw = _encode_other(arg)
            append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def _encode_other(arg: Any) -> bytes:
    # what redis-py's Encoder does with the rarer kinds (and its error for the rest)
    if isinstance(arg, bytes | memoryview):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, float) and not isinstance(arg, bool):
        return repr(float(arg)).encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    raise redis.DataError(
        f"Invalid input of type: '{type(arg).__name__}'. "
        "Convert to a bytes, string, int or float first."
    )


def pack_head(*args: str | bytes | int) -> bytes:
    """The RESP of a command without its last argument, which :func:`pack_tail` appends:
    a command sent often, packed once."""
    parts = [b"*%d\r\n" % (len(args) + 1)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(parts)


def pack_tail(head: bytes, last: bytes) -> bytes:
    """The command ``head`` (from :func:`pack_head`) with its last argument."""
    return b"%b$%d\r\n%b\r\n" % (head, len(last), last)


try:  # the sentinel redis-py's hiredis reader returns while a reply is incomplete
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _MORE
    from redis._parsers.hiredis import _HiredisParser

    _LEAN = True
except ImportError:  # another redis-py: its own read_response only
    _LEAN = False
#: The buffer :func:`_lean_replies` reads into, one per thread.
_buffers = threading.local()


def _lean_replies(sock: Any, parser: Any, packed: bytes, count: int) -> list[Any]:
    """Write ``packed`` to ``sock`` and read ``count`` replies with the hiredis reader of
    the connection's ``parser``: what ``send_packed_command`` and ``read_response`` do,
    without their Python layers around each reply. Errors are redis-py's: a timeout of the
    socket is a ``TimeoutError``, another socket error or a closed connection a
    ``ConnectionError``; error replies are returned (``ConnectionError`` ones, such as
    ``LOADING``, raised) and RESP3 push messages handed to the parser, as
    ``read_response`` does."""
    reader = parser._reader
    if reader is None:
        raise redis.ConnectionError("Connection closed by server.")
    push = getattr(parser, "_hiredis_PushNotificationType", None)
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(65536)
    replies: list[Any] = []
    try:
        sock.sendall(packed)
        while len(replies) < count:
            reply = reader.gets()
            if reply is _MORE:
                n = sock.recv_into(buf)
                if not n:
                    raise redis.ConnectionError("Connection closed by server.")
                reader.feed(buf, 0, n)
                continue
            if isinstance(reply, redis.ConnectionError):
                raise reply
            if push is not None and isinstance(reply, push):
                parser.handle_push_response(reply)
                continue
            replies.append(reply)
    except TimeoutError as exc:
        if exc.errno == errno.ETIMEDOUT:  # from the OS: a dead connection, as redis-py says
            raise redis.ConnectionError(f"Error while reading from socket: {exc.args}") from exc
        raise redis.TimeoutError("Timeout reading from socket") from exc
    except OSError as exc:
        raise redis.ConnectionError(
            f"Error while writing to or reading from socket: {exc}"
        ) from exc
    return replies


def _read_replies(conn: Connection, count: int) -> list[Any]:
    replies = []
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies


def _connect_within(conn: Connection, timeout: float) -> None:
    """Connect ``conn`` (and run redis-py's handshake) within ``timeout`` seconds."""
    saved = conn.socket_timeout, conn.socket_connect_timeout
    conn.socket_connect_timeout = min(saved[1] or timeout, timeout)
    conn.socket_timeout = min(saved[0] or timeout, timeout)
    try:
        conn.connect()
    finally:
        conn.socket_timeout, conn.socket_connect_timeout = saved
    # The parser may have cached the short timeout to restore after reads with a timeout
    # of their own; this connection makes none, and its socket gets the normal one back
    # after each bounded call.


def _borrow(pool: Any) -> Connection:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        return pool.get_connection("_")
