"""Celery adapter: ``celery -A bench.peers.celery_app worker -P solo``.

Broker and result backend are the private Redis (BENCH_REDIS_URL). Settings are Celery's
defaults (prefetch multiplier 4, early ack, JSON) except that a result backend is set, as
it must be for results to be kept at all (Celery's own default is no backend). With one
set, Celery's default task options (``task_ignore_result = False``) store every result:
so ``noop`` and ``stamp`` (default options) store theirs, ``noop_result`` says so
explicitly, and ``noop_ignored`` has ``ignore_result=True``.
"""

from __future__ import annotations

from celery import Celery

from bench.peers import counting

# bench/rabbitmq.py sets BENCH_AMQP_URL: RabbitMQ as the broker, results stay in Redis.
app = Celery("bench", broker=counting.AMQP_URL or counting.URL, backend=counting.URL)
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop() -> None:
    counting.count()


@app.task(ignore_result=True)
def noop_ignored() -> None:
    counting.count()


@app.task(ignore_result=False)
def noop_result() -> None:
    counting.count()


@app.task
def stamp(sent: float) -> None:
    counting.stamp(sent)


def send_one(task, *args) -> None:
    task.delay(*args)


def send_bulk(task, n: int) -> str:
    """``group(task.s() for ...).apply_async()``: Celery's way to send many at once."""
    from celery import group

    group(task.s() for _ in range(n)).apply_async()
    return "group(...).apply_async()"
