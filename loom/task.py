"""``loom.task.Task``: Django's Task with loom's per-task options, and nothing else.

It is the backend's ``task_class``, so on Django 6.1 extra keyword arguments of the stock
decorator land here: ``@django.tasks.task(max_attempts=5, retry_backoff=2.0)``. On Django 6.0
the decorator accepts no extras; the fields keep their defaults and the backend's OPTIONS apply.
It stays a frozen dataclass and pickles by module path like Django's own Task.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.tasks import Task as DjangoTask


@dataclass(frozen=True, slots=True, kw_only=True)
class Task(DjangoTask):
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
