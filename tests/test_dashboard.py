"""The dashboard blueprint (flask_taskq.dashboard), through Flask's test client, on the
test Redis and, where a worker matters, real ``flask taskq worker`` processes running
this module's app (``tests.test_dashboard:create_app``)."""

from __future__ import annotations

import base64
import json
import os
import re
import time

import pytest
import redis
from flask import Flask, current_app

from flask_taskq import TaskQueue
from flask_taskq.dashboard import data
from flask_taskq.monitor import Monitor
from tests.conftest import wait_until

tq = TaskQueue()
USER, PASSWORD = "admin", "s3cret pass"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}


def _redis() -> redis.Redis:
    return redis.Redis.from_url(current_app.config["TASKQ_BROKER_URL"])


@tq.task
def add(x, y):
    return x + y


@tq.task(queue="reports")
def report(n):
    return n


@tq.task(autoretry_for=(RuntimeError,), max_retries=0)
def fragile(token):
    """Fails (and, out of retries, is dead-lettered) until ``test:fixed:<token>`` is set."""
    if not _redis().exists(f"test:fixed:{token}"):
        raise RuntimeError(f"{token} is broken")
    return f"{token} fixed"


@tq.task
def boom(word):
    raise ValueError(word)


@tq.task
def flaky(token):
    """Raises (no retries, no dead letter) until ``test:fixed:<token>`` is set."""
    if not _redis().exists(f"test:fixed:{token}"):
        raise ValueError(f"{token} is broken")
    return f"{token} fixed"


@tq.task(ignore_result=True)
def quiet_boom(word):
    raise KeyError(word)


@tq.task
def nap(seconds):
    time.sleep(seconds)
    return seconds


def create_app(**config) -> Flask:
    """The dashboard test app; workers start it from ``TASKQ_BROKER_URL``."""
    app = Flask("dashboard")
    app.config.update(
        TASKQ_BROKER_URL=os.environ.get("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0"),
        TASKQ_DASHBOARD=True,
        SECRET_KEY="test secret",
        TASKQ_DASHBOARD_AUTH=(USER, PASSWORD),
    )
    app.config.update(config)
    tq.init_app(app)
    return app


@pytest.fixture
def dash(redis_url):
    return create_app(TASKQ_BROKER_URL=redis_url)


@pytest.fixture
def client(dash):
    return dash.test_client()


def get(client, path, **kw):
    return client.get(path, headers={**AUTH, **kw.pop("headers", {})}, **kw)


def token(client, page="/taskq/"):
    """The CSRF token of the client's session, as a page carries it."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', get(client, page).text)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post(client, path, fields, csrf=True, page="/taskq/failures", **kw):
    form = dict(fields)
    if csrf:
        form["csrf_token"] = token(client, page)
    return client.post(path, data=form, headers=AUTH, **kw)


def make_dead_letter(app, task, *args, reason="test: dead on purpose"):
    """Send ``task`` and move its message to the dead-letter store the way a worker does.
    Returns ``(task id, entry id)``."""
    state = app.extensions["taskq"]
    state.broker.ensure_groups(["default"])
    with app.app_context():
        res = task.delay(*args)
    [delivery] = state.broker.fetch("test-consumer", ["default"], 1, 0)
    state.broker.dead_letter(
        "test-consumer",
        delivery,
        reason,
        task.name,
        res.id,
        "Traceback (most recent call last):\nRuntimeError: on purpose\n",
    )
    [row] = [r for r in state.broker.dead_letters("default") if r["id"] == res.id]
    return res.id, row["entry_id"]


# -- mounting and protection ---------------------------------------------------------------
def test_not_mounted_unless_enabled(redis_url):
    app = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD=False)
    assert get(app.test_client(), "/taskq/").status_code == 404


def test_mounted_under_the_configured_prefix(redis_url):
    app = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_URL_PREFIX="/admin/jobs/")
    client = app.test_client()
    assert get(client, "/admin/jobs/").status_code == 200
    assert get(client, "/admin/jobs/queues").status_code == 200
    assert get(client, "/taskq/").status_code == 404


def test_without_auth_it_refuses_unless_debug(redis_url):
    app = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_AUTH=None)
    refused = app.test_client().get("/taskq/")
    assert refused.status_code == 403
    assert "TASKQ_DASHBOARD_AUTH" in refused.text
    assert app.test_client().get("/taskq/metrics").status_code == 403
    app.debug = True
    page = app.test_client().get("/taskq/")
    assert page.status_code == 200
    assert "not protected" in page.text or "open to anyone" in page.text


def test_basic_auth(client):
    missing = client.get("/taskq/")
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic ")
    wrong = base64.b64encode(f"{USER}:nope".encode()).decode()
    assert client.get("/taskq/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert get(client, "/taskq/").status_code == 200
    # everything under the prefix is protected, the static files and metrics too
    for path in (
        "/taskq/static/dashboard.js",
        "/taskq/metrics",
        "/taskq/api/overview",
        "/taskq/task/x",
    ):
        assert client.get(path).status_code == 401, path
        assert get(client, path).status_code == 200, path


def test_callable_auth_gets_the_request(redis_url):
    seen = []

    def allow(request):
        seen.append(request.path)
        return request.headers.get("X-Team") == "ops"

    client = create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_AUTH=allow).test_client()
    assert client.get("/taskq/workers").status_code == 403
    assert client.get("/taskq/workers", headers={"X-Team": "ops"}).status_code == 200
    assert seen == ["/taskq/workers", "/taskq/workers"]


def test_a_wrong_auth_setting_fails_at_init(redis_url):
    with pytest.raises(TypeError, match="TASKQ_DASHBOARD_AUTH"):
        create_app(TASKQ_BROKER_URL=redis_url, TASKQ_DASHBOARD_AUTH="admin:secret")


def test_security_headers(client):
    resp = get(client, "/taskq/")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-store"


# -- pages ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, text",
    [
        ("/taskq/", "Throughput"),
        ("/taskq/queues", "reports"),
        ("/taskq/workers", "No worker is running"),
        ("/taskq/failures", "No dead letters"),
        ("/taskq/periodic", "No periodic tasks"),
        ("/taskq/workflows", "No workflow data yet"),
        ("/taskq/task/unknown-id", "Nothing is known about this task yet"),
    ],
)
def test_every_page_renders(client, path, text):
    resp = get(client, path)
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert text in resp.text
    assert 'src="/taskq/static/dashboard.js' in resp.text


@pytest.mark.parametrize("page", ["overview", "queues", "workers", "failures", "periodic"])
def test_every_page_has_live_json(client, page):
    doc = get(client, f"/taskq/api/{page}").get_json()
    assert doc["page"] == page and doc["regions"]
    assert all(isinstance(html, str) for html in doc["regions"].values())


def test_live_updates_keep_the_page_filter(dash, client):
    make_dead_letter(dash, fragile, "f1")
    page = get(client, "/taskq/failures?queue=reports").text
    assert 'data-live="/taskq/api/failures?queue=reports"' in page
    assert "No dead letters" in page
    live = get(client, "/taskq/api/failures?queue=reports").get_json()
    assert "No dead letters" in live["regions"]["dead_letter_table"]
    live = get(client, "/taskq/api/failures").get_json()
    assert fragile.name in live["regions"]["dead_letter_table"]


def test_the_search_box_opens_a_task(client):
    resp = get(client, "/taskq/task?id=%20abc-123%20")
    assert resp.status_code == 302 and resp.location.endswith("/taskq/task/abc-123")


def test_overview_shows_a_running_worker_queues_and_charts(dash, client, start_worker):
    start_worker(
        "-P", "solo", "-n", "dash@test", "-Q", "default", app="tests.test_dashboard:create_app"
    )
    with dash.app_context():
        for res in [add.delay(i, i) for i in range(5)]:
            res.get(timeout=10)
        with pytest.raises(ValueError):
            boom.delay("bad").get(timeout=10)
        report.delay(1)  # no worker consumes "reports": it waits
    mon = Monitor(dash.extensions["taskq"].store.monitor)
    wait_until(
        lambda: mon.totals(5).get(("failed", "default", boom.name)),
        message="the counters published",
    )
    page = get(client, "/taskq/")
    assert "dash@test" in page.text
    doc = get(client, "/taskq/api/overview").get_json()
    assert "dash@test" in doc["regions"]["worker_table"]
    assert 'data-queue="reports"' in doc["regions"]["queue_table"]
    series = doc["charts"]
    assert len(series["minutes"]) == 60
    assert sum(series["processed"]) == 5 and sum(series["failed"]) == 1
    assert [r for r in series["failure_rate"] if r is not None][-1] == pytest.approx(16.7)
    queues = {
        q["name"]: q
        for q in data.queues(dash.extensions["taskq"], mon, mon.processes(), data.activity(mon))
    }
    assert queues["reports"]["ready"] == 1 and queues["default"]["consumers"] == 1
    workers = get(client, "/taskq/workers").text
    assert "dash@test" in workers and "solo pool" in workers


def test_periodic_page_shows_next_run(redis_url):
    app = create_app(
        TASKQ_BROKER_URL=redis_url,
        TASKQ_BEAT_SCHEDULE={"every-minute": {"task": add.name, "schedule": 60.0, "args": (1, 2)}},
    )
    text = get(app.test_client(), "/taskq/periodic").text
    assert "every-minute" in text and add.name in text
    assert "no beat is running" in text
    assert re.search(r"\(in (59|60)\.\d s\)|\(in 1 m 00 s\)", text), text


# -- tasks ---------------------------------------------------------------------------------
def test_task_page_of_a_dead_letter_shows_arguments_and_traceback(dash, client):
    task_id, entry = make_dead_letter(dash, fragile, "t1")
    page = get(client, f"/taskq/task/{task_id}").text
    assert fragile.name in page and "&#39;t1&#39;" in page
    assert "RuntimeError: on purpose" in page
    assert "test: dead on purpose" in page
    assert 'action="/taskq/tasks/retry"' in page and 'id="retry-disabled"' not in page
    assert f'value="{entry}"' in page


def test_retry_of_a_failed_task_runs_it_again(dash, client, start_worker, r):
    start_worker("-P", "solo", app="tests.test_dashboard:create_app")
    with dash.app_context():
        res = fragile.delay("t2")
        with pytest.raises(RuntimeError):
            res.get(timeout=10)
    state = dash.extensions["taskq"]
    wait_until(lambda: state.broker.dead_letter_count("default") == 1)
    page = get(client, f"/taskq/task/{res.id}").text
    assert "FAILURE" in page and "t2 is broken" in page
    r.set("test:fixed:t2", 1)
    resp = post(client, "/taskq/tasks/retry", {"task_id": res.id}, page=f"/taskq/task/{res.id}")
    assert resp.status_code == 303 and resp.location.endswith(f"/taskq/task/{res.id}")
    assert "Retrying task" in get(client, resp.location).text
    with dash.app_context():
        wait_until(lambda: res.state == "SUCCESS", message="the retried task succeeded")
        assert res.result == "t2 fixed"
    assert state.broker.dead_letter_count("default") == 0


def test_a_failure_without_dead_letter_is_listed_and_retried(dash, client, start_worker, r):
    start_worker("-P", "solo", app="tests.test_dashboard:create_app")
    with dash.app_context():
        res = flaky.delay("plain")
        with pytest.raises(ValueError):
            res.get(timeout=10)
    state = dash.extensions["taskq"]
    assert state.broker.dead_letter_count("default") == 0
    listing = wait_until(
        lambda: (
            (text := get(client, "/taskq/failures").text)
            and f'data-task-id="{res.id}"' in text
            and text
        ),
        message="the failure on the failures page (next heartbeat)",
    )
    row = listing[listing.index(f'<tr data-task-id="{res.id}"') :]
    row = row[: row.index("</tr>")]
    assert flaky.name in row and "ValueError: plain is broken" in row
    assert "&#39;plain&#39;" in row and 'action="/taskq/tasks/retry"' in row
    page = get(client, f"/taskq/task/{res.id}").text
    assert "FAILURE" in page and "Traceback" in page and 'id="retry-disabled"' not in page
    assert "kept with the recent failures" in page
    r.set("test:fixed:plain", 1)
    resp = post(client, "/taskq/tasks/retry", {"task_id": res.id, "next": "/taskq/failures"})
    assert resp.status_code == 303 and resp.location == "/taskq/failures"
    after = get(client, "/taskq/failures").text
    assert "Retrying task" in after and f'data-task-id="{res.id}"' not in after
    with dash.app_context():
        wait_until(lambda: res.state == "SUCCESS", message="the retried task succeeded")
        assert res.result == "plain fixed"
    again = post(client, "/taskq/tasks/retry", {"task_id": res.id}, follow_redirects=True)
    assert "cannot be retried" in again.text  # a second click sends nothing
    assert state.broker.queue_length("default") == 0


def test_a_retry_that_cannot_be_sent_keeps_the_failure(dash, client, monkeypatch):
    """The broker refusing the retried message: the error page, and the recent failure
    is put back with its message, so the retry can be made again (nothing lost)."""
    from flask_taskq.message import Message

    state = dash.extensions["taskq"]
    body = Message(id="t-kept", task=flaky.name, args=("kept",)).to_bytes(state.serializer)
    record = {"id": "t-kept", "task": flaky.name, "queue": "default", "time": time.time()}
    mon = data.monitor(state)
    mon.store.beat("p1", {}, 10, {}, [{**record, "worker": "w", "body": body}], 1000)

    def refuse(*args, **kwargs):
        raise redis.ConnectionError("refused by the test")

    monkeypatch.setattr(state.broker, "enqueue", refuse)
    resp = post(client, "/taskq/tasks/retry", {"task_id": "t-kept"})
    assert resp.status_code == 503 and "refused by the test" in resp.text
    kept = mon.failure("t-kept")
    assert kept is not None and kept["body"] == body
    assert state.broker.queue_length("default") == 0
    monkeypatch.undo()
    resp = post(client, "/taskq/tasks/retry", {"task_id": "t-kept"})
    assert resp.status_code == 303
    assert mon.failure("t-kept") is None and state.broker.queue_length("default") == 1


def test_a_failure_whose_message_is_not_kept_cannot_be_retried(dash, client):
    state = dash.extensions["taskq"]
    doc = {
        "status": "FAILURE",
        "task": boom.name,
        "exc_type": "ValueError",
        "exc_module": "builtins",
        "exc_message": "lost",
        "traceback": "Traceback: lost\n",
    }
    state.backend.store_many([("gone1", state.serializer.dumps(doc), True)], 60)
    page = get(client, "/taskq/task/gone1").text
    assert "ValueError: lost" in page
    assert 'id="retry-disabled"' in page and "arguments are not known" in page
    resp = post(
        client,
        "/taskq/tasks/retry",
        {"task_id": "gone1"},
        page="/taskq/task/gone1",
        follow_redirects=True,
    )
    assert "cannot be retried" in resp.text
    assert state.broker.queue_length("default") == 0


def test_task_page_shows_progress_and_result(dash, client):
    state = dash.extensions["taskq"]
    doc = {"status": "PROGRESS", "task": add.name, "result": {"current": 3, "total": 10}}
    state.backend.store_many([("p1", state.serializer.dumps(doc), False)], 60)
    page = get(client, "/taskq/task/p1").text
    assert '<progress id="task-progress" max="100" value="30.0">' in page
    assert "(3 of 10)" in page
    done = {
        "status": "SUCCESS",
        "task": add.name,
        "result": {"answer": 42},
        "date_done": time.time(),
    }
    state.backend.store_many([("p1", state.serializer.dumps(done), True)], 60)
    live = get(client, "/taskq/api/task/p1").get_json()["regions"]["task_panel"]
    assert "SUCCESS" in live and "&#34;answer&#34;: 42" in live and "<progress" not in live


def test_task_page_of_a_none_result_reads_the_short_and_the_full_document_alike(dash, client):
    state = dash.extensions["taskq"]
    short = {"status": "SUCCESS", "task": add.name, "date_done": 1796534344.754}
    full = {**short, "result": None}
    for task_id, doc in (("n-short", short), ("n-full", full)):
        state.backend.store_many([(task_id, state.serializer.dumps(doc), True)], 60)
    panels = [
        get(client, f"/taskq/api/task/{task_id}").get_json()["regions"]["task_panel"]
        for task_id in ("n-short", "n-full")
    ]
    assert "SUCCESS" in panels[0] and add.name in panels[0]
    assert panels[0].replace("n-short", "ID") == panels[1].replace("n-full", "ID")


def test_progress_reading():
    assert data.progress("PROGRESS", {"current": 1, "total": 4})["percent"] == 25.0
    assert data.progress("PROGRESS", {"percent": 120})["percent"] == 100.0
    assert data.progress("PROGRESS", {"current": 1, "total": 0}) is None
    assert data.progress("SUCCESS", {"current": 1, "total": 4}) is None
    assert data.progress("PROGRESS", "half") is None


# -- actions: CSRF and what they do ----------------------------------------------------------
def test_posts_need_the_csrf_token(dash, client):
    _, entry = make_dead_letter(dash, fragile, "c1")
    fields = {"queue": "default", "entry_id": entry}
    assert post(client, "/taskq/dead-letters/requeue", fields, csrf=False).status_code == 400
    forged = client.post(
        "/taskq/dead-letters/requeue", data={**fields, "csrf_token": "forged"}, headers=AUTH
    )
    assert forged.status_code == 400 and "CSRF" in forged.text
    other = dash.test_client()  # another session's token is no good either
    stolen = other.post(
        "/taskq/dead-letters/requeue", data={**fields, "csrf_token": token(client)}, headers=AUTH
    )
    assert stolen.status_code == 400
    assert dash.extensions["taskq"].broker.dead_letter_count("default") == 1
    by_header = client.post(
        "/taskq/dead-letters/requeue", data=fields, headers={**AUTH, "X-CSRF-Token": token(client)}
    )
    assert by_header.status_code == 303


def test_requeue_puts_the_message_back(dash, client):
    state = dash.extensions["taskq"]
    task_id, entry = make_dead_letter(dash, fragile, "rq")
    listing = get(client, "/taskq/failures").text
    assert f'data-entry="{entry}"' in listing and "test: dead on purpose" in listing
    resp = post(
        client,
        "/taskq/dead-letters/requeue",
        {"queue": "default", "entry_id": entry, "next": "/taskq/failures"},
    )
    assert resp.status_code == 303 and resp.location == "/taskq/failures"
    assert "Requeued dead letter" in get(client, "/taskq/failures").text
    assert state.broker.dead_letter_count("default") == 0
    assert state.broker.queue_length("default") == 1
    [delivery] = state.broker.fetch("check", ["default"], 1, 0)
    assert json.loads(delivery.body)["id"] == task_id
    again = post(
        client,
        "/taskq/dead-letters/requeue",
        {"queue": "default", "entry_id": entry},
        follow_redirects=True,
    )
    assert "No dead letter" in again.text


def test_delete_requeue_all_and_purge(dash, client):
    state = dash.extensions["taskq"]
    _, first = make_dead_letter(dash, fragile, "d1")
    make_dead_letter(dash, fragile, "d2")
    make_dead_letter(dash, fragile, "d3")
    post(client, "/taskq/dead-letters/delete", {"queue": "default", "entry_id": first})
    assert state.broker.dead_letter_count("default") == 2
    assert state.broker.dead_letter_get("default", first) is None
    post(client, "/taskq/dead-letters/requeue-all", {"queue": "default"})
    assert state.broker.dead_letter_count("default") == 0
    assert state.broker.queue_length("default") == 2
    make_dead_letter(dash, fragile, "d4")
    resp = post(client, "/taskq/dead-letters/purge", {"queue": "default"}, follow_redirects=True)
    assert "Deleted 1 dead letter of queue" in resp.text
    assert state.broker.dead_letter_count("default") == 0


def test_pause_and_resume_a_queue(dash, client):
    mon = Monitor(dash.extensions["taskq"].store.monitor)
    post(client, "/taskq/queues/pause", {"queue": "reports"}, page="/taskq/queues")
    assert mon.paused() == {"reports"}
    assert "paused" in get(client, "/taskq/queues").text
    post(client, "/taskq/queues/resume", {"queue": "reports"}, page="/taskq/queues")
    assert mon.paused() == set()


def test_redirects_stay_on_the_dashboard(dash, client):
    _, entry = make_dead_letter(dash, fragile, "n1")
    for target in ("https://evil.example/", "//evil.example/", "/elsewhere"):
        resp = post(
            client,
            "/taskq/dead-letters/delete",
            {"queue": "default", "entry_id": entry, "next": target},
        )
        assert resp.location == "/taskq/failures", target


def test_missing_fields_are_a_400(client):
    assert post(client, "/taskq/dead-letters/requeue", {"queue": "default"}).status_code == 400


def test_unreachable_redis_is_a_503(own_redis):
    app = create_app(TASKQ_BROKER_URL=own_redis.url)
    client = app.test_client()
    assert get(client, "/taskq/").status_code == 200
    own_redis.stop()
    page = get(client, "/taskq/")
    assert page.status_code == 503 and "Cannot reach Redis" in page.text
    api = get(client, "/taskq/api/overview")
    assert api.status_code == 503 and "Cannot reach Redis" in api.get_json()["error"]


def test_memory_broker_pages_render(monkeypatch):
    app = create_app(TASKQ_BROKER_URL="memory://")
    client = app.test_client()
    for path in (
        "/taskq/",
        "/taskq/queues",
        "/taskq/workers",
        "/taskq/failures",
        "/taskq/periodic",
        "/taskq/task/x",
        "/taskq/metrics",
    ):
        assert get(client, path).status_code == 200, path
    # the memory store monitors the app's in-process workers: no "not Redis" banner
    assert "The broker is not Redis" not in get(client, "/taskq/").text
