"""What every dashboard page shares: the context its template reads as ``c`` and how
often its live regions are polled. Both ``views`` and ``workflows`` build pages on it."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app

from ..version import __version__
from . import csrf

#: Milliseconds between two polls of a page's live regions.
POLL_INTERVAL_MS = 3000


def base_context(**extra: Any) -> dict[str, Any]:
    """What every page's template reads (``c``): the CSRF token, the time, the version,
    whether the dashboard is open to anyone, and ``extra``."""
    return {
        "csrf": csrf.token(),
        "now": time.time(),
        "version": __version__,
        "unprotected": current_app.config.get("TASKQ_DASHBOARD_AUTH") is None,
        **extra,
    }
