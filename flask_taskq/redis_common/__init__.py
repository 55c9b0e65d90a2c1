"""What the Redis implementations share: how to connect, the Lua scripts, which errors
mean "Redis is unreachable or refusing for now".

Only the Redis implementations (``broker/redis.py``, ``backend/redis.py``,
``store/redis/``) import this package; nothing else in flask-taskq imports ``redis``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode as _ClusterNode
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..exceptions import TaskQueueError

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


#: URL schemes of a Redis Cluster (``redis+cluster://host:port[,host:port...]/``).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: Port of a cluster startup node named without one.
CLUSTER_DEFAULT_PORT = 6379


class ClusterURLRequired(TaskQueueError, redis.RedisError):
    """A ``redis://`` (or ``rediss://``, ``unix://``) URL names a Redis Cluster node:
    flask-taskq needs ``redis+cluster://`` for it. Raised when the first connection is
    made, before any command runs, with a one-line message naming the URL to use."""


def connect(url: str) -> Any:
    """A client for ``url`` that fails fast: callers decide how to retry.

    ``redis://``, ``rediss://`` and ``unix://`` as redis-py reads them (a
    :class:`redis.Redis`); ``redis+sentinel://[:password@]host:port[,host:port...]/service[/db]``
    for the master that Sentinel names ``service`` (port 26379 when omitted); and
    ``redis+cluster://[[user]:password@]host:port[,host:port...]/`` (``rediss+cluster://``
    with TLS) for a Redis or Valkey Cluster (a :class:`redis.cluster.RedisCluster`, which
    follows MOVED and ASK redirections and topology changes by itself).

    A plain URL that turns out to name a cluster node raises :class:`ClusterURLRequired`
    at the first connection.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "redis+sentinel":
        return _sentinel_master(url)
    if scheme in CLUSTER_SCHEMES:
        return _cluster(url)
    return redis.Redis.from_url(url, **CLIENT_OPTIONS, redis_connect_func=_refuse_cluster_node)


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client (see :func:`connect`)."""
    return isinstance(client, RedisCluster)


def _refuse_cluster_node(conn: Any) -> None:
    """redis-py's handshake, then one ``INFO cluster``: a node with ``cluster_enabled:1``
    is refused with :class:`ClusterURLRequired` (once per connection, not per command)."""
    conn.on_connect()
    try:
        conn.send_command("INFO", "cluster", check_health=False)
        info = conn.read_response()
    except redis.ResponseError:  # INFO not allowed (ACL) or not known: nothing to tell
        return
    if isinstance(info, bytes) and b"cluster_enabled:1" in info:
        where = f"{conn.host}:{conn.port}" if hasattr(conn, "port") else "this server"
        raise ClusterURLRequired(
            f"Redis at {where} is a Redis Cluster node: use "
            f"redis+cluster://{where}/ (or rediss+cluster://) instead of a redis:// URL"
        )


#: redis-py's ``ClusterNode`` (not annotated).
ClusterNode: Any = _ClusterNode


def _cluster(url: str) -> RedisCluster:
    parsed = urlsplit(url)
    username = unquote(parsed.username) if parsed.username else None
    password = unquote(parsed.password) if parsed.password else None
    hosts = parsed.netloc.rsplit("@", 1)[-1]
    nodes = []
    for node in filter(None, hosts.split(",")):
        host, sep, port = node.rpartition(":")
        if not sep:
            host, port = node, str(CLUSTER_DEFAULT_PORT)
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError(f"{url!r}: name at least one node, e.g. redis+cluster://host:7000/")
    db = parsed.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"{url!r}: a Redis Cluster has database 0 only")
    options = {k: v for k, v in CLIENT_OPTIONS.items() if k != "retry"}
    return RedisCluster(
        startup_nodes=nodes,
        username=username,
        password=password,
        ssl=parsed.scheme.lower() == "rediss+cluster",
        # A few quick retries so that a command sent while a failover or a slot move is
        # under way reaches the new owner once the client has refreshed its slot map.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        **options,
    )


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


def send_commands(
    client: Any, direct: Any, commands: Sequence[tuple[Any, ...]], *, use_direct: bool
) -> list[Any]:
    """Run raw ``commands`` in one round trip, errors as replies: on ``direct`` (a
    :class:`~flask_taskq.broker.direct.DirectCommands`) when ``use_direct``, else in a
    redis-py pipeline of ``client``."""
    if use_direct:
        result: list[Any] = direct.pipeline(commands)
        return result
    pipe = client.pipeline(transaction=False)
    for c in commands:
        pipe.execute_command(*c)
    replies: list[Any] = pipe.execute(raise_on_error=False)
    return replies


def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua``, each ``-- include: <lib>`` line replaced by
    ``lua/lib_<lib>.lua`` (Redis scripts cannot load one another); a library may include
    others, and each is included once, where it is first named."""
    lua = resources.files(__package__).joinpath("lua")
    included: set[str] = set()

    def expand(text: str) -> str:
        return re.sub(r"^-- include: (\w+)$", include, text, flags=re.M)

    def include(match: re.Match[str]) -> str:
        lib = match.group(1)
        if lib in included:
            return f"-- (included above: {lib})"
        included.add(lib)
        return expand(lua.joinpath(f"lib_{lib}.lua").read_text())

    return expand(lua.joinpath(f"{name}.lua").read_text())


def load_script(client: Any, name: str) -> redis.commands.core.Script:
    """Register the Lua script ``lua/<name>.lua`` shipped in this package.

    On a Redis Cluster it is loaded into every master at once: redis-py's cluster
    pipelines do not load scripts themselves (see :func:`reload_scripts`)."""
    source = script_source(name)
    script: redis.commands.core.Script = client.register_script(source)
    if is_cluster(client):
        client.script_load(source)
    return script


def reload_scripts(client: Any, scripts: Any, replies: Any) -> None:
    """After a cluster pipeline: when a reply is ``NoScriptError`` (a master that lost its
    script cache: a restart, a failover, a node added), load ``scripts`` into every
    master again, then raise that error so that the caller retries as after any Redis
    error."""
    missing = [r for r in replies if isinstance(r, redis.exceptions.NoScriptError)]
    if missing:
        for script in scripts:
            client.script_load(script.script)
        raise missing[0]


def key_slot(key: bytes) -> int:
    """The Redis Cluster hash slot of ``key`` (its ``{hash tag}`` when it has one)."""
    from redis.crc import key_slot as slot

    return int(slot(key))


def mget(client: Any, keys: list[str]) -> list[Any]:
    """``MGET`` of ``keys``; on a Redis Cluster split by hash slot (one ``MGET`` per slot,
    not atomic across slots)."""
    if is_cluster(client):
        return list(client.mget_nonatomic(keys))
    return list(client.mget(keys))
