"""Workflows from the dashboard in a real headless Chromium (Selenium), served by a real
HTTP server, with a real worker: a task and a workflow template are launched from the
Launch form, a bad JSON argument is shown on the form, and a failed workflow is retried
with its graph page's button, the live graph then showing every task succeed.

Uses the browser fixture of ``tests/test_dashboard_e2e.py`` (skipped without Chromium).
"""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from werkzeug.serving import make_server

from tests.conftest import free_port, wait_until
from tests.test_dashboard_e2e import browser  # noqa: F401 - the fixture
from tests.test_dashboard_launch import WORKER_APP, create_app, runs


@pytest.fixture
def served(redis_url):
    """The app behind a real HTTP server; its auth callable names the local user."""
    app = create_app(
        TASKQ_BROKER_URL=redis_url,
        TASKQ_DASHBOARD_AUTH=lambda request: "e2e" if request.remote_addr == "127.0.0.1" else "",
    )
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.mark.timeout(600)  # room for installing Chromium; the test itself takes seconds
def test_launch_and_retry_in_a_browser(served, browser, start_worker, r, tmp_path, caplog):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _, base = served
    caplog.set_level(logging.INFO, "flask_taskq.dashboard")
    start_worker("-P", "threads", "-c", "4", app=WORKER_APP)

    def found(css):
        return lambda: browser.find_elements(By.CSS_SELECTOR, css)

    def fill(kind, name, args="", kwargs=""):
        browser.get(f"{base}/taskq/launch")
        Select(browser.find_element(By.NAME, "kind")).select_by_value(kind)
        for field, value in (("name", name), ("args", args), ("kwargs", kwargs)):
            element = browser.find_element(By.NAME, field)
            element.clear()
            element.send_keys(value)
        browser.find_element(By.CSS_SELECTOR, "#launch-form button[type=submit]").click()

    # A task: its page shows it succeed.
    fill("task", "tests.test_dashboard_launch.add", args="[20, 22]")
    wait_until(found('#task[data-status="SUCCESS"]'), timeout=10, message="the task's success")
    assert "42" in browser.find_element(By.CSS_SELECTOR, "pre.result").text
    assert "Launched task" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text

    # Bad JSON: the form says so, with what was typed, and nothing is sent.
    fill("task", "tests.test_dashboard_launch.add", args="[20, ")
    error = wait_until(found("#launch-error"), timeout=5, message="the error")[0]
    assert "args: not valid JSON" in error.text
    assert browser.find_element(By.NAME, "args").get_attribute("value") == "[20, "

    # A template that fails in one member of its group: the graph page shows the failure.
    day = uuid.uuid4().hex[:8]
    bad = f"bad-{day}"
    fill("template", "report", kwargs=f'{{"day": "{day}", "broken": "{bad}"}}')
    wait_until(found("#workflow-graph"), timeout=10, message="the graph page")
    assert "/taskq/workflows/" in browser.current_url
    wait_until(found(".task-head .status-FAILURE"), timeout=15, message="the failure shown live")
    browser.save_screenshot(str(tmp_path / "failed-workflow.png"))

    # Retry with the button: only the failed member and what follows run again.
    r.set(f"test:fixed:{bad}", 1)
    browser.find_element(By.CSS_SELECTOR, "#retry-workflow button").click()
    wait_until(found(".flash.ok"), timeout=5, message="the retry confirmation")
    assert "Retrying workflow" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text
    wait_until(found(".task-head .status-SUCCESS"), timeout=15, message="the success shown live")
    assert not browser.find_elements(By.CSS_SELECTOR, '.wf-task[data-state="FAILURE"]')
    browser.save_screenshot(str(tmp_path / "retried-workflow.png"))
    assert (runs(r, f"g1-{day}"), runs(r, bad), runs(r, f"last-{day}")) == (1, 2, 1)
    # every action is in the log, with the name the auth callable gave
    assert "user 'e2e' from 127.0.0.1 launched task" in caplog.text
    assert "user 'e2e' from 127.0.0.1 launched workflow template 'report'" in caplog.text
    assert "user 'e2e' from 127.0.0.1 retried workflow" in caplog.text

    errors = [
        e
        for e in browser.get_log("browser")
        if e["level"] == "SEVERE" and "status of 400" not in e["message"]  # the bad JSON
    ]
    assert not errors, errors
