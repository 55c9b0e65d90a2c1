"""Dead letters: the broker methods and ``flask taskq dead-letter list|show|requeue|purge``,
on real dead letters that a real worker produced."""

from __future__ import annotations

import base64
import json
import signal
from datetime import datetime, timezone

import pytest
import redis

from flask_taskq.broker.base import Delivery
from flask_taskq.broker.memory import MemoryBroker
from flask_taskq.message import Message
from flask_taskq.serializer import get_serializer
from tests.conftest import wait_until

DEAD = "taskq:{default}:dead"
P5 = "taskq:{default}:p5"
JSON = get_serializer("json")


def cli(app, *args, input=None):
    return app.test_cli_runner().invoke(args=["taskq", "dead-letter", *args], input=input)


def ok(result):
    """The standard output of a command that succeeded."""
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(name="rb")
def bytes_client(redis_url):
    """A client that leaves replies as bytes (dead letters may hold any bytes)."""
    return redis.Redis.from_url(redis_url)


def bodies(rb, key):
    """The message bodies waiting in stream ``key``."""
    return [f[b"m"] for _, f in rb.xrange(key)]


def stream_ids(rb, key):
    """Task ids of the messages waiting in stream ``key``."""
    return [Message.from_bytes(b, JSON).id for b in bodies(rb, key)]


@pytest.fixture
def dead(app, r, start_worker):
    """Two dead letters made by a real worker, which is then stopped: an undecodable body
    and a message for a task no worker knows. Returns the unknown task's id."""
    worker = start_worker("-P", "solo")
    r.xadd(P5, {"m": b"\xff not json"})
    wait_until(lambda: r.xlen(DEAD) == 1, message="the undecodable body dead-lettered")
    with app.app_context():
        res = app.extensions["taskq"].taskqueue.send_task(
            "no.such", args=(1, "two"), kwargs={"k": [3]}
        )
    wait_until(lambda: r.xlen(DEAD) == 2, message="the unknown task dead-lettered")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    return res.id


def entries(rb):
    """The dead-letter stream, newest first: [(entry id, {field: bytes})]."""
    return [(e.decode(), {k.decode(): v for k, v in f.items()}) for e, f in rb.xrevrange(DEAD)]


# -- broker --------------------------------------------------------------------------------
def test_broker_reads_dead_letters_newest_first(app, rb, dead):
    broker = app.extensions["taskq"].broker
    rows = broker.dead_letters("default")
    assert [row["entry_id"] for row in rows] == [e for e, _ in entries(rb)]
    unknown, undecodable = rows
    assert (unknown["task"], unknown["id"], unknown["queue"]) == ("no.such", dead, "default")
    assert "not registered" in unknown["reason"] and unknown["worker"]
    assert undecodable["body"] == b"\xff not json" and undecodable["task"] == "?"
    assert broker.dead_letter_get("default", undecodable["entry_id"]) == undecodable
    assert broker.dead_letter_get("default", "1-0") is None
    assert broker.dead_letter_get("default", "not an id") is None
    assert broker.dead_letters("default", 1) == [unknown]
    assert broker.dead_letters("default", 10, before=unknown["entry_id"]) == [undecodable]
    assert broker.dead_letter_count("default") == 2
    assert broker.dead_letter_queues() == ["default"]


def test_broker_requeues_to_the_priority_of_the_message(app, r, rb):
    broker = app.extensions["taskq"].broker
    body = Message(id="t8", task="no.such", priority=8).to_bytes(JSON)
    e8 = r.xadd(DEAD, {"body": body, "reason": "x", "task": "no.such", "id": "t8"})
    e5 = r.xadd(DEAD, {"body": b"\x00junk", "reason": "y", "task": "?", "id": "?"})
    assert broker.requeue_dead("default", [e8, e5, "9-9", "junk"]) == 2
    assert r.xlen(DEAD) == 0
    assert stream_ids(rb, "taskq:{default}:p8") == ["t8"]
    assert bodies(rb, P5) == [b"\x00junk"]
    assert broker.requeue_dead("default", [e8]) == 0  # gone already


def test_broker_purges_dead_letters(app, r, dead):
    broker = app.extensions["taskq"].broker
    assert broker.purge_dead("default") == 2
    assert r.exists(DEAD) == 0 and broker.dead_letters("default") == []
    assert broker.purge_dead("default") == 0


def test_memory_broker_keeps_dead_letters_the_same_way():
    broker = MemoryBroker()
    body = Message(id="m1", task="no.such", priority=7).to_bytes(JSON)
    broker.enqueue("default", 7, body)
    [delivery] = broker.fetch("c", ["default"], 1, 0)
    broker.dead_letter("c", delivery, "no such task", "no.such", "m1", "tb")
    broker.dead_letter("c", Delivery("other", 5, "x", b"junk"), "undecodable", "?", "?")
    [row] = broker.dead_letters("default")
    assert (row["id"], row["reason"], row["traceback"], row["body"]) == (
        "m1",
        "no such task",
        "tb",
        body,
    )
    assert broker.dead_letter_get("default", row["entry_id"]) == row
    assert broker.dead_letter_queues() == ["default", "other"]
    assert broker.requeue_dead("default", [row["entry_id"]]) == 1
    assert broker.dead_letter_count("default") == 0
    [again] = broker.fetch("c", ["default"], 1, 0)
    assert (again.priority, again.body, again.deliveries) == (7, body, 1)
    assert broker.purge_dead("other") == 1 and broker.dead_letter_queues() == []


# -- list ----------------------------------------------------------------------------------
def test_list_prints_a_row_per_dead_letter(app, rb, dead):
    lines = ok(cli(app, "list")).splitlines()
    assert lines[0].split() == ["ENTRY", "ID", "QUEUE", "TASK", "TASK", "ID", "REASON", "TIME"]
    (e_unknown, _), (e_bad, _) = entries(rb)
    assert lines[1].startswith(e_unknown) and lines[2].startswith(e_bad)
    assert f" default  no.such  {dead}  task 'no.such' is not registered" in lines[1]
    assert "..." in lines[2]  # the undecodable reason is longer than the column
    assert lines[1].rstrip().endswith("Z") and len(lines) == 3


def test_list_json_has_the_columns_in_snake_case(app, rb, dead):
    rows = json.loads(ok(cli(app, "list", "--json")))
    assert [set(row) for row in rows] == [
        {
            "entry_id",
            "queue",
            "task",
            "task_id",
            "unverified_task",
            "unverified_task_id",
            "reason",
            "time",
        }
    ] * 2
    unknown, bad = rows
    assert unknown["task_id"] == dead and unknown["task"] == "no.such"
    stored = dict(entries(rb))[bad["entry_id"]]
    assert bad["reason"] == stored["reason"].decode() and bad["reason"].startswith("undecodable")
    when = datetime.fromisoformat(unknown["time"])
    assert when.tzinfo == timezone.utc
    assert abs(when.timestamp() - float(dict(entries(rb))[unknown["entry_id"]]["time"])) < 0.001


def test_list_limit_and_queue_option(app, dead):
    result = cli(app, "list", "-n", "1")
    assert len(ok(result).splitlines()) == 2
    assert "the newest 1 of 2 dead letters" in result.stderr
    assert ok(cli(app, "list", "-Q", "other")) == "No dead letters.\n"
    assert json.loads(ok(cli(app, "list", "-Q", "other", "--json"))) == []


def test_list_when_there_are_none(app):
    assert ok(cli(app, "list")) == "No dead letters.\n"


# -- show ----------------------------------------------------------------------------------
def test_show_by_task_id_decodes_the_message(app, rb, dead):
    out = ok(cli(app, "show", dead))
    assert f"Task ID:      {dead}" in out
    assert 'Args:         [1, "two"]' in out and 'Kwargs:       {"k": [3]}' in out
    assert "Priority:     5" in out and "not registered" in out
    doc = json.loads(ok(cli(app, "show", dead, "--json")))
    (entry_id, fields), _ = entries(rb)
    assert doc["entry_id"] == entry_id and doc["task_id"] == dead
    assert doc["args"] == [1, "two"] and doc["kwargs"] == {"k": [3]}
    assert doc["worker"] == fields["worker"].decode() and doc["decode_error"] is None
    assert Message.from_bytes(base64.b64decode(doc["body"]), JSON).id == dead


def test_show_by_entry_id_of_an_undecodable_body(app, rb, dead):
    _, (entry_id, _) = entries(rb)
    out = ok(cli(app, "show", entry_id))
    assert f"Entry ID:     {entry_id}" in out
    assert "Body:         b'\\xff not json'" in out and "Decode error: undecodable" in out
    assert "Args:" not in out
    doc = json.loads(ok(cli(app, "show", entry_id, "--json")))
    assert base64.b64decode(doc["body"]) == b"\xff not json"
    assert doc["args"] is None and doc["decode_error"].startswith("undecodable")


def test_show_includes_the_traceback(app, r):
    r.xadd(
        DEAD,
        {
            "body": b"{}",
            "reason": "retries exhausted",
            "task": "t",
            "id": "tid",
            "queue": "default",
            "time": "1700000000.5",
            "worker": "w",
            "traceback": "Traceback (most recent call last):\nValueError: boom\n",
        },
    )
    out = ok(cli(app, "show", "tid"))
    assert "Time:         2023-11-14T22:13:20.500Z" in out
    assert out.endswith("Traceback:\n  Traceback (most recent call last):\n  ValueError: boom\n")


def test_show_unknown_id_is_one_line(app, dead):
    result = cli(app, "show", "nope")
    assert result.exit_code == 1
    assert result.output == (
        "Error: no dead letter with entry id or task id 'nope' in queue(s) default\n"
    )


# -- requeue -------------------------------------------------------------------------------
def test_requeue_by_entry_id_puts_the_message_back(app, rb, dead):
    (unknown_entry, _), (bad_entry, _) = entries(rb)
    assert ok(cli(app, "requeue", unknown_entry)) == "Requeued 1 dead letter(s) to default.\n"
    assert stream_ids(rb, P5) == [dead]  # same task id, as a new entry
    assert [e for e, _ in entries(rb)] == [bad_entry]


def test_requeue_by_task_id_runs_the_task_again(app, r, start_worker):
    """A message whose workers kept dying is dead-lettered; requeued, it runs once more
    with its delivery count starting anew."""
    body = Message(id="poison", task="tests.apps.basic.whoami").to_bytes(JSON)
    r.xgroup_create(P5, "workers", id="0", mkstream=True)
    entry_id = r.xadd(P5, {"m": body})
    r.xreadgroup("workers", "dead-0", {P5: ">"})
    for i in range(1, 6):  # five more consumers take it over and "die" in turn
        r.xautoclaim(P5, "workers", f"dead-{i}", 0)
    r.set(f"taskq:{{default}}:starts:{entry_id}", 5)  # ...each after starting it
    start_worker("-P", "solo", env={"TASKQ_VISIBILITY_TIMEOUT": "0.3"})
    wait_until(lambda: r.xlen(DEAD) == 1, message="the poison message dead-lettered")
    # the worker writes its FAILURE after the dead letter: requeued before that, the
    # message's old failure would land after the requeue forgot it
    wait_until(lambda: r.exists("taskq:result:{poison}"), message="its failure stored")
    assert "delivered 7 times" in ok(cli(app, "list", "--json"))
    assert ok(cli(app, "requeue", "poison")) == "Requeued 1 dead letter(s) to default.\n"
    with app.app_context():
        result = app.extensions["taskq"].taskqueue.AsyncResult("poison").get(timeout=10)
    assert result == {"id": "poison", "task": "tests.apps.basic.whoami", "deliveries": 1}
    assert r.xlen(DEAD) == 0


def test_requeue_all_keeps_priorities(app, r, rb, dead):
    high = Message(id="high", task="no.such", priority=8).to_bytes(JSON)
    r.xadd(DEAD, {"body": high, "reason": "test", "task": "no.such", "id": "high"})
    result = cli(app, "requeue", "--all", "-Q", "default")
    assert ok(result) == "Requeued 3 dead letter(s) to default.\n"
    assert r.xlen(DEAD) == 0
    assert stream_ids(rb, "taskq:{default}:p8") == ["high"]
    waiting = bodies(rb, P5)  # the undecodable one goes to the default priority
    assert b"\xff not json" in waiting and len(waiting) == 2
    assert Message.from_bytes(next(b for b in waiting if b != b"\xff not json"), JSON).id == dead
    assert ok(cli(app, "requeue", "--all")) == "No dead letters.\n"


def test_requeue_refuses_unknown_ids_before_moving_any(app, r, rb, dead):
    (unknown_entry, _), _ = entries(rb)
    result = cli(app, "requeue", unknown_entry, "nope")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: no dead letter with entry id or task id 'nope'")
    assert r.xlen(DEAD) == 2 and r.xlen(P5) == 0


def test_requeue_needs_ids_or_all(app, dead):
    assert cli(app, "requeue").exit_code == 2
    assert cli(app, "requeue", "--all", dead).exit_code == 2


def test_requeue_of_a_task_id_with_several_dead_letters_asks_for_one(app, r, dead):
    r.xadd(DEAD, {"body": b"{}", "reason": "again", "task": "no.such", "id": dead})
    result = cli(app, "requeue", dead)
    assert result.exit_code == 1
    assert f"task id '{dead}' has 2 dead letters" in result.output
    shown = cli(app, "show", dead)
    assert "Reason:       again" in ok(shown) and "showing the newest" in shown.stderr


# -- purge ---------------------------------------------------------------------------------
def test_purge_asks_first(app, r, dead):
    result = cli(app, "purge", input="n\n")
    assert result.exit_code == 1 and "Delete 2 dead letter(s) of default?" in result.output
    assert r.xlen(DEAD) == 2
    result = cli(app, "purge", input="y\n")
    assert "Purged 2 dead letter(s) from default." in ok(result)
    assert r.xlen(DEAD) == 0


def test_purge_yes_does_not_ask(app, r, dead):
    assert ok(cli(app, "purge", "--yes")) == "Purged 2 dead letter(s) from default.\n"
    assert r.exists(DEAD) == 0
    assert ok(cli(app, "purge", "--yes")) == "No dead letters.\n"


def test_unreachable_redis_is_one_line(app):
    state = app.extensions["taskq"]
    state.broker_url = "redis://127.0.0.1:1/0"
    state.broker = state.new_broker()
    for args in (["list"], ["show", "x"], ["requeue", "--all"], ["purge", "--yes"]):
        result = cli(app, *args)
        assert result.exit_code == 1
        assert result.output.startswith("Error: cannot reach Redis at redis://127.0.0.1:1/0")
        assert "Traceback" not in result.output
