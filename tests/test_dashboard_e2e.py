"""The dashboard in a real headless Chromium (Selenium), served by a real HTTP server, with
a real worker: the overview shows the worker and a chart, a failed task is retried from its
page, and the live update shows it succeed. Screenshots go to the test's tmp dir.

Needs Debian's ``chromium`` and ``chromium-driver``; installed here when missing if
``apt-get`` is available and we are root, otherwise the test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import pytest
from werkzeug.serving import make_server

from flask_taskq.monitor import Monitor
from tests.conftest import free_port, wait_until
from tests.test_dashboard import add, boom, create_app, fragile

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _browser_or_skip() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium "
            "chromium-driver) and cannot be installed here: not root or no apt-get"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=240, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
            check=True,
            capture_output=True,
            timeout=300,
            env=env,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"could not install chromium and chromium-driver: {exc}")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("chromium or chromedriver still missing after apt-get install")


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


@pytest.fixture
def served(redis_url):
    """The dashboard app behind a real HTTP server on a free port; its auth callable lets
    in requests from this machine."""
    app = create_app(
        TASKQ_BROKER_URL=redis_url,
        TASKQ_DASHBOARD_AUTH=lambda request: request.remote_addr == "127.0.0.1",
    )
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield app, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.mark.timeout(600)  # room for installing Chromium; the test itself takes ~15 s
def test_overview_worker_chart_and_retry_in_a_browser(served, browser, start_worker, r, tmp_path):
    from selenium.webdriver.common.by import By

    app, base = served
    start_worker(
        "-P", "solo", "-n", "e2e@test", "-Q", "default", app="tests.test_dashboard:create_app"
    )
    with app.app_context():
        for res in [add.delay(i, i) for i in range(8)]:
            res.get(timeout=10)
        with pytest.raises(ValueError):
            boom.delay("for the chart").get(timeout=10)
        failed = fragile.delay("e2e")
        with pytest.raises(RuntimeError):
            failed.get(timeout=10)
    state = app.extensions["taskq"]
    wait_until(lambda: state.broker.dead_letter_count("default") == 1)

    def found(css):
        return lambda: browser.find_elements(By.CSS_SELECTOR, css)

    # The overview: the running worker, and a throughput chart with bars (live-updated).
    browser.get(f"{base}/taskq/")
    wait_until(
        found('#workers tr[data-worker="e2e@test"]'),
        timeout=10,
        message="the worker on the overview",
    )
    wait_until(
        found("#chart-throughput svg rect.bar-processed"),
        timeout=10,
        message="bars in the throughput chart",
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-failure-rate svg path.line")
    wait_until(
        lambda: browser.find_element(By.ID, "live-status").text.startswith("live ·"),
        timeout=8,
        message="a live update",
    )
    browser.save_screenshot(str(tmp_path / "overview.png"))

    # Queues: pause "default" (the button asks first), so that the retried task waits.
    browser.get(f"{base}/taskq/queues")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-queue="default"] form button').click()
    browser.switch_to.alert.accept()
    wait_until(found('tr[data-queue="default"] .tag.warn'), timeout=5, message="paused")
    mon = Monitor(state.store.monitor)
    seen = wait_until(
        lambda: [p["heartbeat"] for p in mon.processes() if p["paused"] == ["default"]],
        message="the pause noticed",
    )
    # one heartbeat later any fetch begun before the pause is over
    wait_until(lambda: mon.processes()[0]["heartbeat"] > seen[0])

    # Failures: open the failed task from its dead letter.
    browser.get(f"{base}/taskq/failures")
    row = wait_until(found(f'#dead-letters tr[data-task-id="{failed.id}"]'), timeout=5)[0]
    row.find_element(By.CSS_SELECTOR, "a.id").click()
    wait_until(found('#task[data-status="FAILURE"]'), timeout=5, message="the task page")
    assert "e2e is broken" in browser.find_element(By.CSS_SELECTOR, "pre.traceback").text
    browser.save_screenshot(str(tmp_path / "failed-task.png"))

    # Retry: the message goes back to its (paused) queue; once the queue is resumed the
    # page, without a reload, sees the task succeed.
    r.set("test:fixed:e2e", 1)
    browser.find_element(By.CSS_SELECTOR, "form[action$='/tasks/retry'] button").click()
    wait_until(found(".flash.ok"), timeout=5, message="the retry confirmation")
    assert "Retrying task" in browser.find_element(By.CSS_SELECTOR, ".flash.ok").text
    # the old FAILURE is forgotten on requeue: the task waits, PENDING, in its queue
    assert browser.find_elements(By.CSS_SELECTOR, '#task[data-status="PENDING"]')
    assert state.broker.queue_length("default") == 1
    mon.resume(["default"])
    wait_until(
        found('#task[data-status="SUCCESS"]'),
        timeout=12,
        message="the retried task's success shown by the live update",
    )
    assert browser.find_elements(By.CSS_SELECTOR, ".flash.ok"), "the page was reloaded"
    assert "e2e fixed" in browser.find_element(By.CSS_SELECTOR, "pre.result").text
    browser.save_screenshot(str(tmp_path / "retried-task.png"))

    for name in ("overview.png", "failed-task.png", "retried-task.png"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
