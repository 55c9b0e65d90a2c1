"""Slots moved (``redis-cli --cluster reshard``) while producers and workers run on a real
Redis Cluster: every task sent is done, none is lost, no process restarts."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from flask_taskq.result import AsyncResult
from tests.apps.flows_app import add, create_app
from tests.cluster_fixtures import RedisClusterProcesses
from tests.conftest import WorkerProcess, resend_until

APP = "tests.apps.flows_app:create_app"
MOVED_SLOTS = 1000
TASKS = 3000


def _node_ids(cluster: RedisClusterProcesses) -> dict[int, tuple[str, int]]:
    """port -> (node id, first slot) of every master."""
    out = {}
    for start, _end, master, *_ in cluster.nodes[0].client().execute_command("CLUSTER SLOTS"):
        port, node_id = int(master[1]), master[2]
        node_id = node_id.decode() if isinstance(node_id, bytes) else node_id
        if port not in out or start < out[port][1]:
            out[port] = (node_id, int(start))
    return out


def _queue_in_first_slots(cluster: RedisClusterProcesses, first: int) -> str:
    """A queue whose slot is among the first MOVED_SLOTS of the master whose first slot
    is ``first`` (redis-cli moves a node's slots from its lowest up)."""
    client = cluster.nodes[0].client()
    for i in range(100_000):
        name = f"r{i}"
        slot = int(client.execute_command("CLUSTER KEYSLOT", f"taskq:{{{name}}}:p5"))
        if first <= slot < first + MOVED_SLOTS // 2:
            return name
    raise LookupError("no queue name in the slots to move")


def _send(i: int, queue: str, deadline: float) -> AsyncResult:
    return resend_until(
        lambda tid: add.apply_async((i, 0), queue=queue, task_id=tid), deadline, pause=0.05
    )


def test_resharding_under_load_loses_nothing(
    own_cluster: RedisClusterProcesses,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    masters = _node_ids(own_cluster)
    (source_port, (source_id, first)), (_, (target_id, _)) = list(masters.items())[:2]
    queue = _queue_in_first_slots(own_cluster, first)
    url = own_cluster.url
    env = {"TASKQ_BROKER_URL": url, "TASKQ_RESULT_BACKEND": url}
    workers = [
        start_worker("-P", "threads", "-c", "4", "-Q", queue, app=APP, env=env) for _ in range(2)
    ]
    app = create_app(TASKQ_BROKER_URL=url, TASKQ_RESULT_BACKEND=url)
    with app.app_context():
        deadline = time.monotonic() + 120
        results = [_send(i, queue, deadline) for i in range(TASKS // 3)]
        reshard = subprocess.Popen(
            [
                "redis-cli",
                "--cluster",
                "reshard",
                f"127.0.0.1:{source_port}",
                "--cluster-from",
                source_id,
                "--cluster-to",
                target_id,
                "--cluster-slots",
                str(MOVED_SLOTS),
                "--cluster-yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        results += [_send(i, queue, deadline) for i in range(TASKS // 3, TASKS)]
        _, err = reshard.communicate(timeout=120)
        assert reshard.returncode == 0, err
        assert own_cluster.master_of(f"taskq:{{{queue}}}:p5").port != source_port
        assert [r.get(timeout=120) for r in results] == list(range(TASKS))
    for worker in workers:
        assert worker.proc.poll() is None, worker.log
