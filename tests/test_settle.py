"""A worker whose results live on its broker's Redis settles a batch (results, then acks)
in one script call, and carries it at the head of its next fetch: a task that finished
just before costs no round trip of its own (docs/data-model.rst, round trips)."""

from __future__ import annotations

from typing import Any

import pytest

from flask_taskq.keys import GROUP
from flask_taskq.worker.consumer import Consumer

STREAM = "taskq:{default}:p5"


@pytest.fixture
def own_app(own_redis, monkeypatch: pytest.MonkeyPatch):
    """The faults app on a redis-server of the test alone (whose memory limit it sets)."""
    monkeypatch.setenv("TASKQ_BROKER_URL", own_redis.url)
    from tests.apps.faults import create_app

    return create_app()


def _consumer(app: Any) -> Consumer:
    state = app.extensions["taskq"]
    broker = state.new_broker()
    broker.ensure_groups(["default"])
    return Consumer(state, broker, state.new_backend(), "settler", ["default"], 8)


def _running_one(app: Any) -> tuple[Consumer, Any, Any, Any]:
    """A consumer running ``add(1, 1)``, as an executor does: its result handle, its
    delivery and message."""
    from tests.apps.faults import add

    consumer = _consumer(app)
    with app.app_context():
        res = add.delay(1, 1)
    consumer._accept(consumer.broker.fetch("settler", ["default"], 1, 1.0))
    item = consumer.next()
    assert item is not None
    return consumer, res, *item


def _record_round_trips(consumer: Consumer) -> list[list[tuple[Any, ...]]]:
    """The commands of each round trip the consumer's broker makes from now on."""
    trips: list[list[tuple[Any, ...]]] = []
    send = consumer.broker._send  # type: ignore[attr-defined]

    def recording(commands):
        trips.append(list(commands))
        return send(commands)

    consumer.broker._send = recording  # type: ignore[attr-defined]
    return trips


def _scripts(trip: list[tuple[Any, ...]], consumer: Consumer) -> list[str]:
    names = {s.sha: name for name, s in consumer.broker._scripts.items()}  # type: ignore[attr-defined]
    return [names.get(c[1], "?") for c in trip if c[0] == "EVALSHA"]


def test_a_finished_task_is_settled_at_the_head_of_the_next_fetch(own_app, own_redis):
    from tests.apps.faults import add

    client = own_redis.client()
    consumer = _consumer(own_app)
    with own_app.app_context():
        first, second = add.delay(1, 1), add.delay(2, 2)
    consumer._accept(consumer.broker.fetch("settler", ["default"], 1, 1.0))
    item = consumer.next()
    assert item is not None
    delivery, message = item
    assert message.id == first.id
    settle = consumer.broker._scripts["settle"]  # type: ignore[attr-defined]
    client.script_load(settle.script)  # as after the worker's first flush (NOSCRIPT, load)
    trips = _record_round_trips(consumer)

    consumer.complete(delivery, message.id, "SUCCESS", b'{"status":"SUCCESS"}', 0.001)
    assert trips == []  # left for the fetch this executor makes next
    item = consumer.next()

    assert item is not None and item[1].id == second.id
    assert len(trips) == 1
    assert _scripts(trips[0], consumer) == ["settle", "fetch"]
    assert client.get(f"taskq:result:{{{first.id}}}") == b'{"status":"SUCCESS"}'
    assert client.xpending(STREAM, GROUP)["pending"] == 1  # the second only
    assert consumer.held == 1


def test_results_that_cannot_be_stored_leave_their_messages_unacknowledged(own_app, own_redis):
    """The results go first, in the same script: when Redis refuses them (out of
    memory), nothing is acknowledged and the batch waits for the next flush."""
    client = own_redis.client()
    consumer, res, delivery, message = _running_one(own_app)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        consumer.complete(delivery, message.id, "SUCCESS", b'{"status":"SUCCESS"}', 0.001)
        assert consumer.flush_quietly() is False
        assert client.xpending(STREAM, GROUP)["pending"] == 1
        assert client.get(f"taskq:result:{{{res.id}}}") is None
        assert consumer.held == 1
    finally:
        client.config_set("maxmemory", 0)
    consumer._next_flush = 0.0  # no backoff wait in a test
    assert consumer.flush_quietly() is True
    assert client.xpending(STREAM, GROUP)["pending"] == 0
    assert client.get(f"taskq:result:{{{res.id}}}") == b'{"status":"SUCCESS"}'
    assert consumer.held == 0


def test_settle_skips_entries_another_consumer_took_over(own_app, own_redis):
    from tests.apps.faults import add

    client = own_redis.client()
    consumer = _consumer(own_app)
    broker: Any = consumer.broker
    with own_app.app_context():
        res = add.delay(1, 1)
    [delivery] = broker.fetch("settler", ["default"], 1, 1.0)
    client.xclaim(STREAM, GROUP, "other", 0, [delivery.entry_id])

    skipped = broker.ack_storing("settler", [delivery], [(res.id, b"{}", 1)], 60)

    assert skipped == [delivery]
    assert client.xpending(STREAM, GROUP)["pending"] == 1  # left to "other"
    assert client.get(f"taskq:result:{{{res.id}}}") == b"{}"
    assert 0 < client.ttl(f"taskq:result:{{{res.id}}}") <= 60


def test_a_worker_whose_results_live_elsewhere_keeps_two_calls(own_app, redis_url):
    """Results on another Redis than the broker's: the script cannot write them."""
    state = own_app.extensions["taskq"]
    broker = state.new_broker()
    assert broker.can_settle(None)
    assert broker.can_settle(state.broker_url)
    assert not broker.can_settle(redis_url)


def _kept_send(app: Any, consumer: Consumer, *args: int) -> tuple[str, list[Any]]:
    """Send ``add(*args)`` as the workflow hook sends a chain link: through the sink of
    :meth:`Consumer.deferring_sends`. Returns its task id and what the sink kept."""
    from tests.apps.faults import add

    state = app.extensions["taskq"]
    deferring = consumer.deferring_sends()
    assert deferring is not None
    take, kept = deferring
    state.send_sink.take = take
    try:
        with app.app_context():  # as send_next sends a link: through send_task
            task_id = add.s(*args).apply_async().id
    finally:
        state.send_sink.take = None
    return task_id, kept


def test_a_chain_link_goes_out_with_the_ack_and_comes_back_in_one_round_trip(own_app, own_redis):
    client = own_redis.client()
    consumer, first, delivery, message = _running_one(own_app)
    client.script_load(consumer.broker._scripts["settle"].script)  # type: ignore[attr-defined]

    link_id, sends = _kept_send(own_app, consumer, 2, 2)
    assert len(sends) == 1 and client.xlen(STREAM) == 1  # kept: not sent yet
    trips = _record_round_trips(consumer)
    consumer.complete(delivery, message.id, "SUCCESS", b'{"status":"SUCCESS"}', 0.001, sends=sends)
    item = consumer.next()

    assert len(trips) == 1 and _scripts(trips[0], consumer) == ["settle", "fetch"]
    assert item is not None and item[1].id == link_id and item[1].args == (2, 2)
    assert client.get(f"taskq:result:{{{first.id}}}") == b'{"status":"SUCCESS"}'
    assert client.xpending(STREAM, GROUP)["pending"] == 1  # the link only


def test_a_kept_link_is_not_lost_when_redis_refuses_the_batch(own_app, own_redis):
    """The sends go first in the settling call: when Redis refuses the batch (out of
    memory), neither the link nor the ack is written, and both go with the next flush."""
    client = own_redis.client()
    consumer, _, delivery, message = _running_one(own_app)
    link_id, sends = _kept_send(own_app, consumer, 2, 2)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    try:
        consumer.complete(delivery, message.id, "SUCCESS", b"{}", 0.001, sends=sends)
        assert consumer.flush_quietly() is False
        assert client.xlen(STREAM) == 1 and client.xpending(STREAM, GROUP)["pending"] == 1
    finally:
        client.config_set("maxmemory", 0)
    consumer._next_flush = 0.0  # no backoff wait in a test
    assert consumer.flush_quietly() is True
    [(_, fields)] = client.xrange(STREAM)
    assert link_id.encode() in fields[b"m"]
    assert client.xpending(STREAM, GROUP)["pending"] == 0
