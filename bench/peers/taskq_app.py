"""flask-taskq adapter: ``flask --app bench.peers.taskq_app:create_app taskq worker -P solo``.

Its own app and TaskQueue (bench/app.py belongs to bench/throughput.py), on the private
Redis (BENCH_REDIS_URL), with the default key prefix and settings. ``noop`` and ``stamp``
have the default task options: their result (``None``) is stored in the result backend,
which is the broker's Redis by default (``TASKQ_TASK_IGNORE_RESULT`` is False).
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import AbstractContextManager

from flask import Flask

from bench.peers import counting
from flask_taskq import Message, TaskQueue

tq = TaskQueue()
_app: Flask | None = None


@tq.task
def noop() -> None:
    counting.count()


@tq.task(ignore_result=True)
def noop_ignored() -> None:
    counting.count()


@tq.task(ignore_result=False)
def noop_result() -> None:
    counting.count()


@tq.task
def stamp(sent: float) -> None:
    counting.stamp(sent)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["TASKQ_BROKER_URL"] = counting.URL
    if counting.AMQP_URL:  # bench/rabbitmq.py: RabbitMQ broker, the Redis as the store
        app.config["TASKQ_BROKER_URL"] = counting.AMQP_URL
        app.config["TASKQ_STORE_URL"] = counting.URL
        app.config["TASKQ_AMQP_QUEUE_TYPE"] = os.environ.get("BENCH_AMQP_QUEUE_TYPE", "classic")
    tq.init_app(app)
    return app


def context() -> AbstractContextManager:
    """The producer side calls tasks inside an app context, as a view would."""
    global _app
    if _app is None:
        _app = create_app()
    return _app.app_context()


def send_one(task, *args) -> None:
    task.delay(*args)


def send_bulk(task, n: int) -> str:
    """The bulk API ``task.delay_many``; until it exists, the broker's pipelined
    ``enqueue_many`` of ready-made messages (what bench/throughput.py pre-fills with)."""
    if hasattr(task, "delay_many"):
        task.delay_many(() for _ in range(n))
        return "delay_many"
    state = _app.extensions["taskq"]
    queue = state.default_queue
    state.broker.enqueue_many(
        (
            queue,
            5,
            Message(id=str(uuid.uuid4()), task=task.name, queue=queue, sent=time.time()).to_bytes(
                state.serializer
            ),
            None,
        )
        for _ in range(n)
    )
    return "fallback: broker.enqueue_many (no delay_many yet)"
