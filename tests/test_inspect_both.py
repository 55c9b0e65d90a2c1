"""``flask taskq inspect`` on ``memory://`` and on a real redis-server (the ``transport``
fixture): it reads through the transport and the store, so it works on both. On
``memory://`` it shows this process's queues and its in-process worker."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from tests.apps.store_app import boom, create_app, echo
from tests.conftest import Transport, wait_until

APP = "tests.apps.store_app:create_app"


@pytest.fixture
def app(transport: Transport) -> Flask:
    """The app on ``transport``, with a worker running its tasks."""
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    return create_app(**transport.config())


def inspect_json(app: Flask, *args: str) -> Any:
    result = app.test_cli_runner().invoke(args=["taskq", "inspect", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_inspect_shows_workers_queues_delayed_tasks_and_failures(app: Flask) -> None:
    with app.app_context():
        assert echo.delay(1).get(timeout=20) == 1
        echo.apply_async((2,), countdown=600)
        with pytest.raises(Exception, match="3"):
            boom.delay(3).get(timeout=20)

    workers = wait_until(lambda: inspect_json(app, "ping")["workers"], timeout=15)
    assert len(workers) >= 1
    scheduled = inspect_json(app, "scheduled")
    assert scheduled["delayed_total"] == 1
    assert {row["queue"]: row["delayed"] for row in scheduled["delayed"]}["default"] == 1
    failed = wait_until(
        lambda: inspect_json(app, "failed")["recent_failures"],
        timeout=15,
        message="the failure of boom in inspect failed",
    )
    assert [row["task"] for row in failed] == [boom.name]

    text = app.test_cli_runner().invoke(args=["taskq", "inspect"])
    assert text.exit_code == 0, text.output
    assert "Workers: " in text.output and "Delayed tasks: 1" in text.output
