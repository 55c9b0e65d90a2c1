"""Named workflow templates: workflows declared in code under a name, launched later (from
the dashboard's Launch page or from Python) with parameters filled in at that time.

A template is either a canvas, whose first task (each member's, for a group or chord
header) gets the launch arguments prepended, as ``canvas.apply_async(args, kwargs)``
does::

    tq.workflow("nightly-report", chain(fetch.s(), group(sales.s(), stock.s()), mail.s()))
    tq.workflows.launch("nightly-report", ["2026-12-05"])  # fetch("2026-12-05"), ...

or a function that builds the canvas from named parameters, registered with
``tq.workflow(name)`` as a decorator (or ``tq.workflow(name, function)``)::

    @tq.workflow("rebuild-index")
    def rebuild_index(shard: int, full: bool = False):
        return chain(dump.s(shard, full=full), group(index.s(i) for i in range(4)), swap.s())

    tq.workflows.launch("rebuild-index", kwargs={"shard": 3})

The function's signature is the template's parameter list: a launch whose arguments do
not fit it (a missing parameter, an unknown keyword) is refused with
:class:`TemplateError` before anything is sent.

.. versionadded:: 0.2
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from .canvas import Canvas

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["TemplateError", "WorkflowTemplate", "WorkflowTemplates"]

Factory = Callable[..., Canvas]


class TemplateError(ValueError):
    """A launch was refused: unknown template, or arguments that do not fit it. Its
    message is one line, fit for a form or a terminal."""


@dataclass(frozen=True)
class WorkflowTemplate:
    """One named template: a canvas, or a function returning one."""

    name: str
    target: Canvas | Factory
    description: str = ""

    @property
    def is_factory(self) -> bool:
        """True when the template is a function of its parameters."""
        return not isinstance(self.target, Canvas)

    @property
    def parameters(self) -> str:
        """The parameters as a Python signature (``(day, region='eu')``), or a note saying
        that arguments are prepended to the first task's."""
        target = self.target
        if isinstance(target, Canvas):
            return "(*args, **kwargs) given to the first task(s)"
        try:  # annotations as the source wrote them, also under "from __future__ import"
            return str(inspect.signature(target, eval_str=True))
        except Exception:  # an annotation that does not evaluate: shown as written
            return str(inspect.signature(target))

    def build(self, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Canvas:
        """The canvas to send, with a factory called with ``args`` and ``kwargs``; raises
        :class:`TemplateError` when they do not fit its parameters."""
        kwargs = kwargs or {}
        factory = self.target
        if isinstance(factory, Canvas):
            return factory.clone()
        try:
            inspect.signature(factory).bind(*args, **kwargs)
        except TypeError as exc:
            raise TemplateError(f"wrong parameters for workflow {self.name!r}: {exc}") from None
        flow = factory(*args, **kwargs)
        if not isinstance(flow, Canvas):
            raise TemplateError(
                f"workflow template {self.name!r} returned {type(flow).__name__}, "
                "not a signature, chain, group or chord"
            )
        return flow

    def launch(
        self,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
    ) -> Any:
        """Send the workflow: a factory's canvas as built, a canvas template with ``args``
        and ``kwargs`` given to its first task(s). Returns the result handle
        (:class:`~flask_taskq.AsyncResult` or :class:`~flask_taskq.GroupResult`); its
        ``id`` is the workflow's id on the dashboard."""
        flow = self.build(args, kwargs)
        if self.is_factory:
            return flow.apply_async(app=app)
        return flow.apply_async(tuple(args), kwargs or None, app=app)


class WorkflowTemplates:
    """The templates of one :class:`~flask_taskq.TaskQueue` (``tq.workflows``)."""

    def __init__(self) -> None:
        self._templates: dict[str, WorkflowTemplate] = {}

    @overload
    def register(
        self, name: str, target: None = None, *, description: str | None = None
    ) -> Callable[[Factory], Factory]: ...

    @overload
    def register(
        self, name: str, target: Canvas | Factory, *, description: str | None = None
    ) -> WorkflowTemplate: ...

    def register(
        self, name: str, target: Canvas | Factory | None = None, *, description: str | None = None
    ) -> WorkflowTemplate | Callable[[Factory], Factory]:
        """Register ``target`` (a canvas or a function returning one) as ``name``;
        without ``target``, a decorator for the function. A name registered again is
        replaced. The description defaults to the function's docstring."""
        if not name or not isinstance(name, str):
            raise ValueError("a workflow template needs a non-empty name")
        if target is None:

            def decorator(factory: Factory) -> Factory:
                self.register(name, factory, description=description)
                return factory

            return decorator
        if not isinstance(target, Canvas) and not callable(target):
            raise TypeError(
                "a workflow template is a signature, chain, group or chord, or a function "
                f"returning one, not {type(target).__name__}"
            )
        if description is None:
            doc = "" if isinstance(target, Canvas) else inspect.getdoc(target) or ""
            description = doc.strip().split("\n\n")[0].replace("\n", " ")
        template = WorkflowTemplate(name, target, description)
        self._templates[name] = template
        return template

    def get(self, name: str) -> WorkflowTemplate:
        """The template ``name``; :class:`TemplateError` if there is none."""
        template = self._templates.get(name)
        if template is None:
            known = ", ".join(sorted(self._templates)) or "none"
            raise TemplateError(f"unknown workflow template {name!r} (registered: {known})")
        return template

    def launch(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        app: Flask | None = None,
    ) -> Any:
        """Send the template ``name`` (see :meth:`WorkflowTemplate.launch`)."""
        return self.get(name).launch(args, kwargs, app)

    def __contains__(self, name: object) -> bool:
        return name in self._templates

    def __iter__(self) -> Iterator[WorkflowTemplate]:
        return iter(sorted(self._templates.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._templates)
