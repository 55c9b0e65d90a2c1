"""The task runs inside a fresh application context, with ``self.request`` describing
the message (:class:`~flask_taskq.task.Request`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...task import Request, reset_request, set_request
from .base import Context, Hook

if TYPE_CHECKING:
    from flask import Flask


class AppContext(Hook):
    """Pushes an app context of ``app`` and sets the request; pops and resets after."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def applies(self, task: Any, options: dict[str, Any]) -> bool:
        return task is not None

    def before(self, ctx: Context) -> bool:
        message = ctx.message
        delivery = ctx.delivery
        ctx.request = request = Request(
            message.id,
            message.task,
            message.args,
            message.kwargs,
            message.retries,
            message.queue,
            message.priority,
            message.eta,
            message.headers,
            delivery.deliveries if delivery is not None else 1,
            ctx.eager,
        )
        ctx.request_token = set_request(request)
        ctx.app_context = app_context = self.app.app_context()
        app_context.push()
        return True

    def finish(self, ctx: Context) -> None:
        try:
            if ctx.app_context is not None:
                ctx.app_context.pop(ctx.error)
        finally:
            reset_request(ctx.request_token)
