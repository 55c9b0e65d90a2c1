"""RQ adapter: ``rq worker -w rq.worker.SimpleWorker`` (runs jobs in the worker process,
without a fork per job, as the figures in issue #7 do).

``noop``, ``noop_result`` and ``stamp`` jobs are sent with RQ's default options: the job
and its result are kept for ``result_ttl`` (500 s). ``noop_ignored`` jobs are sent with
``result_ttl=0`` (RQ deletes the job at once when it is done).
"""

from __future__ import annotations

from redis import Redis
from rq import Queue

from bench.peers import counting

_queue: Queue | None = None


def queue() -> Queue:
    global _queue
    if _queue is None:
        _queue = Queue("default", connection=Redis.from_url(counting.URL))
    return _queue


def noop() -> None:
    counting.count()


def noop_ignored() -> None:
    counting.count()


def noop_result() -> None:
    counting.count()


def stamp(sent: float) -> None:
    counting.stamp(sent)


def _options(task) -> dict:
    return {"result_ttl": 0} if task is noop_ignored else {}


def send_one(task, *args) -> None:
    queue().enqueue(task, *args, **_options(task))


def send_bulk(task, n: int) -> str:
    q = queue()
    q.enqueue_many([Queue.prepare_data(task, **_options(task)) for _ in range(n)])
    return "Queue.enqueue_many"
