"""Huey adapter: ``huey_consumer bench.peers.huey_app.huey -w 1 -k thread -q``.

RedisHuey (blocking BRPOP, the default). Huey keeps results per instance, not per task,
so the driver says which task a run uses (BENCH_TASK): ``default`` keeps Huey's defaults,
``results=True, store_none=False`` (a task's result is stored unless it is ``None``: a
no-op stores nothing); ``stored`` adds ``store_none=True`` so that ``noop_result`` stores
its ``None``; ``ignored`` is ``results=False``.
"""

from __future__ import annotations

import os

from huey import RedisHuey

from bench.peers import counting

_task = os.environ.get("BENCH_TASK", "default")
huey = RedisHuey(
    "bench", url=counting.URL, results=_task != "ignored", store_none=_task == "stored"
)


@huey.task()
def noop() -> None:
    counting.count()


@huey.task()
def noop_ignored() -> None:
    counting.count()


@huey.task()
def noop_result() -> None:
    counting.count()


@huey.task()
def stamp(sent: float) -> None:
    counting.stamp(sent)


def send_one(task, *args) -> None:
    task(*args)


send_bulk = None  # no bulk enqueue API
