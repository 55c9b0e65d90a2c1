"""Faults seen from the client side (issue 13, items 7, 10 and 11): sending and waiting on
a frozen Redis, workflow steps when Redis goes away under a worker, and the dashboard on an
app without ``SECRET_KEY``. Real redis-server processes, frozen with SIGSTOP or restarted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis

from flask_taskq import BrokerConnectionError
from flask_taskq import TimeoutError as TaskTimeoutError
from tests.conftest import RedisServer

#: Redis's replies are waited for this long by default (broker/redis.py SOCKET_TIMEOUT);
#: the faults below made callers wait that long whatever their own timeout said.
SOCKET_TIMEOUT = 10.0


@pytest.fixture
def frozen_app(own_redis: RedisServer, monkeypatch: pytest.MonkeyPatch):
    """The basic app on a Redis of its own, with TASKQ_ENQUEUE_TIMEOUT = 1 s."""
    monkeypatch.setenv("TASKQ_BROKER_URL", own_redis.url)
    from tests.apps.basic import create_app

    app = create_app()
    app.config["TASKQ_ENQUEUE_TIMEOUT"] = 1.0
    return app


@pytest.fixture
def freeze(own_redis: RedisServer) -> Iterator[None]:
    """SIGSTOP the test's own redis-server; SIGCONT it afterwards whatever happens."""
    assert own_redis.proc is not None
    pid = own_redis.proc.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _stream_ids(client: redis.Redis) -> list[str]:
    """The task ids of every message waiting in the app's default queue."""
    import json

    ids = []
    for key in client.scan_iter("taskq:*default*"):
        if client.type(key) == b"stream":
            for _, fields in client.xrange(key):
                ids.append(json.loads(fields[b"m"])["id"])
    return ids


@pytest.mark.parametrize("send", ["delay", "apply_async", "delay_many"])
def test_enqueue_on_frozen_redis_honours_enqueue_timeout(frozen_app, own_redis, send):
    """Item 7: with Redis frozen, sending gives up after TASKQ_ENQUEUE_TIMEOUT (not the
    10 s socket timeout), says the message may be enqueued anyway and names its id; after
    SIGCONT the message is indeed there, under that id."""
    from tests.apps.basic import add

    pid = own_redis.proc.pid
    with frozen_app.app_context():
        add.delay(0, 0)  # a warm connection: the freeze, not connecting, is what is timed
        os.kill(pid, signal.SIGSTOP)
        try:
            begin = time.monotonic()
            with pytest.raises(BrokerConnectionError) as info:
                if send == "delay":
                    add.delay(1, 2)
                elif send == "apply_async":
                    add.apply_async((1, 2), countdown=0)
                else:
                    add.delay_many([(1, 2), (3, 4)])
            elapsed = time.monotonic() - begin
        finally:
            os.kill(pid, signal.SIGCONT)
    exc = info.value
    assert elapsed < 6, f"sending took {elapsed:.1f}s with TASKQ_ENQUEUE_TIMEOUT = 1"
    assert exc.maybe_sent
    assert "may be enqueued anyway" in str(exc)
    expected = len(exc.task_ids)
    assert expected == (2 if send == "delay_many" else 1)
    if send != "delay_many":
        assert exc.task_id == exc.task_ids[0]
        assert exc.task_id in str(exc)
    client = own_redis.client()
    from tests.conftest import wait_until

    wait_until(
        lambda: set(exc.task_ids) <= set(_stream_ids(client)),
        message="the timed-out messages in the stream after SIGCONT",
    )


def test_resend_with_the_task_id_from_the_error(frozen_app, own_redis):
    """Item 7: the id carried by the error can be reused by the retry, so both copies (if
    the first was enqueued after all) answer to one AsyncResult."""
    from tests.apps.basic import add

    pid = own_redis.proc.pid
    with frozen_app.app_context():
        add.delay(0, 0)
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(BrokerConnectionError) as info:
                add.delay(1, 2)
        finally:
            os.kill(pid, signal.SIGCONT)
        result = add.apply_async((1, 2), task_id=info.value.task_id)
    assert result.id == info.value.task_id
    assert _stream_ids(own_redis.client()).count(result.id) == 2


def test_enqueue_on_frozen_redis_with_a_fresh_connection(frozen_app, own_redis, freeze):
    """Item 7: connecting (and redis-py's handshake) to a frozen Redis is bounded too."""
    from tests.apps.basic import add

    with frozen_app.app_context():
        begin = time.monotonic()
        with pytest.raises(BrokerConnectionError) as info:
            add.delay(1, 2)
        elapsed = time.monotonic() - begin
    assert elapsed < 6, f"sending took {elapsed:.1f}s with TASKQ_ENQUEUE_TIMEOUT = 1"
    assert info.value.task_id


def test_get_on_frozen_redis_honours_its_timeout(frozen_app, own_redis):
    """Item 7: ``get(timeout=2)`` on a frozen Redis raises flask-taskq's TimeoutError
    after about 2 s, not redis-py's after the 10 s socket timeout."""
    from tests.apps.basic import add

    pid = own_redis.proc.pid
    with frozen_app.app_context():
        result = add.delay(1, 2)  # no worker: it stays PENDING
        for frozen_at in ("before", "during"):
            if frozen_at == "before":
                os.kill(pid, signal.SIGSTOP)
            begin = time.monotonic()
            try:
                if frozen_at == "during":  # freeze while get() is blocked in BLMOVE
                    import threading

                    threading.Timer(0.5, os.kill, (pid, signal.SIGSTOP)).start()
                with pytest.raises((TaskTimeoutError, BrokerConnectionError)):
                    result.get(timeout=2)
                elapsed = time.monotonic() - begin
            finally:
                os.kill(pid, signal.SIGCONT)
            assert elapsed < 8, f"get(timeout=2) took {elapsed:.1f}s ({frozen_at})"


def test_get_on_stopped_redis_raises_broker_connection_error(frozen_app, own_redis):
    """Item 7: with Redis gone, ``get`` retries until its timeout, then raises
    flask-taskq's BrokerConnectionError (not a redis-py error)."""
    from tests.apps.basic import add

    with frozen_app.app_context():
        result = add.delay(1, 2)
        own_redis.stop()
        with pytest.raises(BrokerConnectionError):
            result.get(timeout=1)
        with pytest.raises(BrokerConnectionError):
            result.get()


# -- item 11: the dashboard without SECRET_KEY ----------------------------------------------
def test_dashboard_works_without_secret_key(redis_url):
    """Item 11: an app without SECRET_KEY gets the dashboard (not a 500), and its actions
    are protected by a CSRF token that needs no session: a POST with the token of the
    browser's cookie works; without it, with another token or from a browser without the
    cookie, it is refused."""
    import re

    from flask_taskq.monitor import Monitor
    from tests.test_dashboard import AUTH
    from tests.test_dashboard import create_app as dashboard_app

    app = dashboard_app(TASKQ_BROKER_URL=redis_url, SECRET_KEY=None)
    assert not app.secret_key
    mon = Monitor(app.extensions["taskq"].store.monitor)
    client = app.test_client()
    for page in ("/taskq/", "/taskq/queues"):
        assert client.get(page, headers=AUTH).status_code == 200
    page = client.get("/taskq/queues", headers=AUTH)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)
    cookie = client.get_cookie("taskq_csrf", path="/taskq/")
    assert cookie is not None and cookie.value == token
    assert cookie.http_only and cookie.same_site == "Strict"

    pause = {"queue": "reports"}
    refused = [
        client.post("/taskq/queues/pause", data=pause, headers=AUTH),
        client.post("/taskq/queues/pause", data={**pause, "csrf_token": "x" * 43}, headers=AUTH),
        app.test_client().post(
            "/taskq/queues/pause", data={**pause, "csrf_token": token}, headers=AUTH
        ),
    ]
    assert [r.status_code for r in refused] == [400, 400, 400]
    assert mon.paused() == set()

    done = client.post("/taskq/queues/pause", data={**pause, "csrf_token": token}, headers=AUTH)
    assert done.status_code == 303
    assert mon.paused() == {"reports"}
    # the action's notice is shown once on the next page, without a session
    assert "Paused queue" in client.get("/taskq/queues", headers=AUTH).text
    assert "Paused queue" not in client.get("/taskq/queues", headers=AUTH).text
    # the token may come in the header instead
    resumed = client.post(
        "/taskq/queues/resume", data=pause, headers={**AUTH, "X-CSRF-Token": token}
    )
    assert resumed.status_code == 303
    assert mon.paused() == set()


# -- item 10: workflow steps when Redis goes away under a worker ----------------------------
class PersistentRedis(RedisServer):
    """A redis-server that keeps its data across a restart (AOF, fsync on every write), so
    the test can take Redis away under a worker without losing the workflow's state."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def start(self) -> None:
        import subprocess

        from tests.conftest import _pings, redis_argv, wait_until

        self.proc = subprocess.Popen(
            redis_argv(
                self.port, "--dir", self.directory, "--appendonly", "yes", "--appendfsync", "always"
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), message=f"redis-server on port {self.port}")


@pytest.fixture
def persistent_redis(tmp_path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(str(tmp_path))
    server.start()
    yield server
    server.stop()


def test_chord_fires_once_when_redis_is_away_as_the_last_member_ends(
    persistent_redis, start_worker, tmp_path, monkeypatch
):
    """Item 10: Redis is unreachable at the moment the last header task of a chord
    finishes, so recording the member fails. The step is retried (not logged and dropped
    with the message acked): once Redis is back, the callback runs, exactly once."""
    from flask_taskq import chord
    from tests.apps.client_faults import create_app, member, total
    from tests.conftest import wait_until

    server = persistent_redis
    monkeypatch.setenv("TASKQ_BROKER_URL", server.url)
    app = create_app()
    worker = start_worker(
        "-P", "threads", "-c", "2", app="tests.apps.client_faults:create_app", broker_url=server.url
    )
    flag = tmp_path / "release"
    with app.app_context():
        result = chord([member.s(1), member.s(2, flag=str(flag))], total.s(token="t")).delay()
        client = server.client()
        wait_until(
            lambda: (
                (tmp_path / "release.started").exists()
                and any(client.hlen(k) == 1 for k in client.scan_iter("taskq:chord:*"))
            ),
            message="the first member recorded and the second running",
        )
        server.stop()  # SIGKILL: with appendfsync always nothing written is lost
        flag.touch()  # the last member now finishes while Redis is away
        worker.wait_for_log("Could not continue the workflow")
        server.start()
        assert result.get(timeout=30) == 3
        client = server.client()
        # every message acknowledged: nothing left that could run the callback again
        wait_until(
            lambda: (
                not any(
                    client.xlen(k)
                    for k in client.scan_iter("taskq:{*}:p*")
                    if client.type(k) == b"stream"
                )
            ),
            message="every stream empty (all messages acknowledged)",
        )
        assert int(client.hget("cf:callback_runs", "t") or 0) == 1
    assert worker.proc.poll() is None


def test_chord_step_left_undone_by_a_stopping_worker_is_redone(
    persistent_redis, start_worker, tmp_path, monkeypatch
):
    """Item 10: when the worker is stopped while Redis is still away, the step cannot be
    retried any longer: the member's message is then not acknowledged, so another worker
    runs it again once Redis is back and the callback runs exactly once."""
    from flask_taskq import chord
    from tests.apps.client_faults import create_app, member, total
    from tests.conftest import wait_until

    server = persistent_redis
    monkeypatch.setenv("TASKQ_BROKER_URL", server.url)
    app = create_app()
    env = {"TASKQ_VISIBILITY_TIMEOUT": "1"}
    app_name = "tests.apps.client_faults:create_app"
    first = start_worker("-P", "threads", "-c", "2", app=app_name, broker_url=server.url, env=env)
    flag = tmp_path / "release"
    with app.app_context():
        result = chord([member.s(1), member.s(2, flag=str(flag))], total.s(token="s")).delay()
        client = server.client()
        wait_until(
            lambda: (
                (tmp_path / "release.started").exists()
                and any(client.hlen(k) == 1 for k in client.scan_iter("taskq:chord:*"))
            ),
            message="the first member recorded and the second running",
        )
        server.stop()
        flag.touch()
        first.wait_for_log("Could not continue the workflow")
        first.signal(signal.SIGTERM)
        first.wait(timeout=30)
        assert "its message is not acknowledged and will be delivered again" in first.log
        server.start()
        start_worker("-P", "threads", "-c", "2", app=app_name, broker_url=server.url, env=env)
        assert result.get(timeout=30) == 3
        client = server.client()
        wait_until(
            lambda: (
                not any(
                    client.xlen(k)
                    for k in client.scan_iter("taskq:{*}:p*")
                    if client.type(k) == b"stream"
                )
            ),
            message="every stream empty (all messages acknowledged)",
        )
        assert int(client.hget("cf:callback_runs", "s") or 0) == 1
