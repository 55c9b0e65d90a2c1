"""A worker 20 ms away from Redis (a delaying proxy, tests/delay_proxy.py): it notices the
slow link, fetches ahead and acknowledges from its keeper thread (docs/worker.rst), and
still runs every task exactly once, stops gracefully and hands back what it had not
started."""

from __future__ import annotations

import re
import signal
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import WorkerProcess, wait_until
from tests.delay_proxy import DelayProxy


@pytest.fixture
def slow_url(redis_server) -> Iterator[str]:
    proxy = DelayProxy(("127.0.0.1", redis_server.port), delay=0.010)
    port = proxy.start()
    yield f"redis://127.0.0.1:{port}/0"
    proxy.stop()


def _runs(*workers: WorkerProcess) -> Counter[str]:
    ids = re.findall(
        r"tests\.apps\.basic\.add\[([0-9a-f-]+)\] succeeded", "".join(w.log for w in workers)
    )
    return Counter(ids)


def test_a_worker_on_a_slow_link_fetches_ahead_and_runs_each_task_once(
    app, slow_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    from tests.apps.basic import add

    with app.app_context():
        results = add.delay_many((i, 1) for i in range(2000))
    worker = start_worker("-P", "threads", "-c", "4", broker_url=slow_url)
    worker.wait_for_log("fetching ahead", timeout=60)
    assert [r.get(timeout=120) for r in results] == [i + 1 for i in range(2000)]
    with app.app_context():
        broker = app.extensions["taskq"].broker
        wait_until(
            lambda: broker.queue_stats(["default"])["default"].unfinished == 0,
            timeout=30,
            message="every task acknowledged",
        )
    runs = _runs(worker)
    assert len(runs) == 2000 and set(runs.values()) == {1}


def test_a_graceful_stop_on_a_slow_link_hands_back_the_unstarted_tasks(
    app, slow_url: str, start_worker: Callable[..., WorkerProcess]
) -> None:
    from tests.apps.basic import add

    with app.app_context():
        results = add.delay_many((i, 1) for i in range(20000))
    slow = start_worker("-P", "solo", broker_url=slow_url)
    slow.wait_for_log("fetching ahead", timeout=60)
    wait_until(lambda: len(_runs(slow)) >= 500, timeout=60, message="500 tasks run")
    slow.signal(signal.SIGTERM)
    assert slow.wait(60) == 0, slow.log
    fast = start_worker("-P", "threads", "-c", "4")
    assert [r.get(timeout=180) for r in results] == [i + 1 for i in range(20000)]
    runs = _runs(slow, fast)
    assert len(runs) == 20000 and set(runs.values()) == {1}, Counter(runs.values())
