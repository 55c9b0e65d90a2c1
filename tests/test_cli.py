"""``flask taskq`` commands other than the worker."""

from __future__ import annotations

from tests.apps.basic import add, mark


def test_purge_deletes_waiting_and_delayed_messages(app, r):
    with app.app_context():
        for i in range(3):
            add.delay(i, i)
        mark.apply_async(("later",), countdown=3600)
        mark.apply_async(("urgent",), priority=9)
    result = app.test_cli_runner().invoke(args=["taskq", "purge", "--yes"])
    assert result.exit_code == 0, result.output
    assert "Purged 5 message(s) from default" in result.output
    assert app.extensions["taskq"].broker.queue_length("default") == 0
    assert r.zcard("taskq:{default}:delayed") == 0


def test_purge_asks_first(app):
    with app.app_context():
        add.delay(1, 1)
    result = app.test_cli_runner().invoke(args=["taskq", "purge"], input="n\n")
    assert result.exit_code == 1
    assert app.extensions["taskq"].broker.queue_length("default") == 1


def test_purge_with_redis_unreachable_is_one_line(app):
    app.extensions["taskq"].broker_url = "redis://127.0.0.1:1/0"
    app.extensions["taskq"].broker = app.extensions["taskq"].new_broker()
    result = app.test_cli_runner().invoke(args=["taskq", "purge", "--yes"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error: cannot reach Redis at redis://127.0.0.1:1/0")
    assert "Traceback" not in result.output
