"""Task events with RabbitMQ as the broker: they go to the store's Redis
(``TASKQ_STORE_URL``), under the app's key prefix."""

from __future__ import annotations

from tests.conftest import wait_until
from tests.test_amqp import aapp, amqp_env, pytestmark, start, store, vhost  # noqa: F401


def test_events_go_to_the_store_redis(aapp, start, store, amqp_env):  # noqa: F811
    from flask_taskq import events
    from tests.apps.amqp_app import add

    start("-P", "threads", "-c", "1", "-E")
    aapp.config["TASKQ_EVENTS"] = True
    with aapp.app_context():
        result = add.delay(2, 3)
        assert result.get(timeout=20) == 5
        events.sender(aapp.extensions["taskq"]).flush()
    key = f"{amqp_env['TASKQ_KEY_PREFIX']}:events"

    def types():
        return sorted(f["type"] for _, f in store.xrange(key) if f["id"] == result.id)

    wait_until(lambda: len(types()) == 3, 15, message="events in the store's Redis")
    assert types() == ["task-sent", "task-started", "task-succeeded"]
