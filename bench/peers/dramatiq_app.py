"""Dramatiq adapter: ``dramatiq bench.peers.dramatiq_app -p 1`` (one process with Dramatiq's
default 8 worker threads).

RedisBroker with its default middleware, plus the Results middleware (Redis backend) so
that ``noop_result`` can store its result (``store_results=True``). An actor's default is
``store_results=False``, so ``noop`` and ``stamp`` (default options) store nothing, and
``noop_ignored`` is the same actor under another name.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from bench.peers import counting

broker = RedisBroker(url=counting.URL)
broker.add_middleware(Results(backend=RedisBackend(url=counting.URL)))
dramatiq.set_broker(broker)


@dramatiq.actor
def noop() -> None:
    counting.count()


@dramatiq.actor(store_results=False)
def noop_ignored() -> None:
    counting.count()


@dramatiq.actor(store_results=True)
def noop_result() -> None:
    counting.count()


@dramatiq.actor
def stamp(sent: float) -> None:
    counting.stamp(sent)


def send_one(task, *args) -> None:
    task.send(*args)


send_bulk = None  # no bulk enqueue: group(...).run() is a loop of single sends
