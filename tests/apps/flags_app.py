"""The app of the worker-flag tests (``flask --app tests.apps.flags_app:create_app``).

Queues: ``mail.send`` (routes), ``mail.bulk`` (a task's ``queue`` option), ``reports``
(routes) and ``other`` (a task's ``queue`` option). Tasks return the pid of the process
that ran them, so tests can tell prefork children apart.
"""

from __future__ import annotations

import logging
import os
import time

from flask import Flask

from flask_taskq import TaskQueue

tq = TaskQueue()
logger = logging.getLogger(__name__)

#: What ``hog`` keeps, so the child's RSS stays up after the task.
_hoard: list[bytes] = []


@tq.task
def send_mail(to: str) -> int:
    """Routed to ``mail.send``; logs a line naming ``to``."""
    logger.warning("sending mail to %s", to)
    return os.getpid()


@tq.task(queue="mail.bulk")
def bulk_mail() -> int:
    return os.getpid()


@tq.task(queue="other")
def elsewhere() -> int:
    return os.getpid()


@tq.task
def pid() -> int:
    """Runs on whatever queue it is sent to; returns the pid."""
    return os.getpid()


@tq.task
def slow(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@tq.task
def hog(mib: int) -> int:
    """Keep ``mib`` MiB of touched memory in this process; return the pid."""
    _hoard.append(b"x" * (mib * 1024 * 1024))
    return os.getpid()


def create_app() -> Flask:
    app = Flask(__name__)
    url = os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    app.config.update(
        TASKQ_BROKER_URL=url,
        TASKQ_RESULT_BACKEND=url,
        TASKQ_ROUTES={
            "tests.apps.flags_app.send_mail": "mail.send",
            "tests.apps.flags_app.report*": "reports",
        },
    )
    tq.init_app(app)
    return app
