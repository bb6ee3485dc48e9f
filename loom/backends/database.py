"""DatabaseBackend: durable ``django.tasks`` backend; tasks run in ``manage.py loom worker``.

Configure::

    TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend",
                         "QUEUES": ["default", "reports"],
                         "OPTIONS": {"DATABASE": "default", "MAX_ATTEMPTS": 1}}}

``enqueue`` validates the task and its arguments, then inserts one row in the caller's
transaction on ``OPTIONS["DATABASE"]``: inside ``transaction.atomic()`` the task commits with the
user's data or not at all, and ``task_enqueued`` is sent when that transaction commits (at once
in autocommit). On PostgreSQL a trigger sends NOTIFY with the insert, so a worker wakes on commit
and a rolled-back enqueue wakes nobody.

Building the backend (which ``@task`` does at import time) touches no database and imports no
models; the first enqueue does.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.core import checks
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from loom import telemetry
from loom.codec import dumps
from loom.compat import (
    BaseTaskBackend,
    InvalidTask,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_enqueued,
)
from loom.conf import Options
from loom.events.tasks import inline_enqueued
from loom.exceptions import InvalidTaskArguments
from loom import results
from loom.records import NewTask
from loom.store import Store
from loom.task import Task as LoomTask


class DatabaseBackend(BaseTaskBackend):
    task_class = LoomTask

    # Tasks may be deferred with run_after.
    supports_defer = True
    # async def tasks run on the worker's event loop.
    supports_async_task = True
    # Results can be read from any thread or process.
    supports_get_result = True
    # Workers claim higher priority first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.config = Options.from_settings(self.options)
        self.store = Store(self.config.database)

    # -- validation ------------------------------------------------------------------------

    def validate_task(self, task: Task) -> None:
        if not isinstance(task, Task):
            raise InvalidTask(
                f"{task!r} is not a django.tasks.Task; decorate the function with "
                "@django.tasks.task before enqueueing it."
            )
        super().validate_task(task)

    def _check_importable(self, task: Task) -> None:
        """A worker imports the task by module path and runs it only if it finds this Task there."""
        if not _importable(task.module_path, task.func):
            raise InvalidTask(
                f"{task.module_path!r} does not import as a Task: the decorated function must be "
                "bound to its own name at module level (def f(...) under @task), so that a worker "
                "can find it by that path."
            )

    @staticmethod
    def _encode_arguments(args: Any, kwargs: Any) -> tuple[list, dict]:
        """Normalise and check the arguments in one pass; only when that fails, look for the
        argument to name in the error (the common case stays one encode per enqueue)."""
        args = list(args)
        kwargs = dict(kwargs)
        try:
            normalized = normalize_json(args), normalize_json(kwargs)
            dumps(normalized)
            return normalized
        except (TypeError, ValueError):
            pass
        for where, value in [*((f"argument {i}", v) for i, v in enumerate(args)),
                             *((f"keyword argument {k!r}", v) for k, v in kwargs.items())]:
            try:
                dumps(normalize_json(value))
            except (TypeError, ValueError) as exc:
                raise InvalidTaskArguments(
                    f"Task {where} cannot be stored as JSON ({exc}); pass JSON-serialisable values "
                    "(str, int, float, bool, None, lists and dicts of them), e.g. a model's pk "
                    "instead of the model instance."
                ) from None
        return normalize_json(args), normalize_json(kwargs)

    # -- enqueue ---------------------------------------------------------------------------

    def _build(self, task: Task, calls: Iterable[tuple[Any, Any]], now: datetime) -> list[NewTask]:
        """Validate the task once and every call's arguments; nothing is written here."""
        from loom.models import uuid7

        self.validate_task(task)
        self._check_importable(task)
        max_attempts = getattr(task, "max_attempts", None) or self.config.max_attempts
        timeout = getattr(task, "timeout", None) or self.config.timeout
        hard_timeout = getattr(task, "hard_timeout", None) or (
            None if timeout is None else timeout + self.config.hard_timeout_grace)
        concurrency_key = getattr(task, "concurrency_key", None)
        flow: dict[str, Any] = dict(
                    unique_key=getattr(task, "unique_key", None), unique_window=getattr(task, "unique_window", None),
                    unique_replace=getattr(task, "replace", False), concurrency_key=concurrency_key,
                    concurrency_limit=getattr(task, "concurrency_limit", 1) if concurrency_key else None,
                    fair_key=getattr(task, "fair_key", None), atomic=getattr(task, "atomic", False))
        built = []
        for args, kwargs in calls:
            args, kwargs = self._encode_arguments(args, kwargs)
            built.append(NewTask(
                id=uuid7(),
                task_path=task.module_path,
                backend=self.alias,
                queue_name=task.queue_name,
                priority=task.priority,
                args=args,
                kwargs=kwargs,
                run_after=task.run_after,
                available_at=task.run_after or now,
                enqueued_at=now,
                max_attempts=max_attempts,
                timeout=timeout,
                hard_timeout=hard_timeout,
                trace_context=telemetry.carrier(),
                **flow,
            ))
        return built

    def _result_for(self, task: Task, record) -> TaskResult:
        return results.build(task, id=str(record.id), status=TaskResultStatus.READY, enqueued_at=record.enqueued_at,
                             args=record.args, kwargs=record.kwargs, backend=self.alias)

    def _announce(self, enqueued: list[TaskResult], event_sent: bool = False) -> None:
        extra = {"loom_event_sent": True} if event_sent else {}

        def send() -> None:
            for result in enqueued:
                task_enqueued.send(type(self), task_result=result, **extra)

        transaction.on_commit(send, using=self.store.alias)

    @telemetry.traced_enqueue
    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        now = timezone.now()
        [record] = self._build(task, [(args, kwargs)], now)
        if record.unique_key is not None:
            return self._enqueue_unique(task, record, now)
        result = self._result_for(task, record)
        event = inline_enqueued(self.store.alias, result) if self.store.vendor == "postgresql" else None
        self.store.insert([record], notify=event)
        self._announce([result], event_sent=event is not None)
        return result

    def _enqueue_unique(self, task: Task, record: NewTask, now: datetime) -> TaskResult:
        """The new task, or the one that holds its unique key (same id, its own state)."""
        holder = self.store.insert_unique(record, now)
        if holder == str(record.id):
            result = self._result_for(task, record)
            self._announce([result])
            return result
        return self.get_result(holder)

    @telemetry.traced_enqueue
    def enqueue_many(self, task: Task, calls: Iterable[tuple[Any, Any]]) -> list[TaskResult]:
        """Enqueue many calls of one task in one statement (COPY on PostgreSQL), atomically
        with the caller's transaction; every call is validated before anything is written."""
        now = timezone.now()
        records = self._build(task, calls, now)
        if not records:
            return []
        if records[0].unique_key is not None:  # one key for all the calls: each after the other
            with transaction.atomic(using=self.store.alias):
                return [self._enqueue_unique(task, record, now) for record in records]
        self.store.insert(records)
        enqueued = [self._result_for(task, record) for record in records]
        self._announce(enqueued)
        return enqueued

    # -- results ---------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult:
        from django.core.exceptions import ValidationError

        from loom.models import TaskRecord

        try:
            record = TaskRecord.objects.using(self.store.alias).get(pk=result_id, backend=self.alias)
        except (TaskRecord.DoesNotExist, ValidationError, ValueError, TypeError):
            raise TaskResultDoesNotExist(result_id) from None
        return self.result_from_record(record)

    def result_from_record(self, record) -> TaskResult:
        """Rebuild Django's TaskResult from a row, with the Task as it was enqueued."""
        try:
            task = import_string(record.task_path)
        except ImportError:
            raise TaskResultDoesNotExist(
                f"{record.id}: its task {record.task_path!r} no longer imports"
            ) from None
        if not isinstance(task, Task):
            raise TaskResultDoesNotExist(f"{record.id}: {record.task_path!r} is not a Task")
        task = task.using(
            priority=record.priority,
            queue_name=record.queue_name,
            run_after=record.run_after,
            backend=self.alias,
        )
        return results.from_record(task, record)

    # -- checks ----------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        from django.conf import settings

        messages = []
        if self.config.database not in settings.DATABASES:
            messages.append(
                checks.Error(
                    f"TASKS[{self.alias!r}]['OPTIONS']['DATABASE'] is {self.config.database!r}, "
                    "which is not in DATABASES.",
                    hint="Set it to one of the aliases in DATABASES.",
                    id="loom.E001",
                )
            )
        return messages


@functools.lru_cache(maxsize=4096)
def _importable(path: str, func: Any) -> bool:
    try:
        found = import_string(path)
    except ImportError:
        return False
    return isinstance(found, Task) and found.func is func
