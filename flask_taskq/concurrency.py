"""Per-key concurrency limits (``concurrency_key`` / ``concurrency_limit`` task options):
what a limit is, how a call's key is found, and the checks made when a task is declared.

At most ``concurrency_limit`` tasks of one task name with the same key run at once,
across every worker; the others wait in the store (``docs/concurrency.rst``). The
worker's hook (``worker/hooks/concurrency.py``) takes and gives back the slots.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import ConcurrencyKeyError
from .store.concurrency import ConcurrencyStore, KeyState

#: The key of every call of a task with a ``concurrency_limit`` and no key: the limit is
#: then on the task as a whole.
WHOLE_TASK = "*"
#: Key values longer than this are stored as a digest.
MAX_KEY_TEXT = 200

KeyFunction = Callable[[tuple[Any, ...], dict[str, Any]], str]


@dataclass(frozen=True, slots=True)
class Limit:
    """The limit of one task: how to find a call's key, and how many may run at once."""

    task: str
    limit: int
    key: KeyFunction

    def key_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The store key of a call: ``<task>:<key value>``; raises
        :class:`ConcurrencyKeyError` when the key cannot be found."""
        return f"{self.task}:{self.key(args, kwargs)}"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_KEY_TEXT:
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def _check_limit(task: str, limit: Any, where: str) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"{where} of task {task!r} must be an integer >= 1, not {limit!r}")
    return limit


def _signature(fn: Callable[..., Any], bind: bool) -> inspect.Signature | None:
    """``fn``'s signature as a call fills it (``self`` left out when bound); None when it
    has none."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    return signature.replace(parameters=params[1:]) if bind and params else signature


def _takes_any(signature: inspect.Signature) -> bool:
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())


def _named(
    task: str, signature: inspect.Signature | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A call's arguments by name, defaults included (those of ``*args`` stay
    positional); as they are when the task has no signature."""
    if signature is None:
        return args, kwargs
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ConcurrencyKeyError(
            f"task {task!r}: cannot find its concurrency key, the call does not match "
            f"the task's arguments ({exc})"
        ) from None
    bound.apply_defaults()
    named: dict[str, Any] = {}
    rest: tuple[Any, ...] = ()
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            named.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            rest = tuple(value)
        else:
            named[name] = value
    return rest, named


def key_function(task: str, fn: Callable[..., Any], bind: bool, key: Any) -> KeyFunction:
    """What finds a call's key, checked now as far as it can be. The call's arguments are
    matched to the task's parameters, so that positional ones have their names too; a
    string names one of them (or one ``**kwargs`` may bring); a callable is called with
    those of them it takes, by name. Raises :class:`ConcurrencyKeyError`."""
    if key is None:
        return lambda args, kwargs: WHOLE_TASK
    signature = _signature(fn, bind)
    names = [] if signature is None else list(signature.parameters)
    if isinstance(key, str):
        if not key.isidentifier():
            raise ConcurrencyKeyError(
                f"concurrency_key of task {task!r} must name an argument, not {key!r}"
            )
        if signature is not None and key not in names and not _takes_any(signature):
            raise ConcurrencyKeyError(
                f"concurrency_key {key!r} of task {task!r} is not one of its "
                f"arguments (they are: {', '.join(names) or 'none'})"
            )
        return _by_name(task, key, signature)
    if callable(key):
        _check_callable(task, key, signature)
        return _by_call(task, key, signature)
    raise ConcurrencyKeyError(
        f"concurrency_key of task {task!r} must be an argument name or a callable, "
        f"not {type(key).__name__}"
    )


def _check_callable(
    task: str, key: Callable[..., Any], signature: inspect.Signature | None
) -> None:
    """Refuse a key function that needs an argument the task does not take."""
    if signature is None or _takes_any(signature):
        return
    try:
        wanted = inspect.signature(key)
    except (TypeError, ValueError):
        return
    by_name = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [
        p.name
        for p in wanted.parameters.values()
        if p.kind in by_name and p.default is p.empty and p.name not in signature.parameters
    ]
    if missing:
        raise ConcurrencyKeyError(
            f"concurrency_key of task {task!r} needs {', '.join(missing)}, which is not one "
            f"of the task's arguments (they are: {', '.join(signature.parameters) or 'none'})"
        )


def _by_name(task: str, name: str, signature: inspect.Signature | None) -> KeyFunction:
    def find(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        _, named = _named(task, signature, args, kwargs)
        if name not in named:
            raise ConcurrencyKeyError(
                f"task {task!r}: its concurrency_key argument {name!r} is missing from the call"
            )
        return _text(named[name])

    return find


def _by_call(
    task: str, key: Callable[..., Any], signature: inspect.Signature | None
) -> KeyFunction:
    try:
        wanted = inspect.signature(key)
        takes: set[str] | None = None if _takes_any(wanted) else set(wanted.parameters)
    except (TypeError, ValueError):
        takes = None

    def find(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        rest, named = _named(task, signature, args, kwargs)
        if takes is not None and signature is not None:
            named = {k: v for k, v in named.items() if k in takes}
        try:
            value = key(*rest, **named)
        except Exception as exc:
            raise ConcurrencyKeyError(
                f"task {task!r}: its concurrency_key raised {type(exc).__name__}: {exc}"
            ) from exc
        if value is None:
            raise ConcurrencyKeyError(f"task {task!r}: its concurrency_key returned None")
        return _text(value)

    return find


def check_options(
    task: str, fn: Callable[..., Any], bind: bool, options: Mapping[str, Any]
) -> None:
    """At ``@tq.task``: refuse a bad ``concurrency_limit`` (ValueError) or
    ``concurrency_key`` (:class:`ConcurrencyKeyError`), and a key without a limit."""
    key, limit = options.get("concurrency_key"), options.get("concurrency_limit")
    if limit is None:
        if key is not None:
            raise ConcurrencyKeyError(
                f"task {task!r} has a concurrency_key but no concurrency_limit"
            )
        return
    _check_limit(task, limit, "concurrency_limit")
    key_function(task, fn, bind, key)


def check_config(limits: Any) -> None:
    """Refuse a malformed ``TASKQ_CONCURRENCY_LIMITS`` (ValueError), at ``init_app``."""
    if not isinstance(limits, Mapping):
        raise ValueError("TASKQ_CONCURRENCY_LIMITS must be a dict: task name -> limit")
    for task, value in limits.items():
        if isinstance(value, Mapping):
            unknown = set(value) - {"key", "limit"}
            if unknown or "limit" not in value:
                raise ValueError(
                    f"TASKQ_CONCURRENCY_LIMITS[{task!r}] must be a limit or "
                    '{"key": <argument name>, "limit": <n>}'
                )
            key = value.get("key")
            if key is not None and not (isinstance(key, str) and key.isidentifier()):
                raise ValueError(
                    f"TASKQ_CONCURRENCY_LIMITS[{task!r}]: key must name an argument, not {key!r}"
                )
            value = value["limit"]
        _check_limit(task, value, f"TASKQ_CONCURRENCY_LIMITS[{task!r}]")


def limit_of(
    task: str,
    fn: Callable[..., Any],
    bind: bool,
    options: Mapping[str, Any],
    config: Mapping[str, Any],
) -> Limit | None:
    """The limit in effect for a task: ``TASKQ_CONCURRENCY_LIMITS[task]`` (a limit, or a
    key and a limit) over the task's own options; None when it has none. Raises
    :class:`ConcurrencyKeyError` when the configured key names no argument."""
    key, limit = options.get("concurrency_key"), options.get("concurrency_limit")
    override = config.get(task)
    if isinstance(override, Mapping):
        key = override.get("key", key)
        limit = override["limit"]
    elif override is not None:
        limit = override
    if not limit:
        return None
    return Limit(task, int(limit), key_function(task, fn, bind, key))


def key_states(store: ConcurrencyStore, everything: bool = False) -> list[KeyState]:
    """The keys at their limit or with waiting messages (with ``everything``, every key
    noted and not yet found idle), most waiting first; for ``inspect`` and the
    dashboard."""
    states = [store.state(key) for key in store.noted()]
    if not everything:
        states = [s for s in states if s.waiting or (s.limit and s.holders >= s.limit)]
    return sorted(states, key=lambda s: (-s.waiting, -s.holders, s.key))
