"""The one place loom builds Django's ``TaskResult``: from a stored row, a claimed task, or a run.

Django's ``TaskResult`` is a frozen dataclass whose return value is an ``init=False`` field; the
only way to give a result its value is to set it on a new object, once, here. Callers never
change a result in place: they build a new one (``build``), or derive one from another with
``dataclasses.replace`` through ``with_value``. ``errors`` may be loom's stored entries (dicts with
extra keys, see ``loom.records.error_entry``) or Django ``TaskError``s; Django gets its two keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from loom.compat import AnyTask, AnyTaskResult, TaskError, TaskResultStatus, TaskResult


def task_errors(entries: Iterable[Any]) -> list[TaskError]:
    """Django's TaskError for each stored entry (it takes only its own two keys)."""
    return [e if isinstance(e, TaskError) else
            TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
            for e in entries]


def build(task: AnyTask, *, id: str, status: str, enqueued_at: datetime | None, args: list, kwargs: dict,
          backend: str, started_at: datetime | None = None, finished_at: datetime | None = None,
          last_attempted_at: datetime | None = None, errors: Iterable[Any] = (),
          worker_ids: Iterable[str] = (), return_value: Any = None) -> AnyTaskResult:
    """A new TaskResult; ``return_value`` is kept only for a SUCCESSFUL one, as Django does."""
    status = TaskResultStatus.FAILED if status == "CANCELLED" else TaskResultStatus(status)
    result: AnyTaskResult = TaskResult(
        task=task, id=id, status=status, enqueued_at=enqueued_at, started_at=started_at,
        finished_at=finished_at, last_attempted_at=last_attempted_at, args=args, kwargs=kwargs,
        backend=backend, errors=task_errors(errors), worker_ids=list(worker_ids),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", return_value)  # init=False: set once, on a new result
    return result


def with_value(result: AnyTaskResult, **changes: Any) -> AnyTaskResult:
    """A new result from ``result`` with ``changes`` (and the same return value unless given)."""
    value = changes.pop("return_value", getattr(result, "_return_value", None))
    changes.setdefault("errors", list(result.errors))
    changes.setdefault("worker_ids", list(result.worker_ids))
    new = replace(result, **changes)
    object.__setattr__(new, "_return_value", value if new.status == TaskResultStatus.SUCCESSFUL else None)
    return new


def from_record(task: AnyTask, record: Any) -> AnyTaskResult:
    """What ``get_result`` returns for a row (a CANCELLED row reads as FAILED: see docs/backend.md)."""
    return build(task, id=str(record.id), status=record.status, enqueued_at=record.enqueued_at,
                 started_at=record.started_at, finished_at=record.finished_at,
                 last_attempted_at=record.last_attempted_at, args=record.args, kwargs=record.kwargs,
                 backend=record.backend, errors=record.errors, worker_ids=record.worker_ids,
                 return_value=record.return_value)


def from_claimed(task: AnyTask, claimed: Any, *, status: str = TaskResultStatus.RUNNING,
                 finished_at: datetime | None = None, errors: Iterable[Any] | None = None,
                 return_value: Any = None) -> AnyTaskResult:
    """The result a running task sees (and its signals carry), at the start or end of a run."""
    return build(task, id=claimed.id, status=status, enqueued_at=claimed.enqueued_at,
                 started_at=claimed.started_at, finished_at=finished_at,
                 last_attempted_at=claimed.last_attempted_at, args=claimed.args, kwargs=claimed.kwargs,
                 backend=claimed.backend, errors=claimed.errors if errors is None else errors,
                 worker_ids=claimed.worker_ids, return_value=return_value)
