"""Who may see the dashboard: ``TASKQ_DASHBOARD_AUTH``.

A callable receives the request and returns whether to serve it (a non-empty string
counts as yes and names the user in the log of the dashboard's actions); a ``(username,
password)`` pair asks for HTTP basic auth. Without either the dashboard answers 403,
unless the app runs in debug mode.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from flask import Request, Response, g

REALM = "flask-taskq dashboard"


def check_setting(setting: Any) -> None:
    """Refuse, at start-up, a ``TASKQ_DASHBOARD_AUTH`` that is neither None, a callable
    nor a pair of strings."""
    if setting is None or callable(setting):
        return
    if (
        isinstance(setting, tuple | list)
        and len(setting) == 2
        and all(isinstance(part, str) for part in setting)
    ):
        return
    raise TypeError(
        "TASKQ_DASHBOARD_AUTH must be a callable f(request) -> bool or a "
        f"(username, password) pair of strings, not {type(setting).__name__}"
    )


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def refusal(
    setting: Callable[[Request], bool] | tuple[str, str] | None, request: Request, debug: bool
) -> Response | None:
    """The response that refuses ``request``, or None to serve it."""
    if setting is None:
        if debug:
            return None
        return Response(
            "The flask-taskq dashboard is disabled: set TASKQ_DASHBOARD_AUTH "
            "(a callable or a (username, password) pair), or run the app in "
            "debug mode.\n",
            403,
            mimetype="text/plain",
        )
    if callable(setting):
        allowed = setting(request)
        if allowed:
            if isinstance(allowed, str):  # who it is: the actions' log names them
                g.taskq_user = allowed
            return None
        return Response("Forbidden.\n", 403, mimetype="text/plain")
    username, password = setting
    auth = request.authorization
    given = auth is not None and auth.type == "basic"
    # Both comparisons always run, so the time taken says nothing about which one failed.
    user_ok = _same(auth.username if given else None, username)  # type: ignore[union-attr]
    password_ok = _same(auth.password if given else None, password)  # type: ignore[union-attr]
    if given and user_ok and password_ok:
        return None
    return Response(
        "Authentication required.\n",
        401,
        mimetype="text/plain",
        headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
    )
