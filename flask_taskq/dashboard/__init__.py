"""The dashboard: a blueprint that shows queues, workers, tasks, failures and periodic
tasks, with live charts, and serves the Prometheus metrics. ``TASKQ_DASHBOARD = True``
mounts it at ``TASKQ_DASHBOARD_URL_PREFIX``; ``TASKQ_DASHBOARD_AUTH`` says who may see it.
See ``docs/dashboard.rst``.

.. versionadded:: 0.2
"""

from __future__ import annotations

from flask import Flask

from . import concurrency, launch  # noqa: F401 - register their routes
from .auth import check_setting
from .views import blueprint

__all__ = ["blueprint", "init_dashboard"]


def url_prefix(value: str | None) -> str:
    """``TASKQ_DASHBOARD_URL_PREFIX`` as Flask wants it: a leading slash, no trailing one
    (``""`` mounts the dashboard at the root)."""
    value = (value or "").strip().strip("/")
    return f"/{value}" if value else ""


def init_dashboard(app: Flask) -> None:
    """Mount the dashboard on ``app`` (once) at ``TASKQ_DASHBOARD_URL_PREFIX``; a
    ``TASKQ_DASHBOARD_AUTH`` of the wrong type raises ``TypeError`` here."""
    check_setting(app.config.get("TASKQ_DASHBOARD_AUTH"))
    if blueprint.name in app.blueprints:
        return
    app.register_blueprint(
        blueprint, url_prefix=url_prefix(app.config.get("TASKQ_DASHBOARD_URL_PREFIX"))
    )
