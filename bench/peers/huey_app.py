"""Huey adapter: ``huey_consumer bench.peers.huey_app.huey -w 1 -k thread -q``.

RedisHuey (blocking BRPOP, the default). Huey keeps results per instance, not per task:
with BENCH_RESULTS=1 the instance stores results, including ``None`` (``store_none``), so
that ``noop_result`` stores one; otherwise ``results=False``.
"""

from __future__ import annotations

import os

from huey import RedisHuey

from bench.peers import counting

_results = os.environ.get("BENCH_RESULTS") == "1"
huey = RedisHuey("bench", url=counting.URL, results=_results, store_none=_results)


@huey.task()
def noop() -> None:
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
