"""Per-key concurrency limits (issue 20 item 3): the checks made when a task is declared,
the store's slots on Redis and in memory, and real ``flask taskq worker`` processes on a
real redis-server (limits across workers, other work meanwhile, a SIGKILLed holder,
``inspect concurrency``, a key that fails at run time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from flask_taskq import ConcurrencyKeyError, TaskQueue
from flask_taskq.concurrency import check_config
from flask_taskq.keys import Keys
from flask_taskq.store.concurrency import ConcurrencyStore, KeyState, Parked
from flask_taskq.store.memory.concurrency import MemoryConcurrencyStore
from flask_taskq.store.redis.concurrency import RedisConcurrencyStore
from tests.conftest import ROOT, wait_until

APP = "tests.apps.concurrency_app:create_app"


# -- declaring a task ------------------------------------------------------------------------
def test_a_key_naming_no_argument_is_refused_at_decoration():
    tq = TaskQueue()
    with pytest.raises(ConcurrencyKeyError, match=r"'customer' .* not one of its arguments"):

        @tq.task(concurrency_key="customer", concurrency_limit=2)
        def sync(customer_id: str) -> None: ...


def test_a_key_without_a_limit_and_a_bad_limit_are_refused():
    tq = TaskQueue()
    with pytest.raises(ConcurrencyKeyError, match="no concurrency_limit"):

        @tq.task(concurrency_key="x")
        def one(x: int) -> None: ...

    with pytest.raises(ValueError, match="integer >= 1"):

        @tq.task(concurrency_key="x", concurrency_limit=0)
        def two(x: int) -> None: ...

    with pytest.raises(ConcurrencyKeyError, match="needs account, which is not one"):

        @tq.task(concurrency_key=lambda account, **kw: account, concurrency_limit=1)
        def four(customer: str) -> None: ...

    with pytest.raises(ConcurrencyKeyError, match="argument name or a callable"):

        @tq.task(concurrency_key=3, concurrency_limit=1)
        def three(x: int) -> None: ...


def test_a_string_key_is_found_by_position_or_by_name_and_kwargs_functions_pass():
    from flask_taskq.concurrency import key_function

    def fn(self: Any, account: str, n: int = 0) -> None: ...

    find = key_function("t", fn, True, "account")  # bound: ``self`` is not an argument
    assert find(("a1",), {}) == "a1"
    assert find((), {"account": "a2"}) == "a2"
    with pytest.raises(ConcurrencyKeyError, match=r"does not match .*'account'"):
        find((), {"n": 1})

    by_call = key_function("t", fn, True, lambda account, **kw: f"{account}/{kw['n']}")
    assert by_call(("a1",), {}) == "a1/0"  # positional arguments by name, defaults too
    assert key_function("t", fn, True, lambda n: n)(("a", 4), {}) == "4"

    def loose(**kwargs: Any) -> None: ...

    assert key_function("t", loose, False, "anything")((), {"anything": 5}) == "5"


def test_config_limits_are_checked():
    check_config({"a.b": 2, "c.d": {"key": "customer", "limit": 1}})
    with pytest.raises(ValueError, match="integer >= 1"):
        check_config({"a.b": 0})
    with pytest.raises(ValueError, match="must be a limit or"):
        check_config({"a.b": {"key": "x"}})


# -- the store, on Redis and in memory ---------------------------------------------------
@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[ConcurrencyStore]:
    if request.param == "memory":
        import threading

        yield MemoryConcurrencyStore(threading.RLock())
        return
    url = request.getfixturevalue("redis_url")
    yield RedisConcurrencyStore(redis.Redis.from_url(url), Keys())


def _msg(task_id: str) -> Parked:
    return Parked(task_id, "default", 5, f"body of {task_id}".encode())


def test_store_grants_parks_and_hands_a_freed_slot_to_the_oldest_waiter(store):
    assert store.acquire("t:k", 2, 30, _msg("a")).granted is True
    assert store.acquire("t:k", 2, 30, _msg("b")).granted is True
    parked = store.acquire("t:k", 2, 30, _msg("c"))
    assert (parked.granted, parked.holders, parked.waiting) == (False, 2, 1)
    assert store.acquire("t:k", 2, 30, _msg("d")).granted is False
    assert store.acquire("t:other", 2, 30, _msg("e")).granted is True  # keys are apart
    # a duplicate delivery of a parked message stays parked, at its place
    assert store.acquire("t:k", 2, 30, _msg("c")).waiting == 2

    freed = store.release("t:k", "a", 30)
    assert [m.task_id for m in freed.woken] == ["c"]
    assert freed.woken[0] == _msg("c")
    assert (freed.holders, freed.waiting) == (2, 2)  # c holds a reserved slot, d waits
    assert store.state("t:k").holders == 2
    store.woken("t:k", ["c"])
    assert store.state("t:k").waiting == 1
    # the woken message arrives: its slot was kept for it, a newcomer is parked
    assert store.acquire("t:k", 2, 30, _msg("c")).granted is True
    assert store.acquire("t:k", 2, 30, _msg("f")).granted is False
    assert [m.task_id for m in store.release("t:k", "b", 30).woken] == ["d"]  # oldest first
    assert [m.task_id for m in store.release("t:k", "c", 30).woken] == ["f"]
    store.woken("t:k", ["d", "f"])
    assert store.state("t:k") == KeyState("t:k", 2, 2, 0)


def test_store_frees_the_slot_of_an_expired_holder(store):
    assert store.acquire("t:k", 1, 0.2, _msg("dead")).granted is True
    assert store.acquire("t:k", 1, 30, _msg("next")).granted is False
    assert store.wake("t:k", 30).woken == []  # the holder's lease still runs
    time.sleep(0.3)
    woken = store.wake("t:k", 30).woken
    assert [m.task_id for m in woken] == ["next"]


def test_store_wakes_again_a_waiter_whose_waker_died_before_confirming(store):
    store.acquire("t:k", 1, 30, _msg("a"))
    store.acquire("t:k", 1, 30, _msg("b"))
    assert [m.task_id for m in store.release("t:k", "a", 0.2).woken] == ["b"]
    # no send, no confirmation: once the claim runs out, b is woken again (at-least-once)
    time.sleep(0.3)
    assert [m.task_id for m in store.wake("t:k", 30).woken] == ["b"]


def test_store_renews_held_slots_only(store):
    store.acquire("t:k", 1, 0.3, _msg("a"))
    assert store.renew("t:k", ["a", "ghost"], 30) == 1
    time.sleep(0.4)
    assert store.acquire("t:k", 1, 30, _msg("b")).granted is False  # a still holds


def test_store_notes_and_forgets_idle_keys(store):
    store.note("t:k")
    mark = store.noted()["t:k"]
    store.note("t:k")
    store.forget("t:k", mark)  # noted again since: kept
    assert "t:k" in store.noted()
    store.forget("t:k", store.noted()["t:k"])
    assert store.noted() == {}


# -- real workers on Redis ---------------------------------------------------------------
@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return {"TEST_REDIS_URL": redis_url, "TASKQ_RESULT_BACKEND": redis_url}


@pytest.fixture
def capp(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TASKQ_BROKER_URL", redis_url)
    monkeypatch.setenv("TASKQ_RESULT_BACKEND", redis_url)
    from tests.apps.concurrency_app import create_app

    return create_app()


def _inspect(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKQ_BROKER_URL": redis_url, "TASKQ_RESULT_BACKEND": redis_url}
    cmd = [sys.executable, "-m", "flask", "--app", APP, "taskq", "inspect", "concurrency", *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_twenty_tasks_on_two_workers_never_exceed_the_limit_per_key(
    capp, start_worker, env, r: redis.Redis
):
    from tests.apps.concurrency_app import work

    for _ in range(2):
        start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    with capp.app_context():
        results = [work.delay(f"c{i % 2}", f"t{i}", 0.2) for i in range(20)]
    wait_until(lambda: r.llen("test:done") == 20, 60, message="20 tasks done")
    highest = {k: int(v) for k, v in r.hgetall("test:max").items()}
    assert set(highest) == {"c0", "c1"} and max(highest.values()) <= 2, highest
    assert r.llen("test:started") == 20  # each ran once
    with capp.app_context():
        assert sorted(res.get(timeout=10) for res in results) == sorted(f"t{i}" for i in range(20))
    wait_until(lambda: not r.keys("taskq:concurrency:*"), 10, message="keys cleaned up")


def test_prefork_children_keep_the_limit(capp, start_worker, env, r: redis.Redis):
    from tests.apps.concurrency_app import work

    start_worker("-P", "prefork", "-c", "3", app=APP, env=env)
    with capp.app_context():
        for i in range(8):
            work.delay("fork", f"t{i}", 0.2)
    wait_until(lambda: r.llen("test:done") == 8, 60, message="8 tasks done")
    assert int(r.hget("test:max", "fork")) <= 2
    assert r.llen("test:started") == 8


def test_a_saturated_key_leaves_the_worker_free_for_other_tasks_and_inspect_shows_it(
    capp, start_worker, env, r: redis.Redis, redis_url: str
):
    from tests.apps.concurrency_app import other, work

    r.set("test:block", 1)
    start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    with capp.app_context():
        for i in range(6):
            work.delay("busy", f"w{i}")
    wait_until(lambda: r.llen("test:started") == 2, 20, message="two holders running")
    with capp.app_context():
        for i in range(3):
            other.delay(f"o{i}")
    # the 4 parked ones hold no thread: the other tasks run while the holders still do
    wait_until(lambda: r.llen("test:other") == 3, 20, message="the other tasks")
    assert r.llen("test:started") == 2

    def at_limit() -> Any:
        out = _inspect(redis_url, "--json")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)["concurrency"]
        return rows if rows and rows[0]["waiting"] == 4 else None

    rows = wait_until(at_limit, 20, message="inspect showing the waiting tasks")
    assert rows == [
        {
            "task": "tests.apps.concurrency_app.work",
            "key": "busy",
            "limit": 2,
            "running": 2,
            "waiting": 4,
        }
    ]
    text = _inspect(redis_url)
    assert "tests.apps.concurrency_app.work" in text.stdout and "busy" in text.stdout
    from tests.apps.concurrency_app import create_app

    dashboard = create_app(
        TASKQ_DASHBOARD=True, TASKQ_DASHBOARD_AUTH=lambda request: True
    ).test_client()
    page = dashboard.get("/taskq/concurrency")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'data-key="tests.apps.concurrency_app.work:busy"' in html
    assert "<td>4</td>" in html  # waiting
    live = dashboard.get("/taskq/api/concurrency").get_json()
    assert "busy" in live["regions"]["concurrency_keys"]
    r.delete("test:block")
    wait_until(lambda: r.llen("test:done") == 6, 30, message="all six done")
    assert int(r.hget("test:max", "busy")) == 2
    wait_until(
        lambda: "No concurrency key" in _inspect(redis_url).stdout, 20, message="inspect empty"
    )


def test_a_sigkilled_holder_frees_its_slot_and_the_waiting_tasks_run(
    capp, start_worker, env, r: redis.Redis
):
    from tests.apps.concurrency_app import hold

    short = {**env, "TASKQ_VISIBILITY_TIMEOUT": "3"}
    r.set("test:block", 1)
    doomed = start_worker("-P", "threads", "-c", "2", app=APP, env=short)
    with capp.app_context():
        first = hold.delay("acme", "first")
    wait_until(lambda: r.llen("test:started") == 1, 20, message="the holder started")
    with capp.app_context():
        hold.delay("acme", "second")
        hold.delay("acme", "third")
    keys = Keys().concurrency("tests.apps.concurrency_app.hold:acme")
    wait_until(lambda: r.zcard(keys[1]) == 2, 20, message="two parked")
    doomed.kill_group()
    # Its redelivery, revoked, takes no slot: only the lease running out frees it, and a
    # worker's slot keeper must notice and wake the waiters (no task of the key ends).
    with capp.app_context():
        first.revoke()
    r.delete("test:block")
    start_worker("-P", "threads", "-c", "2", app=APP, env=short)
    wait_until(
        lambda: {"second", "third"} <= set(r.lrange("test:done", 0, -1)),
        60,
        message="the waiting tasks ran after the holder died",
    )
    assert r.lrange("test:done", 0, -1) == ["second", "third"]  # in order, not first


def test_a_key_that_fails_at_run_time_fails_the_task_and_the_worker_goes_on(
    capp, start_worker, env, r: redis.Redis
):
    from tests.apps.concurrency_app import badkey, other

    worker = start_worker("-P", "threads", "-c", "2", app=APP, env=env)
    with capp.app_context():
        bad = badkey.delay({"name": "no id"})
        with pytest.raises(ConcurrencyKeyError, match="concurrency_key raised KeyError"):
            bad.get(timeout=20)
        assert bad.state == "FAILURE"
        assert other.delay("after").get(timeout=20) == "after"
    assert worker.proc.poll() is None


# -- memory:// ---------------------------------------------------------------------------
def test_memory_transport_keeps_the_limit_in_process(monkeypatch):
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    from tests.apps import concurrency_app
    from tests.apps.concurrency_app import create_app, work

    memory = concurrency_app.memory
    memory.__init__()  # type: ignore[misc]
    app = create_app(TASKQ_BROKER_URL="memory://", TASKQ_RESULT_BACKEND="memory://")
    with app.app_context():
        results = [work.delay("m", f"t{i}", 0.05) for i in range(8)]
        assert sorted(res.get(timeout=30) for res in results) == sorted(f"t{i}" for i in range(8))
    assert memory.max["m"] <= 2
    assert len(memory.started) == 8


# -- RabbitMQ: the store is the Redis beside it -----------------------------------------
RABBIT = ("127.0.0.1", 5672)


def _no_rabbit() -> str | None:
    import shutil
    import socket

    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl not found"
    try:
        socket.create_connection(RABBIT, timeout=1).close()
        import pika  # noqa: F401
    except (OSError, ImportError) as exc:
        return f"RabbitMQ or pika unavailable ({exc})"
    return None


@pytest.fixture
def amqp_env(redis_url: str) -> Iterator[dict[str, str]]:
    import uuid

    if _no_rabbit():
        pytest.skip(str(_no_rabbit()))
    vhost = f"taskq-test-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", vhost)
    ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield {
        "TASKQ_BROKER_URL": f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{vhost}",
        "TASKQ_STORE_URL": redis_url,
        "TASKQ_RESULT_BACKEND": redis_url,
        "TEST_REDIS_URL": redis_url,
    }
    ctl("delete_vhost", vhost)


def test_rabbitmq_workers_keep_the_limit_through_the_redis_store(
    amqp_env, start_worker, r: redis.Redis, monkeypatch
):
    for name, value in amqp_env.items():
        monkeypatch.setenv(name, value)
    from tests.apps.concurrency_app import create_app, work

    app = create_app()
    for _ in range(2):
        start_worker(
            "-P",
            "threads",
            "-c",
            "3",
            app=APP,
            env=amqp_env,
            broker_url=amqp_env["TASKQ_BROKER_URL"],
        )
    with app.app_context():
        for i in range(8):
            work.delay("rabbit", f"t{i}", 0.2)
    wait_until(lambda: r.llen("test:done") == 8, 60, message="8 tasks done")
    assert int(r.hget("test:max", "rabbit")) <= 2
    assert r.llen("test:started") == 8
    app.extensions["taskq"].broker.close()


def test_config_limit_overrides_the_task_s_own(monkeypatch):
    monkeypatch.delenv("TEST_REDIS_URL", raising=False)
    from tests.apps import concurrency_app
    from tests.apps.concurrency_app import create_app, work

    memory = concurrency_app.memory
    memory.__init__()  # type: ignore[misc]
    app = create_app(
        TASKQ_BROKER_URL="memory://",
        TASKQ_RESULT_BACKEND="memory://",
        TASKQ_CONCURRENCY_LIMITS={work.name: 1},
    )
    with app.app_context():
        results = [work.delay("solo", f"t{i}", 0.05) for i in range(6)]
        assert sorted(res.get(timeout=30) for res in results) == sorted(f"t{i}" for i in range(6))
    assert memory.max["solo"] == 1


def test_rabbitmq_without_a_store_fails_limited_tasks_with_a_reason(
    amqp_env, start_worker, monkeypatch
):
    env = {**amqp_env, "TASKQ_STORE_URL": "", "TASKQ_RESULT_BACKEND": ""}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from tests.apps.concurrency_app import create_app, other, work

    app = create_app()
    worker = start_worker(
        "-P", "threads", "-c", "2", app=APP, env=env, broker_url=amqp_env["TASKQ_BROKER_URL"]
    )
    with app.app_context():
        work.delay("nostore", "t0")
        other.delay("plain")
    worker.wait_for_log("concurrency limits need a store shared by every worker")
    worker.wait_for_log(": 'plain'")  # the plain task ran
    assert worker.proc.poll() is None
    app.extensions["taskq"].broker.close()


def test_revoked_tasks_take_no_slot_and_parked_ones_are_revoked_in_turn(
    capp, start_worker, env, r: redis.Redis
):
    from tests.apps.concurrency_app import work

    r.set("test:block", 1)
    start_worker("-P", "threads", "-c", "4", app=APP, env=env)
    keys = Keys().concurrency(f"{work.name}:rev")
    with capp.app_context():
        for i in range(2):
            work.delay("rev", f"h{i}")
        wait_until(lambda: r.llen("test:started") == 2, 20, message="two holders")
        parked = work.delay("rev", "parked")
        wait_until(lambda: r.zcard(keys[1]) == 1, 20, message="one parked")
        parked.revoke()
        early = work.AsyncResult("revoked-before-sent")
        early.revoke()
        work.apply_async(("rev", "early"), task_id="revoked-before-sent")
        # revoked before it ran: REVOKED at once though the key is full, never parked
        wait_until(lambda: early.state == "REVOKED", 20, message="early revoked")
        assert r.zcard(keys[1]) == 1
        r.delete("test:block")
        wait_until(lambda: parked.state == "REVOKED", 20, message="parked one revoked")
    wait_until(lambda: r.llen("test:done") == 2, 20, message="holders done")
    assert "parked" not in r.lrange("test:started", 0, -1)
