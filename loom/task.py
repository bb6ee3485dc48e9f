"""``loom.task.Task``: Django's Task with loom's per-task options, and nothing else.

It is the backend's ``task_class``, so on Django 6.1 (and on 5.2 with the ``django-tasks``
backport) extra keyword arguments of the stock decorator land here:
``@task(max_attempts=5, retry_backoff=2.0)``. On Django 6.0 the decorator accepts no extras; the
fields keep their defaults and the backend's OPTIONS apply.
It stays a frozen dataclass and pickles by module path, like Django 6.1's own Task (on Django 6.0
and the 5.2 backport, whose Task cannot be pickled, this class adds that).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.utils.module_loading import import_string

from loom.compat import Task as DjangoTask


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
