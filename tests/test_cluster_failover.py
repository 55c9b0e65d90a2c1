"""A master of a real Redis Cluster SIGKILLed while tasks run: after the cluster promotes
its replica, the producer and the worker processes carry on without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.apps.flows_app import add, create_app
from tests.cluster_fixtures import RedisClusterProcesses
from tests.conftest import WorkerProcess, resend_until, wait_until

APP = "tests.apps.flows_app:create_app"


def test_work_goes_on_after_the_queue_master_is_killed(
    own_cluster: RedisClusterProcesses,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    url = own_cluster.url
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": url}
    workers = [start_worker("-P", "threads", "-c", "4", app=APP, env=env) for _ in range(2)]
    app = create_app(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=url)
    with app.app_context():
        before = [add.delay(i, 0) for i in range(100)]
        assert [r.get(timeout=30) for r in before] == list(range(100))
        victim = own_cluster.master_of("taskq:{default}:p5")
        victim.stop()  # SIGKILL
        wait_until(
            lambda: own_cluster.master_of("taskq:{default}:p5").port != victim.port,
            timeout=30,
            interval=0.2,
            message="the replica of the killed master to be promoted",
        )
        deadline = time.monotonic() + 30
        after = [
            resend_until(lambda tid, i=i: add.apply_async((i, 0), task_id=tid), deadline)
            for i in range(100, 300)
        ]
        assert [r.get(timeout=60) for r in after] == list(range(100, 300))
    for worker in workers:
        assert worker.proc.poll() is None, worker.log
