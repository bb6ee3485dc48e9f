"""``loom.task.Task``: Django's Task with loom's per-task options, and nothing else.

It is the backend's ``task_class``, so on Django 6.1 (and on 5.2 with the ``django-tasks``
backport) extra keyword arguments of the stock decorator land here:
``@task(max_attempts=5, retry_backoff=2.0)``. On Django 6.0 the decorator accepts no extras; the
fields keep their defaults and the backend's OPTIONS apply.
It stays a frozen dataclass and pickles by module path, like Django 6.1's own Task (on Django 6.0
and the 5.2 backport, whose Task cannot be pickled, this class adds that).

``using()`` takes every option below besides Django's four, so per-call values are natural:
``send_receipt.using(unique_key=f"order-{order.id}").enqueue(order.id)``. Options are checked
when a task is defined and at every ``using()``: a bad value is a clear ``InvalidTask`` there,
never a surprise in a worker. What flow-control options guarantee: docs/flow-control.md.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields, replace
from typing import Any

from django.utils.module_loading import import_string

from loom.compat import InvalidTask
from loom.compat import Task as DjangoTask

# loom's options, as using() accepts them (Django's own four are not in this list).
OPTIONS = ("max_attempts", "retry_backoff", "retry_on", "timeout", "hard_timeout", "unique_key",
           "unique_window", "replace", "concurrency_key", "concurrency_limit", "fair_key", "atomic")
# Longest key loom stores (unique, concurrency and fair keys are indexed columns).
MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(DjangoTask):  # type: ignore[type-arg]  # Django's Task is generic only in django-stubs
    # Runs before a failure is final; None takes the backend's OPTIONS["MAX_ATTEMPTS"].
    max_attempts: int | None = None
    # Seconds before the first retry; each later retry waits twice as long (with jitter).
    retry_backoff: float = 1.0
    # Exception classes that are worth a retry; anything else fails at once.
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    # Seconds a run may take before it is stopped (see the worker docs for what each executor can do).
    timeout: float | None = None
    # Seconds after which the process running the task is killed; None: timeout + OPTIONS grace.
    hard_timeout: float | None = None
    # While a task of this path with this key waits or runs, enqueue returns it instead of a new one.
    unique_key: str | None = None
    # Seconds after it finished that such a task still counts (None: only while it waits or runs).
    unique_window: float | None = None
    # With unique_key: enqueue over a waiting duplicate replaces its arguments and run_after.
    replace: bool = False
    # At most concurrency_limit tasks with this key run at once, across every worker.
    concurrency_key: str | None = None
    concurrency_limit: int = 1
    # Claims rotate between keys (a tenant, a user) within a queue and a priority.
    fair_key: str | None = None
    # The body runs in transaction.atomic() on the backend's database, and its success is written
    # in that same transaction: its database effects commit exactly once (docs/workflows.md).
    atomic: bool = False

    def __post_init__(self) -> None:
        check_options(self)
        DjangoTask.__post_init__(self)

    def using(self, *, priority: int | None = None, queue_name: str | None = None, run_after: Any = None,
              backend: str | None = None, **options: Any) -> "Task":
        """A copy with other defaults: Django's four, and any of loom's options."""
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InvalidTask(f"using() got unknown option(s) {', '.join(unknown)}; loom's options are "
                              f"{', '.join(OPTIONS)} (and Django's priority, queue_name, run_after, backend).")
        changes: dict[str, Any] = {name: value for name, value in (
            ("priority", priority), ("queue_name", queue_name), ("run_after", run_after), ("backend", backend))
            if value is not None}
        return replace(self, **changes, **options)

    def __reduce__(self) -> tuple[Any, ...]:
        # The function is stored by module path: its module-level name is bound to the Task, so
        # pickle cannot find the bare function by reference.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["func"] = self.module_path
        return (_reconstruct, (type(self), state))


def _reconstruct(cls: type[Task], state: dict[str, Any]) -> Task:
    path = state["func"]
    try:
        state["func"] = import_string(path).func
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"Expected {path!r} to point to a Task instance.") from exc
    return cls(**state)


def _check_key(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not value:
        raise InvalidTask(f"{name} must be a non-empty string or None, got {value!r}.")
    if len(value) > MAX_KEY_LENGTH:
        raise InvalidTask(f"{name} is {len(value)} characters long; at most {MAX_KEY_LENGTH} are stored. "
                          "Use a shorter key (e.g. a hash of the long one).")
    if "\x00" in value or not value.encode("utf-8", "surrogatepass").decode("utf-8", "ignore") == value:
        raise InvalidTask(f"{name} {value!r} contains NUL or a lone surrogate, which no database "
                          "stores as text: use printable characters.")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_options(task: Any) -> None:
    """Raise InvalidTask naming the option and the fix; called at definition and using()."""
    max_attempts = task.max_attempts
    if max_attempts is not None and (not isinstance(max_attempts, int) or isinstance(max_attempts, bool)
                                     or max_attempts < 1):
        raise InvalidTask(f"max_attempts must be a whole number >= 1, got {max_attempts!r}.")
    if not _number(task.retry_backoff) or task.retry_backoff < 0:
        raise InvalidTask(f"retry_backoff must be a number of seconds >= 0, got {task.retry_backoff!r}.")
    retry_on = task.retry_on
    if not isinstance(retry_on, tuple) or not all(isinstance(c, type) and issubclass(c, BaseException)
                                                  for c in retry_on):
        raise InvalidTask(f"retry_on must be a tuple of exception classes, got {retry_on!r}.")
    for name in ("timeout", "hard_timeout"):
        value = getattr(task, name)
        if value is not None and (not _number(value) or value <= 0):
            raise InvalidTask(f"{name} must be a number of seconds > 0, got {value!r}.")
    for name in ("unique_key", "concurrency_key", "fair_key"):
        _check_key(name, getattr(task, name))
    if not isinstance(task.replace, bool):
        raise InvalidTask(f"replace must be True or False, got {task.replace!r}.")
    if task.unique_window is not None and (not _number(task.unique_window) or task.unique_window <= 0):
        raise InvalidTask(f"unique_window must be a number of seconds > 0, got {task.unique_window!r}.")
    if task.unique_key is None and (task.unique_window is not None or task.replace):
        raise InvalidTask("unique_window and replace only apply with a unique_key: set unique_key too.")
    if task.replace and task.unique_window is not None:
        raise InvalidTask("replace=True debounces tasks that wait; it does not combine with unique_window "
                          "(which keeps finished tasks unique): choose one.")
    limit = task.concurrency_limit
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidTask(f"concurrency_limit must be a whole number >= 1, got {limit!r}.")
    if limit != 1 and task.concurrency_key is None:
        raise InvalidTask("concurrency_limit only applies with a concurrency_key: set concurrency_key too.")
    if not isinstance(task.atomic, bool):
        raise InvalidTask(f"atomic must be True or False, got {task.atomic!r}.")
    if task.atomic and inspect.iscoroutinefunction(task.func):
        raise InvalidTask("atomic=True needs a plain (def) function: Django's transactions do not span "
                          "an async function's awaits. Make the task a def, or drop atomic.")
