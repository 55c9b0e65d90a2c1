"""What the Redis implementations share: how to connect, the Lua scripts, which errors
mean "Redis is unreachable or refusing for now".

Only the Redis implementations (``broker/redis.py``, ``backend/redis.py``,
``store/redis/``) import this package; nothing else in flask-taskq imports ``redis``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

#: Socket timeout for replies; longer than any blocking call we make.
SOCKET_TIMEOUT = 10.0
#: Longest single blocking wait (seconds); callers loop for longer waits.
MAX_BLOCK = 5.0

#: Errors meaning Redis cannot be reached now (the client reconnects on the next call).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    OSError,
)
#: Every error Redis or the connection to it can raise (OOM, READONLY and the like too):
#: what a worker backs off from and retries, never what kills it.
ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, *CONNECTION_ERRORS)

CLIENT_OPTIONS: dict[str, Any] = {
    "socket_timeout": SOCKET_TIMEOUT,
    "socket_connect_timeout": 2.0,
    "socket_keepalive": True,
    "health_check_interval": 30,
    "retry": Retry(NoBackoff(), 0),
    "decode_responses": False,
}


def connect(url: str) -> redis.Redis:
    """A client for ``url`` that fails fast: callers decide how to retry.

    ``redis://``, ``rediss://`` and ``unix://`` as redis-py reads them, and
    ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]`` for the master
    that Sentinel names ``service`` (port 26379 when omitted).
    """
    if url.startswith("redis+sentinel://"):
        return _sentinel_master(url)
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


def _sentinel_master(url: str) -> redis.Redis:
    parsed = urlsplit(url)
    password = unquote(parsed.password) if parsed.password else None
    hosts = parsed.netloc.rsplit("@", 1)[-1]
    nodes = []
    for node in hosts.split(","):
        host, _, port = node.rpartition(":") if ":" in node else (node, "", "26379")
        nodes.append((host, int(port)))
    parts = [p for p in parsed.path.split("/") if p]
    if not parts:
        raise ValueError(
            f"{url!r}: name the Sentinel service, e.g. redis+sentinel://host:26379/mymaster/0"
        )
    db = int(parts[1]) if len(parts) > 1 else 0
    sentinel = Sentinel(nodes, socket_timeout=2.0, socket_connect_timeout=2.0)
    master: redis.Redis = sentinel.master_for(parts[0], db=db, password=password, **CLIENT_OPTIONS)
    return master


def load_script(client: redis.Redis, name: str) -> redis.commands.core.Script:
    """Register the Lua script ``lua/<name>.lua`` shipped in this package."""
    source = resources.files(__package__).joinpath("lua").joinpath(f"{name}.lua").read_text()
    return client.register_script(source)
