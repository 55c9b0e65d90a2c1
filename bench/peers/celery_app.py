"""Celery adapter: ``celery -A bench.peers.celery_app worker -P solo``.

Broker and result backend are the private Redis (BENCH_REDIS_URL). Settings are Celery's
defaults (prefetch multiplier 4, early ack, JSON) except that the result backend is set,
so that ``noop_result`` can store its result; ``noop`` and ``stamp`` ignore theirs.
"""

from __future__ import annotations

from celery import Celery

from bench.peers import counting

# bench/rabbitmq.py sets BENCH_AMQP_URL: RabbitMQ as the broker, results stay in Redis.
app = Celery("bench", broker=counting.AMQP_URL or counting.URL, backend=counting.URL)
app.conf.broker_connection_retry_on_startup = True


@app.task(ignore_result=True)
def noop() -> None:
    counting.count()


@app.task
def noop_result() -> None:
    counting.count()


@app.task(ignore_result=True)
def stamp(sent: float) -> None:
    counting.stamp(sent)


def send_one(task, *args) -> None:
    task.delay(*args)


def send_bulk(task, n: int) -> str:
    """``group(task.s() for ...).apply_async()``: Celery's way to send many at once."""
    from celery import group

    group(task.s() for _ in range(n)).apply_async()
    return "group(...).apply_async()"
