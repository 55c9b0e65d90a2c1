"""RabbitMQ as the broker: real RabbitMQ (a vhost of this module, created and deleted with
``rabbitmqctl``), a real redis-server as the store, real ``flask taskq worker`` processes.
Each test has its own TASKQ_KEY_PREFIX, hence its own RabbitMQ queues."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.amqp_fixtures import RABBIT, ctl, rabbit_problem
from tests.conftest import ROOT, wait_until

APP = "tests.apps.amqp_app:create_app"

pytestmark = pytest.mark.skipif(rabbit_problem() is not None, reason=str(rabbit_problem()))


def _ctl(*args: str) -> None:
    ctl(*args)


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    """A RabbitMQ vhost of this module, deleted afterwards (never ``/``)."""
    name = f"taskq-test-{uuid.uuid4().hex[:8]}"
    _ctl("add_vhost", name)
    _ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    _ctl("delete_vhost", name)


@pytest.fixture
def amqp_env(vhost: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment of the test's app and workers: broker, store and a prefix of its own."""
    env = {
        "TASKQ_BROKER_URL": f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{vhost}",
        "TASKQ_STORE_URL": redis_url,
        "TASKQ_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def aapp(amqp_env: dict[str, str]):
    from tests.apps.amqp_app import create_app

    app = create_app()
    app.config["TASKQ_KEY_PREFIX"] = amqp_env["TASKQ_KEY_PREFIX"]
    yield app
    app.extensions["taskq"].broker.close()


@pytest.fixture
def start(start_worker, amqp_env):
    def go(*args: str, env: dict[str, str] | None = None, **kw):
        return start_worker(
            *args,
            app=APP,
            broker_url=amqp_env["TASKQ_BROKER_URL"],
            env={**amqp_env, **(env or {})},
            **kw,
        )

    return go


@pytest.fixture
def store(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def _broker(app):
    return app.extensions["taskq"].broker


def test_round_trip_with_result(aapp, start, store):
    from tests.apps.amqp_app import mark

    start("-P", "threads", "-c", "2")
    with aapp.app_context():
        assert mark.delay("a").get(timeout=20) == "a"
        results = [mark.delay(f"m{i}") for i in range(20)]
        assert [r.get(timeout=20) for r in results] == [f"m{i}" for i in range(20)]
    assert store.hget("amqp:runs", "a") == "1"


def test_broker_is_the_amqp_one_and_results_live_in_the_store(aapp, amqp_env):
    from flask_taskq.broker.amqp.broker import AMQPBroker

    state = aapp.extensions["taskq"]
    assert isinstance(state.broker, AMQPBroker)
    assert state.broker.side is not None
    assert aapp.config["TASKQ_RESULT_BACKEND"] == amqp_env["TASKQ_STORE_URL"]
    assert state.broker.queue_name("default") == f"{amqp_env['TASKQ_KEY_PREFIX']}.default"


def test_priorities_higher_first(aapp, start, store):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        for p in (1, 5, 9, 0, 7):
            mark.apply_async((f"p{p}",), priority=p)
    start("-P", "solo", "--prefetch", "1")
    wait_until(lambda: store.llen("amqp:order") == 5, timeout=20, message="five runs")
    assert store.lrange("amqp:order", 0, -1) == ["p9", "p7", "p5", "p1", "p0"]


def test_countdown_waits_in_the_store_then_runs_once(aapp, start, store):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        res = mark.apply_async(("later",), countdown=1.5)
        stats = _broker(aapp).queue_stats(["default"])["default"]
        assert (stats.ready, stats.delayed) == (0, 1)
        start("-P", "solo")
        assert res.get(timeout=20) == "later"
    assert store.hget("amqp:runs", "later") == "1"
    assert _broker(aapp).queue_stats(["default"])["default"].delayed == 0


def test_retries_go_through_the_store(aapp, start, store):
    from tests.apps.amqp_app import flaky

    start("-P", "solo")
    with aapp.app_context():
        assert flaky.delay("f", 2).get(timeout=20) == {"attempt": 3, "retries": 2}
    assert store.hget("amqp:attempts", "f") == "3"


def test_sigkilled_worker_message_is_redelivered_and_completed_once(aapp, start, store):
    from tests.apps.amqp_app import mark

    first = start("-P", "solo")
    with aapp.app_context():
        res = mark.delay("k", 2.0)
        wait_until(lambda: store.hget("amqp:started", "k") == "1", timeout=20)
        first.kill_group()
        start("-P", "solo")
        assert res.get(timeout=30) == "k"
    assert store.hget("amqp:started", "k") == "2"
    assert store.hget("amqp:runs", "k") == "1"


def test_signed_message_of_a_sigkilled_worker_runs_again(aapp, start, store, monkeypatch):
    from tests.apps.amqp_app import create_app, mark

    monkeypatch.setenv("TASKQ_SIGNING_KEY", "k" * 32)
    app = create_app()  # signs what it sends
    first = start("-P", "solo", env={"TASKQ_SIGNING_KEY": "k" * 32})
    with app.app_context():
        res = mark.delay("signed", 2.0)
        wait_until(lambda: store.hget("amqp:started", "signed") == "1", timeout=20)
        first.kill_group()
        start("-P", "solo", env={"TASKQ_SIGNING_KEY": "k" * 32})
        assert res.get(timeout=30) == "signed"  # a redelivery, not a replay
    assert store.hget("amqp:runs", "signed") == "1"
    assert _broker(app).dead_letter_count("default") == 0
    _broker(app).close()


def test_task_that_crashes_its_worker_goes_to_the_dead_letter_store(aapp, start, store):
    from tests.apps.amqp_app import crash

    start("-P", "prefork", "-c", "1", env={"TASKQ_MAX_DELIVERIES": "2"})
    with aapp.app_context():
        crash.delay("x")
    broker = _broker(aapp)
    wait_until(lambda: broker.dead_letter_count("default") == 1, timeout=40)
    [row] = broker.dead_letters("default")
    assert "started 2 times without finishing" in str(row["reason"])
    assert store.hget("amqp:crashes", "x") == "2"
    # the same CLI as on Redis reads it, and requeues it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", APP, "taskq", "dead-letter", "list"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert str(row["entry_id"]) in out.stdout
    assert broker.purge_dead("default") == 1


def test_undecodable_message_is_dead_lettered(aapp, start, amqp_env):
    import pika

    broker = _broker(aapp)
    broker.ensure_groups(["default"])
    conn = pika.BlockingConnection(pika.URLParameters(amqp_env["TASKQ_BROKER_URL"]))
    conn.channel().basic_publish("", broker.queue_name("default"), b"\x00not a message")
    conn.close()
    start("-P", "solo")
    wait_until(lambda: broker.dead_letter_count("default") == 1, timeout=20)
    [row] = broker.dead_letters("default")
    assert row["body"] == b"\x00not a message"
    assert row["task"] == "?"


def test_prefetch_one_leaves_the_rest_in_rabbitmq(aapp, start, store):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        for i in range(4):
            mark.delay(f"s{i}", 1.0)
    start("-P", "solo", "--prefetch", "1")
    wait_until(lambda: store.hget("amqp:started", "s0") == "1", timeout=20)
    # basic.qos 1: RabbitMQ keeps the other three for any worker
    assert _broker(aapp).queue_length("default") == 3
    wait_until(lambda: store.llen("amqp:order") == 4, timeout=30)


def test_routes_and_dash_q(aapp, start, store):
    from tests.apps.amqp_app import add, mark

    start("-P", "solo", "-Q", "default")
    broker = _broker(aapp)
    with aapp.app_context():
        res = add.delay(2, 3)  # routed to "math"
        assert mark.delay("after").get(timeout=20) == "after"
        assert broker.queue_length("math") == 1
        start("-P", "solo", "-Q", "math")
        assert res.get(timeout=20) == 5
    assert broker.queue_length("math") == 0
    assert {"default", "math"} <= broker.known_queues()


def test_worker_reconnects_after_connections_are_closed(aapp, start, store, vhost):
    from tests.apps.amqp_app import mark

    worker = start("-P", "solo")
    with aapp.app_context():
        assert mark.delay("before").get(timeout=20) == "before"
        _ctl("close_all_connections", "-p", vhost, "test")
        # the app's own connection was closed too: .delay() reconnects
        results = [mark.delay(f"r{i}") for i in range(5)]
        assert [r.get(timeout=40) for r in results] == [f"r{i}" for i in range(5)]
    # the outage lines name RabbitMQ, not the store
    worker.wait_for_log("RabbitMQ answers again")
    assert "Redis unreachable" not in worker.log and "Redis answers again" not in worker.log


def test_without_a_store_plain_tasks_run_and_the_missing_features_are_named(
    start, amqp_env, monkeypatch
):
    monkeypatch.delenv("TASKQ_STORE_URL")
    worker = start("-P", "solo", "-Q", "math", env={"TASKQ_STORE_URL": ""})
    assert "no Redis store" in worker.log
    from tests.apps.amqp_app import add, create_app

    app = create_app()
    broker = _broker(app)
    assert broker.side is None
    assert app.config["TASKQ_RESULT_BACKEND"] is None
    with app.app_context():
        add.delay(1, 2)
        add.apply_async((3, 4), countdown=1)  # waits in RabbitMQ: taskq-wait.math
    assert _ready(broker, broker.wait_queue_name("math")) == 1
    wait_until(
        lambda: (
            _ready(broker, broker.wait_queue_name("math")) == 0 and broker.queue_length("math") == 0
        ),
        timeout=20,
        message="the delayed task moved into its queue and run",
    )
    # poison goes to the RabbitMQ queue taskq-dead.math
    broker._call(lambda ch: ch.basic_publish("", broker.queue_name("math"), b"\x00junk"))
    wait_until(lambda: _ready(broker, broker.dead_queue_name("math")) == 1, timeout=20)
    broker.close()


def _ready(broker, name: str) -> int:
    """Messages ready in the RabbitMQ queue ``name`` (0 when there is none)."""
    import pika

    def count(channel):
        spare = channel.connection.channel()
        try:
            return spare.queue_declare(queue=name, passive=True).method.message_count
        except pika.exceptions.ChannelClosedByBroker:
            return 0
        finally:
            if spare.is_open:
                spare.close()

    return broker._call(count)


def test_missing_extra_names_it():
    code = (
        "import sys; sys.modules['pika'] = None\n"
        "from flask_taskq.broker import broker_from_url\n"
        "broker_from_url('amqp://guest:guest@127.0.0.1/x')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "pip install 'flask-taskq[amqp]'" in out.stderr.strip().splitlines()[-1]


def test_sigterm_returns_unstarted_messages(aapp, start, store):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        for i in range(3):
            mark.delay(f"g{i}", 0.5)
    worker = start("-P", "solo", "--prefetch", "3")
    wait_until(lambda: store.hget("amqp:started", "g0") == "1", timeout=20)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    start("-P", "solo")
    wait_until(lambda: store.llen("amqp:order") >= 3 and _runs(store) == 3, timeout=30)
    assert all(v == "1" for v in store.hgetall("amqp:runs").values())


PARK = {"TASKQ_AMQP_CONSUMER_TIMEOUT": "2", "TASKQ_VISIBILITY_TIMEOUT": "1.5"}


def _delayed(store: redis.Redis, amqp_env: dict[str, str]) -> int:
    from flask_taskq.keys import Keys

    return int(store.zcard(Keys(amqp_env["TASKQ_KEY_PREFIX"]).delayed("default")))


def test_long_task_is_parked_before_consumer_timeout_and_runs_once(aapp, start, store, amqp_env):
    from tests.apps.amqp_app import mark

    worker = start("-P", "solo", env=PARK)  # parks what it held for 1 s
    with aapp.app_context():
        res = mark.delay("long", 4.0)
        wait_until(lambda: _delayed(store, amqp_env) == 1, timeout=20, message="parked")
        assert store.hget("amqp:runs", "long") is None
        assert res.get(timeout=30) == "long"
    assert store.hget("amqp:started", "long") == "1"
    # the result is stored before the batched acknowledgement deletes the copy
    wait_until(lambda: _delayed(store, amqp_env) == 0, timeout=10, message="the copy deleted")
    assert "Parked 1 long-running task" in worker.log


def test_parked_task_that_retries_is_replaced_by_its_next_attempt(aapp, start, store, amqp_env):
    from tests.apps.amqp_app import slow_flaky

    worker = start("-P", "solo", env=PARK)
    with aapp.app_context():
        res = slow_flaky.delay("sf", 3.0)
        wait_until(lambda: _delayed(store, amqp_env) == 1, timeout=20, message="parked")
        assert res.get(timeout=30) == 2
    assert store.hget("amqp:attempts", "sf") == "2"
    wait_until(lambda: _delayed(store, amqp_env) == 0, timeout=10, message="the copy deleted")
    assert "Parked 1 long-running task" in worker.log


def test_parked_task_of_a_killed_worker_runs_again(aapp, start, store, amqp_env):
    from tests.apps.amqp_app import mark

    first = start("-P", "solo", env=PARK)
    with aapp.app_context():
        res = mark.delay("lost", 3.0)
        wait_until(lambda: _delayed(store, amqp_env) == 1, timeout=20, message="parked")
        first.kill_group()
        start("-P", "solo", env=PARK)
        assert res.get(timeout=40) == "lost"
    assert store.hget("amqp:started", "lost") == "2"
    wait_until(lambda: _delayed(store, amqp_env) == 0, timeout=10)


def test_prefork_supervisor_renews_the_parked_copy_of_a_child_holding_the_gil(
    aapp, start, store, amqp_env
):
    from flask_taskq.keys import Keys
    from tests.apps.amqp_app import park_then_hold_gil

    worker = start("-P", "prefork", "-c", "1", env=PARK)
    with aapp.app_context():
        # parked after 1 s; then the child's threads stop for 4 s, over twice the lease
        res = park_then_hold_gil.delay("gil", 1.5, 4)
        wait_until(lambda: _delayed(store, amqp_env) == 1, timeout=20, message="parked")
        # beside it, a worker that publishes and runs any parked copy that falls due
        start("-P", "solo", env=PARK)
        assert res.get(timeout=40) == "gil"
    assert store.hget("amqp:copies", "gil") == "1", worker.log  # renewed all along
    assert store.hget("amqp:started", "gil") == "1", worker.log
    wait_until(lambda: _delayed(store, amqp_env) == 0, timeout=10, message="the copy deleted")
    assert not store.keys(Keys(amqp_env["TASKQ_KEY_PREFIX"]).parked("*"))


def _runs(store: redis.Redis) -> int:
    return len(store.hgetall("amqp:runs"))


def test_amqp_broker_has_every_protocol_member():
    from flask_taskq.broker import Broker
    from flask_taskq.broker.amqp.broker import AMQPBroker
    from tests.test_broker_seam import _members

    missing = {n for n in _members(Broker) if not hasattr(AMQPBroker, n)}
    assert not missing, sorted(missing)


def test_delay_raises_broker_connection_error_when_rabbitmq_is_unreachable(amqp_env, monkeypatch):
    from flask_taskq import BrokerConnectionError
    from tests.apps.amqp_app import create_app, mark
    from tests.conftest import free_port

    monkeypatch.setenv("TASKQ_BROKER_URL", f"amqp://guest:guest@127.0.0.1:{free_port()}/")
    app = create_app()
    app.config["TASKQ_ENQUEUE_TIMEOUT"] = 1
    with app.app_context(), pytest.raises(BrokerConnectionError):
        mark.delay("never")
    app.extensions["taskq"].broker.close()


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_two_thousand_tasks_over_two_workers_each_run_exactly_once(
    start, store, amqp_env, monkeypatch, queue_type
):
    from tests.apps.amqp_app import create_app, mark

    monkeypatch.setenv("TASKQ_AMQP_QUEUE_TYPE", queue_type)
    aapp = create_app()
    with aapp.app_context():
        mark.delay_many([(f"n{i}",) for i in range(2000)])
    start("-P", "threads", "-c", "4")
    start("-P", "threads", "-c", "4")
    wait_until(lambda: store.hlen("amqp:runs") == 2000, timeout=120, message="2000 runs")
    runs = store.hgetall("amqp:runs")
    assert set(runs.values()) == {"1"}
    assert store.llen("amqp:order") == 2000
    _broker(aapp).close()


# -- quorum queues (TASKQ_AMQP_QUEUE_TYPE = "quorum") --------------------------------------
QUORUM = {"TASKQ_AMQP_QUEUE_TYPE": "quorum"}


@pytest.fixture
def qapp(amqp_env, monkeypatch):
    from tests.apps.amqp_app import create_app

    monkeypatch.setenv("TASKQ_AMQP_QUEUE_TYPE", "quorum")
    app = create_app()
    yield app
    _broker(app).close()


def _queue_types(vhost: str, prefix: str) -> dict[str, str]:
    rows = ctl("list_queues", "-p", vhost, "name", "type", "--no-table-headers").splitlines()
    pairs = [row.split("\t") for row in rows if row.strip()]
    return {name: kind for name, kind in pairs if name.startswith(prefix + ".")}


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_high_priority_task_overtakes_a_low_priority_backlog(
    start, store, amqp_env, monkeypatch, queue_type
):
    from tests.apps.amqp_app import create_app, mark

    monkeypatch.setenv("TASKQ_AMQP_QUEUE_TYPE", queue_type)
    app = create_app()
    start("-P", "solo", "--prefetch", "1", env={"TASKQ_AMQP_QUEUE_TYPE": queue_type})
    with app.app_context():
        mark.apply_async(("block", 1.5), priority=5)
        wait_until(lambda: store.hget("amqp:started", "block") == "1", timeout=20)
        for i in range(20):
            mark.apply_async((f"low{i}",), priority=0)
        mark.apply_async(("high",), priority=9)
    wait_until(lambda: store.llen("amqp:order") == 22, timeout=40, message="22 runs")
    order = store.lrange("amqp:order", 0, -1)
    assert order[:2] == ["block", "high"], order
    assert order[2:] == [f"low{i}" for i in range(20)]  # one band: in the order sent
    _broker(app).close()


def test_quorum_queues_are_declared_in_three_priority_bands(qapp, amqp_env, vhost, start, store):
    from tests.apps.amqp_app import mark

    prefix = amqp_env["TASKQ_KEY_PREFIX"]
    with qapp.app_context():
        for p in (0, 5, 9):
            mark.apply_async((f"q{p}",), priority=p)
        assert _broker(qapp).queue_stats(["default"])["default"].ready == 3
        assert _queue_types(vhost, prefix) == {
            f"{prefix}.default": "quorum",
            f"{prefix}.default#high": "quorum",
            f"{prefix}.default#low": "quorum",
        }
        start("-P", "threads", "-c", "2", env=QUORUM)
        wait_until(lambda: store.hlen("amqp:runs") == 3, timeout=20, message="three runs")
        # countdown and retries go through the store, then into the bands
        from tests.apps.amqp_app import flaky

        assert mark.apply_async(("later",), countdown=1, priority=8).get(timeout=20) == "later"
        assert flaky.delay("f", 1).get(timeout=20) == {"attempt": 2, "retries": 1}
        mark.apply_async(("stays",), countdown=3600)
    assert _broker(qapp).queue_stats(["default"])["default"].delayed == 1


def test_quorum_message_of_a_sigkilled_worker_is_redelivered_and_completed_once(qapp, start, store):
    from tests.apps.amqp_app import mark

    first = start("-P", "solo", env=QUORUM)
    with qapp.app_context():
        res = mark.apply_async(("k", 2.0), priority=9)
        wait_until(lambda: store.hget("amqp:started", "k") == "1", timeout=20)
        first.kill_group()
        start("-P", "solo", env=QUORUM)
        assert res.get(timeout=30) == "k"
    assert store.hget("amqp:started", "k") == "2"
    assert store.hget("amqp:runs", "k") == "1"
    # purge empties every band
    with qapp.app_context():
        for p in (0, 5, 9):
            mark.apply_async((f"x{p}",), priority=p)
    out = qapp.test_cli_runner().invoke(args=["taskq", "purge", "--yes", "-Q", "default"])
    assert out.exit_code == 0, out.output


def test_a_wrong_queue_type_is_a_one_line_error(amqp_env):
    code = (
        "import os; os.environ['TASKQ_AMQP_QUEUE_TYPE'] = 'stream'\n"
        "from tests.apps.amqp_app import create_app\n"
        "create_app().extensions['taskq'].broker\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode != 0
    assert "TASKQ_AMQP_QUEUE_TYPE must be one of classic, quorum" in out.stderr


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_chord_unique_revoke_and_inspect_work_through_the_store(aapp, start, store, pool):
    from flask_taskq.canvas import chord
    from tests.apps.amqp_app import double, mark, once, tsum

    with aapp.app_context():
        first = once.delay("u")
        assert once.delay("u").id == first.id  # waiting: the same task
        revoked = mark.delay("revoked")
        revoked.revoke()
        worker = start("-P", pool, "-c", "2")
        assert first.get(timeout=20) == "u"
        res = chord([double.s(i) for i in range(10)], tsum.s()).apply_async()
        assert res.get(timeout=30) == 90, worker.log
        wait_until(lambda: revoked.state == "REVOKED", timeout=20)
    assert store.hget("amqp:runs", "revoked") is None
    out = aapp.test_cli_runner().invoke(args=["taskq", "inspect", "queues"])
    assert out.exit_code == 0, out.output
    assert "default" in out.output


@pytest.mark.parametrize("pool", [("threads", "4"), ("prefork", "2")])
def test_confirmed_sends_survive_connections_killed_under_load(aapp, start, store, vhost, pool):
    import threading

    from flask_taskq import BrokerConnectionError
    from tests.apps.amqp_app import mark

    worker = start("-P", pool[0], "-c", pool[1])
    confirmed: list[str] = []
    failed = 0
    with aapp.app_context():
        for _ in range(2):  # send all the while rabbitmqctl closes every connection
            killer = threading.Thread(target=_ctl, args=("close_all_connections", "-p", vhost, "t"))
            killer.start()
            while killer.is_alive() or len(confirmed) % 100:
                token = f"c{len(confirmed) + failed}"
                try:
                    mark.delay(token, 0.01)  # running, some, when the connections close
                except BrokerConnectionError:
                    failed += 1
                    continue
                confirmed.append(token)
    assert len(confirmed) >= 200
    link = _broker(aapp)._link
    assert link is not None and link.generation >= 3  # both kills hit the sender
    wait_until(
        lambda: all(store.hget("amqp:runs", t) for t in confirmed),
        timeout=60,
        message="every confirmed task run",
    )
    # the workers reconnected by themselves, and said so naming RabbitMQ
    worker.wait_for_log("RabbitMQ answers again")
    assert "Redis unreachable" not in worker.log


def test_beat_sends_through_rabbitmq(start, store, amqp_env):
    from tests.conftest import WorkerProcess

    schedule = {"tick": {"task": "tests.apps.amqp_app.mark", "schedule": 0.5, "args": ["tick"]}}
    start("-P", "solo")
    env = {
        **os.environ,
        **amqp_env,
        "PYTHONUNBUFFERED": "1",
        "BEAT_TEST_SCHEDULE": json.dumps(schedule),
    }
    cmd = [sys.executable, "-m", "flask", "--app", APP, "taskq", "beat", "-l", "info"]
    beat = WorkerProcess(cmd, env)
    try:
        beat.wait_for_log(" ready")
        wait_until(lambda: int(store.hget("amqp:runs", "tick") or 0) >= 2, timeout=30)
    finally:
        beat.kill_group()


def test_dashboard_and_dead_letter_pages_read_rabbitmq_and_the_store(aapp, start):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        mark.delay("waiting")
    aapp.debug = True  # the dashboard opens without TASKQ_DASHBOARD_AUTH in debug mode
    client = aapp.test_client()
    for page in ("overview", "queues", "workers", "failures", "periodic"):
        response = client.get(f"/taskq/api/{page}")
        assert response.status_code == 200, (page, response.data[:300])
    assert b"default" in client.get("/taskq/api/queues").data


def test_requeued_messages_go_to_other_consumers_at_once(aapp, amqp_env):
    from flask_taskq.broker import broker_from_url

    one = _broker(aapp)
    other = broker_from_url(
        amqp_env["TASKQ_BROKER_URL"],
        key_prefix=amqp_env["TASKQ_KEY_PREFIX"],
        store_url=amqp_env["TASKQ_STORE_URL"],
    )
    try:
        one.enqueue_many([("default", 5, f"m{i}".encode(), None) for i in range(3)])
        held = []
        wait_until(
            lambda: held.extend(one.fetch("one", ["default"], 3 - len(held), 0.5)) or len(held) == 3
        )
        assert one.requeue("one", held[1:]) == []
        # "one" still runs held[0]; what it gave back is not pushed back to it
        got = other.fetch("two", ["default"], 5, 5.0)
        wait_until(lambda: got.extend(other.fetch("two", ["default"], 5, 0.2)) or len(got) == 2)
        assert sorted(d.body for d in got) == sorted(d.body for d in held[1:])
        assert all(d.deliveries == 2 for d in got)
        assert one.ack("one", held[:1]) == [] and other.ack("two", got) == []
        assert one.queue_length("default") == 0
    finally:
        other.close()


@pytest.mark.parametrize(
    "args",
    [
        ["queues", "pause", "default"],
        ["inspect"],
        ["purge", "--yes", "-Q", "default"],
        ["inspect", "scheduled"],
        ["dead-letter", "list"],
        ["rate-limit", "tests.apps.amqp_app.mark", "10/s"],
    ],
)
def test_cli_commands_work_on_rabbitmq(aapp, args):
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        mark.delay("x")
        mark.apply_async(("y",), countdown=60)
    out = aapp.test_cli_runner().invoke(args=["taskq", *args])
    assert out.exit_code == 0, out.output


def test_metrics_read_queue_depth_from_rabbitmq_and_workers_from_the_store(aapp, start):
    from flask_taskq.metrics import exposition
    from tests.apps.amqp_app import mark

    with aapp.app_context():
        for i in range(3):
            mark.apply_async((f"w{i}",), queue="waiting")
        mark.apply_async(("later",), countdown=3600, queue="waiting")
    aapp.extensions["taskq"].broker.ensure_groups(["waiting"])
    start("-P", "solo")  # consumes "default" only: its heartbeat is in the store
    body, _ = exposition(aapp, use_client=False)
    text = body.decode()
    assert 'taskq_queue_depth{queue="waiting"} 3' in text
    assert 'taskq_queue_delayed{queue="waiting"} 1' in text
    assert "taskq_workers_alive 1" in text


def test_testing_helper_drains_an_in_thread_worker(aapp, store):
    from flask_taskq.testing import InThreadWorker
    from tests.apps.amqp_app import mark

    with InThreadWorker(aapp, concurrency=2) as worker:
        with aapp.app_context():
            for i in range(20):
                mark.delay(f"d{i}", 0.02)
        # RabbitMQ's count misses what the worker was delivered and has not run yet:
        # drain() counts what the AMQP consumers of this process hold
        worker.drain(timeout=30)
        assert store.hlen("amqp:runs") == 20


def test_testing_helper_eager_runs_inline_without_rabbitmq(aapp, store):
    from flask_taskq.testing import eager
    from tests.apps.amqp_app import mark

    with eager(aapp), aapp.app_context():
        assert mark.delay("inline").get(timeout=10) == "inline"
    assert store.hget("amqp:runs", "inline") == "1"
    assert _broker(aapp).queue_length("default") == 0


@pytest.mark.parametrize(
    ("unreachable", "message"),
    [
        (
            {"TASKQ_BROKER_URL": "amqp://guest:guest@127.0.0.1:1/nowhere"},
            "Error: cannot reach RabbitMQ at amqp://***@127.0.0.1:1/nowhere: ",
        ),
        (
            {"TASKQ_STORE_URL": "redis://127.0.0.1:1/0"},
            "Error: cannot reach Redis at redis://127.0.0.1:1/0: ",
        ),
    ],
)
def test_a_command_names_the_server_it_cannot_reach(amqp_env, unreachable, message):
    """On RabbitMQ with a Redis store, a command says which of the two is down, with
    its URL (the password masked), in one error line and no traceback."""
    app = "tests.apps.amqp_app:create_app"
    out = subprocess.run(
        [sys.executable, "-m", "flask", "--app", app, "taskq", "inspect", "queues"],
        env={**os.environ, **amqp_env, **unreachable},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    assert errors == out.stderr.splitlines() and errors[0].startswith(message), out.stderr
    assert "guest:guest" not in out.stderr
