"""What an idle ``flask taskq worker`` imports: only what it uses (issue 19).

A worker that runs no beat, no workflow, publishes no events and is not on ``memory://``
must not load their code; each module left out is memory every worker process saves.
The worker runs in a subprocess (a fresh interpreter), started through the ``flask`` CLI
as users start it; a ``worker_ready`` receiver writes ``sys.modules`` and ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_IDLE_WORKER = """
import json, os, sys
from flask.cli import main
from flask_taskq import signals

def ready(sender, **kw):
    print(json.dumps(sorted(sys.modules)), flush=True)
    os._exit(0)

signals.worker_ready.connect(ready, weak=False)
sys.argv = ["flask", "--app", "tests.apps.basic:create_app", "taskq", "worker", *sys.argv[1:]]
main()
"""

#: Loaded by a worker only once it needs them (a beat, a workflow message, events,
#: ``memory://`` or eager mode, ``--autoscale`` and its shared busy flags, ``--logfile``,
#: the other CLI commands, the dashboard).
NOT_LOADED = [
    "flask_taskq.beat",
    "flask_taskq.periodic",
    "flask_taskq.schedules",
    "flask_taskq.canvas",
    "flask_taskq.workflow_graph",
    "flask_taskq.workflow_actions",
    "flask_taskq.workflow_templates",
    "flask_taskq.worker.workflow",
    "flask_taskq.worker.eager",
    "flask_taskq.worker.autoscale",
    "flask_taskq.dashboard",
    "flask_taskq.cli.beat",
    "flask_taskq.cli.status",
    "flask_taskq.cli.inspect_workers",
    "flask_taskq.store.beat",
    "flask_taskq.store.events",
    "flask_taskq.store.workflows",
    "flask_taskq.store.redis.beat",
    "flask_taskq.store.redis.events",
    "flask_taskq.store.redis.workflows",
    "flask_taskq.store.memory.beat",
    "flask_taskq.store.memory.workflows",
    "flask_taskq.store.memory.concurrency",
    "flask_taskq.backend.memory",
    "flask_taskq.backend.sql",
    "flask_taskq.broker.amqp.broker",
    "croniter",
    "dateutil",
    "zoneinfo",
    "sqlalchemy",
    "pika",
    "logging.handlers",
    "mmap",
]


def idle_worker_modules(redis_url: str, *args: str) -> set[str]:
    env = {**os.environ, "TASKQ_BROKER_URL": redis_url}
    out = subprocess.run(
        [sys.executable, "-c", _IDLE_WORKER, "-P", "solo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_an_idle_worker_loads_only_what_it_uses(redis_url):
    loaded = idle_worker_modules(redis_url)
    assert "flask_taskq.worker.consumer" in loaded  # it did start
    assert [m for m in NOT_LOADED if m in loaded] == []


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        (("--beat",), ["flask_taskq.beat", "flask_taskq.store.redis.beat"]),
        (("-E",), ["flask_taskq.store.redis.events"]),
        (("--logfile", os.devnull), ["logging.handlers"]),
    ],
)
def test_a_worker_loads_what_its_options_ask_for(redis_url, args, needed):
    loaded = idle_worker_modules(redis_url, *args)
    assert [m for m in needed if m not in loaded] == []
