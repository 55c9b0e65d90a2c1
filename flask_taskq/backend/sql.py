"""Results in a SQL database through SQLAlchemy 2 Core (``pip install flask-taskq[sql]``).

``TASKQ_RESULT_BACKEND`` is a SQLAlchemy URL (``postgresql://``, ``postgresql+psycopg://``,
``mysql+pymysql://``, ``sqlite:///path.db`` ...) or ``"flask-sqlalchemy"`` for the
engine of the app's Flask-SQLAlchemy extension. Each task's state document is one row
of ``taskq_result``; saved groups are rows of ``taskq_group``. Both tables are in
:data:`metadata` (``flask taskq db create`` creates them; Alembic users point
autogenerate at it).

Waiting: on PostgreSQL with psycopg 3 a waiter LISTENs and the worker's write sends a
NOTIFY in the same transaction; elsewhere ``wait`` polls with a backoff from 10 ms to
500 ms.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql, postgresql, sqlite
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "a SQL TASKQ_RESULT_BACKEND needs SQLAlchemy: pip install flask-taskq[sql]"
    ) from exc

from ..exceptions import BrokerConnectionError
from ..serializer import Serializer, get_serializer
from ..states import READY_STATES
from .base import READY, STARTED

logger = logging.getLogger("flask_taskq.backend.sql")

#: The tables of the SQL result backend, for ``create_all`` and Alembic autogenerate.
metadata = sa.MetaData()

_BLOB = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
# Task ids are case-sensitive, as Redis keys are (MySQL compares text without case).
_ID = sa.String(155).with_variant(mysql.VARCHAR(155, collation="utf8mb4_bin"), "mysql", "mariadb")

#: One row per task: its state document as the serializer encoded it (``meta``), plus
#: columns for SQL queries. Times are naive UTC.
results_table = sa.Table(
    "taskq_result",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("status", sa.String(50), nullable=False),
    sa.Column("meta", _BLOB, nullable=False),
    sa.Column("traceback", _TEXT, nullable=True),
    sa.Column("worker", sa.String(255), nullable=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("date_done", _TIME, nullable=True),
    sa.Column("expires_at", _TIME, nullable=True, index=True),
    mysql_charset="utf8mb4",
)

#: One row per saved group (:meth:`GroupResult.save`): its encoded member ids.
groups_table = sa.Table(
    "taskq_group",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("meta", _BLOB, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("expires_at", _TIME, nullable=True, index=True),
    mysql_charset="utf8mb4",
)

#: Ids read per SELECT of :meth:`SQLBackend.get_many`.
READ_CHUNK = 500
#: Seconds between two cleanups started by :meth:`SQLBackend.store_many`.
CLEANUP_INTERVAL = 60.0
#: Most batches one such cleanup deletes, so that a flush is never held for long.
CLEANUP_MAX_BATCHES = 10
#: Polling backoff of :meth:`SQLBackend.wait` where LISTEN/NOTIFY is not available.
POLL_FIRST, POLL_MAX = 0.01, 0.5
#: Longest single LISTEN wait; the row is read again after each.
LISTEN_BLOCK = 5.0
#: Driver errors meaning the database cannot be reached now.
_UNREACHABLE = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,  # no connection free in the pool in time
    sa.exc.DisconnectionError,
)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _utc(unix: object) -> datetime | None:
    if not isinstance(unix, int | float) or isinstance(unix, bool):
        return None
    try:
        return datetime.fromtimestamp(unix, timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def channel(task_id: str) -> str:
    """The PostgreSQL NOTIFY channel of ``task_id`` (``'taskq_' || md5(task_id)``)."""
    return "taskq_" + hashlib.md5(task_id.encode(), usedforsecurity=False).hexdigest()


def engine_url(url: str) -> str:
    """``url`` with psycopg 3 as the driver of a bare ``postgresql://`` URL when it is
    installed (SQLAlchemy's default there is psycopg2)."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and sep:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            return url
        return "postgresql+psycopg://" + rest
    return url


def _flask_sqlalchemy_engine(app: Any) -> sa.Engine:
    ext = app.extensions.get("sqlalchemy")
    if ext is None:
        raise RuntimeError(
            'TASKQ_RESULT_BACKEND = "flask-sqlalchemy" but the app has no Flask-SQLAlchemy '
            "extension (call db.init_app(app))"
        )
    with app.app_context():
        engine: sa.Engine = ext.engine
    return engine


class SQLBackend:
    """Result backend over a SQL database (see the module docstring)."""

    #: Errors meaning the result database is unreachable or refuses for now.
    errors: tuple[type[BaseException], ...] = (BrokerConnectionError,)

    def __init__(
        self,
        url: str,
        key_prefix: str = "taskq",
        serializer: Serializer | None = None,
        app: Any = None,
        engine: sa.Engine | None = None,
    ) -> None:
        self.url = url
        self.serializer = serializer or get_serializer("json")
        self._engine = engine
        self._engine_factory: Callable[[], sa.Engine] | None = None
        if engine is None and url == "flask-sqlalchemy":
            if app is None:
                raise ValueError('TASKQ_RESULT_BACKEND = "flask-sqlalchemy" needs the app')
            self._engine_factory = lambda: _flask_sqlalchemy_engine(app)
        elif engine is None:
            self._engine = self._create_engine(url)
        self._pid = os.getpid()
        self._worker = f"{socket.gethostname()}:{self._pid}"
        self._lock = threading.Lock()
        self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL
        self._upserts: dict[str, sa.Insert] = {}

    @staticmethod
    def _create_engine(url: str) -> sa.Engine:
        target = engine_url(url)
        options: dict[str, Any] = {"pool_recycle": 1800}
        if target.startswith("sqlite"):
            options = {"connect_args": {"timeout": 30}}  # waits for another writer's lock
        try:
            return sa.create_engine(target, **options)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise ValueError(f"TASKQ_RESULT_BACKEND: not a usable database URL: {exc}") from None
        except ImportError as exc:
            raise ImportError(
                f"TASKQ_RESULT_BACKEND needs a database driver that is not installed ({exc}); "
                "psycopg[binary] for PostgreSQL, pymysql for MySQL/MariaDB"
            ) from None

    # -- engine and errors ----------------------------------------------------------------
    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (the app's own with ``"flask-sqlalchemy"``)."""
        if self._engine is None:
            assert self._engine_factory is not None
            self._engine = self._engine_factory()
        if os.getpid() != self._pid:  # a forked child must not share the parent's sockets
            self._engine.dispose(close=False)
            self._pid = os.getpid()
            self._worker = f"{socket.gethostname()}:{self._pid}"
        return self._engine

    @property
    def dialect(self) -> str:
        """``postgresql``, ``sqlite``, ``mysql``, ``mariadb`` ..."""
        return self.engine.dialect.name

    @property
    def listens(self) -> bool:
        """True where :meth:`wait` is woken by NOTIFY (PostgreSQL through psycopg 3)."""
        return self.dialect == "postgresql" and self.engine.dialect.driver == "psycopg"

    def describe(self) -> str:
        """The database URL without its password."""
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn "cannot reach the database" and "no table" into
        :class:`BrokerConnectionError` (which workers retry with backoff)."""
        try:
            yield
        except _UNREACHABLE as exc:
            if not self._has_tables():
                raise BrokerConnectionError(self._missing()) from exc
            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"])[0]
            raise BrokerConnectionError(
                f"cannot reach the result database {self.describe()}: {reason}"
            ) from exc
        except sa.exc.ProgrammingError as exc:
            if not self._has_tables():
                raise BrokerConnectionError(self._missing()) from exc
            raise

    def _has_tables(self) -> bool:
        try:
            inspector = sa.inspect(self.engine)
            return all(inspector.has_table(t.name) for t in metadata.sorted_tables)
        except sa.exc.SQLAlchemyError:
            return True  # unreachable: say so rather than blame the tables

    def _missing(self) -> str:
        return (
            f"the result tables are missing in {self.describe()}: run `flask taskq db create` "
            "(or create them with Alembic from flask_taskq.backend.sql.metadata)"
        )

    def create_tables(self) -> list[str]:
        """Create the tables that do not exist yet; the names of those created."""
        with self._errors():
            inspector = sa.inspect(self.engine)
            missing = [t.name for t in metadata.sorted_tables if not inspector.has_table(t.name)]
            metadata.create_all(self.engine, checkfirst=True)
        return missing

    # -- writing ---------------------------------------------------------------------------
    def _row(self, task_id: str, data: bytes, ready: bool, now: datetime) -> dict[str, Any]:
        try:
            doc = self.serializer.loads(data)
        except Exception:  # an undecodable document is kept as it is
            doc = None
        if not isinstance(doc, dict):
            doc = {}
        traceback = doc.get("traceback")
        task = doc.get("task")
        return {
            "id": task_id,
            "name": str(task)[:255] if task is not None else None,
            "status": str(doc.get("status") or ("UNKNOWN" if ready else "PENDING"))[:50],
            "meta": data,
            "traceback": traceback if isinstance(traceback, str) else None,
            "worker": self._worker,
            "created_at": now,
            "date_done": _utc(doc.get("date_done")) if ready else None,
        }

    def _upsert(self, table: sa.Table) -> sa.Insert:
        """The dialect's INSERT ... ON CONFLICT / ON DUPLICATE KEY UPDATE of ``table``,
        built once: executed with a list of rows it is one executemany, compiled once."""
        stmt = self._upserts.get(table.name)
        if stmt is not None:
            return stmt
        update = [c.name for c in table.columns if c.name not in ("id", "created_at")]
        name = self.dialect
        if name in ("mysql", "mariadb"):
            my = mysql.insert(table)
            stmt = my.on_duplicate_key_update({c: my.inserted[c] for c in update})
        elif name == "postgresql":
            pg = postgresql.insert(table)
            stmt = pg.on_conflict_do_update(
                index_elements=["id"], set_={c: pg.excluded[c] for c in update}
            )
        elif name == "sqlite":
            lite = sqlite.insert(table)
            stmt = lite.on_conflict_do_update(
                index_elements=["id"], set_={c: lite.excluded[c] for c in update}
            )
        else:
            raise NotImplementedError(f"no upsert for the {name} dialect")
        self._upserts[table.name] = stmt
        return stmt

    def store_many(self, items: Sequence[tuple[str, bytes, int]], ttl: int) -> None:
        """Write ``(task_id, encoded meta, kind)`` triples in one transaction: one
        executemany of the upsert (the driver sends it as few multi-row statements) and,
        on PostgreSQL, one NOTIFY statement for the ready ones. At most once a minute a
        bounded :meth:`cleanup` follows. STARTED is not tracked here (it is left out:
        an upsert could not tell it from a late write over a final result)."""
        items = [item for item in items if item[2] != STARTED]
        if not items:
            return
        now = _utcnow()
        expires = datetime.fromtimestamp(time.time() + ttl, timezone.utc).replace(tzinfo=None)
        rows: dict[str, dict[str, Any]] = {}
        ready_ids: list[str] = []
        for task_id, data, kind in items:
            ready = kind == READY
            row = self._row(task_id, data, ready, now)
            row["expires_at"] = expires if ttl > 0 else None
            rows[task_id] = row  # the last state of a task in the batch wins
            if ready:
                ready_ids.append(task_id)
        batch = list(rows.values())
        with self._errors(), self.engine.begin() as conn:
            conn.execute(self._upsert(results_table), batch)
            if ready_ids and self.listens:
                conn.execute(
                    sa.text(
                        "SELECT pg_notify('taskq_' || md5(t), t) "
                        "FROM unnest(CAST(:ids AS text[])) AS t"
                    ),
                    {"ids": list(dict.fromkeys(ready_ids))},
                )
        self._maybe_cleanup()

    def _maybe_cleanup(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now < self._next_cleanup:
                return
            self._next_cleanup = now + CLEANUP_INTERVAL
        try:
            removed = self.cleanup(max_batches=CLEANUP_MAX_BATCHES)
        except Exception as exc:  # the results are written; cleanup is tried again later
            logger.warning("could not delete expired results: %s", exc)
        else:
            if removed:
                logger.debug("deleted %d expired results", removed)

    # -- reading ---------------------------------------------------------------------------
    def _live(self, table: sa.Table, now: datetime) -> sa.ColumnElement[bool]:
        return sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now)

    def _read(self, conn: sa.Connection, task_id: str) -> dict[str, Any] | None:
        query = sa.select(results_table.c.meta).where(
            results_table.c.id == task_id, self._live(results_table, _utcnow())
        )
        data = conn.execute(query).scalar()
        return None if data is None else self._decode(data)

    def _decode(self, data: bytes) -> dict[str, Any]:
        doc: dict[str, Any] = self.serializer.loads(bytes(data))
        return doc

    def get(self, task_id: str) -> dict[str, Any] | None:
        """The task's state document; None if unknown or expired."""
        with self._errors(), self.engine.connect() as conn:
            return self._read(conn, task_id)

    def get_many(self, task_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """The state documents of ``task_ids`` (None where unknown), one SELECT per 500."""
        ids = list(task_ids)
        found: dict[str, bytes] = {}
        now = _utcnow()
        with self._errors(), self.engine.connect() as conn:
            for start in range(0, len(ids), READ_CHUNK):
                chunk = ids[start : start + READ_CHUNK]
                query = sa.select(results_table.c.id, results_table.c.meta).where(
                    results_table.c.id.in_(chunk), self._live(results_table, now)
                )
                found.update({row.id: row.meta for row in conn.execute(query)})
        return [self._decode(found[i]) if i in found else None for i in ids]

    def wait(self, task_id: str, timeout: float | None) -> dict[str, Any] | None:
        """Block until the task is ready and return its state document; None once
        ``timeout`` seconds have passed. A result that is ready already costs one read;
        otherwise PostgreSQL (psycopg 3) wakes the wait with NOTIFY on a connection of
        its own, other databases are polled with a backoff from 10 ms to 500 ms. While
        the database is unreachable the wait retries until ``timeout``, then raises
        :class:`BrokerConnectionError` (at once without a ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.05
        while True:
            try:
                meta = self.get(task_id)
                if meta is not None and meta.get("status") in READY_STATES:
                    return meta
                if self.listens:
                    return self._listen(task_id, deadline)
                return self._poll(task_id, deadline)
            except BrokerConnectionError:
                if deadline is None or time.monotonic() + backoff >= deadline:
                    raise
                time.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    @staticmethod
    def _left(deadline: float | None) -> float | None:
        return None if deadline is None else deadline - time.monotonic()

    def _poll(self, task_id: str, deadline: float | None) -> dict[str, Any] | None:
        delay = POLL_FIRST
        while True:
            left = self._left(deadline)
            if left is not None and left <= 0:
                return None
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, POLL_MAX)
            meta = self.get(task_id)
            if meta is not None and meta.get("status") in READY_STATES:
                return meta

    def _listen(self, task_id: str, deadline: float | None) -> dict[str, Any] | None:
        # The connection leaves the pool (detach): a waiter never holds one of the pool's
        # (the app's own with Flask-SQLAlchemy), and it is closed, LISTEN and all, after.
        with self._errors(), self.engine.connect() as conn:
            driver: Any = conn.connection.dbapi_connection  # psycopg's own (sync driver)
            conn.connection.detach()
            driver.autocommit = True
            driver.execute(f'LISTEN "{channel(task_id)}"')
            while True:
                # read after LISTEN: a result written before it has sent its NOTIFY
                # already, one written after wakes the wait below
                meta = self._read(conn, task_id)
                conn.rollback()
                if meta is not None and meta.get("status") in READY_STATES:
                    return meta
                left = self._left(deadline)
                if left is not None and left <= 0:
                    return None
                block = LISTEN_BLOCK if left is None else min(LISTEN_BLOCK, left)
                for _ in driver.notifies(timeout=max(block, 0.01), stop_after=1):
                    pass

    # -- deleting --------------------------------------------------------------------------
    def forget(self, task_id: str) -> None:
        """Delete the task's row."""
        with self._errors(), self.engine.begin() as conn:
            conn.execute(sa.delete(results_table).where(results_table.c.id == task_id))

    def cleanup(self, batch: int = 1000, max_batches: int | None = None) -> int:
        """Delete expired rows of both tables, ``batch`` rows per transaction (at most
        ``max_batches`` transactions per table); how many were deleted."""
        removed = 0
        now = _utcnow()
        with self._errors():
            for table in (results_table, groups_table):
                done = 0
                while max_batches is None or done < max_batches:
                    with self.engine.begin() as conn:
                        count = conn.execute(self._delete_expired(table, now, batch)).rowcount
                    removed += count
                    done += 1
                    if count < batch:
                        break
        return removed

    def _delete_expired(self, table: sa.Table, now: datetime, batch: int) -> sa.Delete:
        expired = table.c.expires_at < now
        if self.dialect in ("mysql", "mariadb"):
            return sa.delete(table).where(expired).with_dialect_options(mysql_limit=batch)
        oldest = sa.select(table.c.id).where(expired).limit(batch)
        return sa.delete(table).where(table.c.id.in_(oldest.scalar_subquery()))

    # -- groups ----------------------------------------------------------------------------
    def save_group(self, group_id: str, data: bytes, ttl: int) -> None:
        """Keep a saved group's encoded member ids for ``ttl`` seconds (``0``: forever)."""
        now = _utcnow()
        expires = datetime.fromtimestamp(time.time() + ttl, timezone.utc).replace(tzinfo=None)
        row = {
            "id": group_id,
            "meta": data,
            "created_at": now,
            "expires_at": expires if ttl > 0 else None,
        }
        with self._errors(), self.engine.begin() as conn:
            conn.execute(self._upsert(groups_table), [row])

    def restore_group(self, group_id: str) -> bytes | None:
        """What :meth:`save_group` kept for ``group_id``, or None (never saved, expired)."""
        query = sa.select(groups_table.c.meta).where(
            groups_table.c.id == group_id, self._live(groups_table, _utcnow())
        )
        with self._errors(), self.engine.connect() as conn:
            data = conn.execute(query).scalar()
        return None if data is None else bytes(data)

    def close(self) -> None:
        """Release this backend's connections (not the app's own engine's)."""
        if self._engine is not None and self._engine_factory is None:
            self._engine.dispose()
