"""The dashboard's overview on ``memory://`` and on a real redis-server (the
``transport`` fixture): it reads workers, queues and failures through the transport and
the store, so the same page shows the same things on both."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from tests.apps.store_app import boom, create_app, echo
from tests.conftest import Transport, wait_until

APP = "tests.apps.store_app:create_app"


@pytest.fixture
def app(transport: Transport) -> Flask:
    """The app on ``transport`` with the dashboard mounted and a worker running its tasks."""
    transport.worker(app=APP, env={"TASKQ_RESULT_BACKEND": transport.url})
    return create_app(
        **transport.config(TASKQ_DASHBOARD=True, TASKQ_DASHBOARD_AUTH=lambda request: True)
    )


def overview(app: Flask) -> dict[str, Any]:
    resp = app.test_client().get("/taskq/api/overview")
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.get_json()
    assert doc["page"] == "overview"
    return doc


def test_overview_shows_the_worker_and_the_queue(app: Flask) -> None:
    with app.app_context():
        assert echo.delay(1).get(timeout=20) == 1
        with pytest.raises(Exception, match="7"):
            boom.delay(7).get(timeout=20)

    def worker_shown() -> str | None:
        regions = overview(app)["regions"]
        html = " ".join(regions.values())
        return html if 'id="no-workers"' not in html and "default" in html else None

    html = wait_until(worker_shown, timeout=15, message="a worker and the default queue")
    page = app.test_client().get("/taskq/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default" in page.text
    assert "not Redis" not in html
