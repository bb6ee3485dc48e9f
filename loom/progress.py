"""Task progress: a running task says how far it got; the row stores it; anyone can read it.

In a task::

    from loom import progress

    @task(takes_context=True)
    def build_report(context, rows):
        reporter = progress.for_context(context)
        for i, row in enumerate(rows, 1):
            ...
            reporter.update(i, len(rows), f"row {i}")

    @task
    def export():                       # no context needed: the worker knows which task runs
        progress(3, 10, "uploading")    # the module itself is callable: progress.report(...)

    @task
    async def crawl(urls):
        await progress.areport(1, len(urls))

Reading it: ``progress.get_progress(result_or_id)`` returns a ``Progress`` (or None before the
first report); the server-sent-events view and ``{% loom_progress %}`` show it live.

Writes are throttled per task: at most one every ``DEFAULT_INTERVAL`` seconds (the first report
and the one that reaches ``total`` are always written; the last one held back is written when the
task finishes), so a tight loop does not hammer the database. Each write also publishes a
``progress`` event (``loom.events``). A report is ignored (returns False) outside a running task —
e.g. when a test calls the function directly — and once the task is no longer RUNNING. Inside a
task's own ``transaction.atomic()`` the write becomes visible when that transaction commits.
"""

from __future__ import annotations

import contextvars
import math
import sys
import threading
import time
import types
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.dispatch import receiver
from django.utils import timezone

from loom.compat import AnyTaskResult, TaskResult, task_finished, task_started

if TYPE_CHECKING:
    from loom.backends.database import DatabaseBackend

__all__ = ["Progress", "Reporter", "aget_progress", "areport", "for_context", "get_progress", "report"]

# Seconds between two stored reports of one task.
DEFAULT_INTERVAL = 0.5
# Reports held back (throttled) for at most this many tasks per process; older ones are dropped.
MAX_PENDING = 10_000

# (task id, backend alias) of the task running in this thread or coroutine, set by task_started.
_running: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("loom_progress_task", default=None)


@dataclass(frozen=True, slots=True)
class Progress:
    """What a task last reported. ``total`` is None when the task did not say how much there is."""

    current: float
    total: float | None
    message: str
    at: datetime | None

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.current / self.total))

    @property
    def percent(self) -> int | None:
        fraction = self.fraction
        return None if fraction is None else int(fraction * 100)

    def as_dict(self) -> dict[str, Any]:
        return {"current": self.current, "total": self.total, "message": self.message,
                "percent": self.percent, "at": self.at.isoformat() if self.at else None}


@dataclass(slots=True)
class _State:
    backend: str
    # Task path and queue, for the events; loaded from the row when the task did not start here.
    task_path: str | None = None
    queue_name: str | None = None
    last_write: float = -math.inf
    pending: tuple[float, float | None, str] | None = None


_states: dict[str, _State] = {}
_lock = threading.Lock()


def _check(current: Any, total: Any, message: Any) -> tuple[float, float | None, str]:
    def number(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"progress {name} must be a finite number, got {value!r}.")
        if value < 0:
            raise ValueError(f"progress {name} must be >= 0, got {value!r}.")
        return float(value)

    current = number("current", current)
    if total is not None:
        total = number("total", total)
        if total == 0:
            raise ValueError("progress total must be > 0 (pass total=None when it is unknown).")
    if not isinstance(message, str):
        raise TypeError(f"progress message must be a str, got {type(message).__name__}.")
    return current, total, message[:255]


def _current_task() -> tuple[str, str] | None:
    found = _running.get()
    if found is not None:
        return found
    from loom import execution

    var = getattr(execution, "current_task_id", None)  # set by the worker around each run
    task_id = var.get() if var is not None else None
    return (str(task_id), "default") if task_id else None


def _interval(backend: str) -> float:
    from loom.compat import task_backends

    try:
        value = getattr(getattr(task_backends[backend], "config", None), "progress_interval", None)
        return DEFAULT_INTERVAL if value is None else float(value)
    except Exception:
        return DEFAULT_INTERVAL


def report(current: float, total: float | None = None, message: str = "", *,
           task_id: str | None = None, backend: str = "default") -> bool:
    """Report progress of the running task (or of ``task_id``); True if it was stored now."""
    values = _check(current, total, message)
    if task_id is None:
        found = _current_task()
        if found is None:
            return False
        task_id, backend = found
    task_id = str(task_id)
    now = time.monotonic()
    with _lock:
        state = _states.get(task_id)
        if state is None:
            state = _remember(task_id, _State(backend=backend))
        reached_end = values[1] is not None and values[0] >= values[1]
        if not reached_end and now - state.last_write < _interval(state.backend):
            state.pending = values
            return False
        state.last_write, state.pending = now, None
    return _write(task_id, state, values)


def _remember(task_id: str, state: _State) -> _State:
    """Keep ``state`` (caller holds the lock); the oldest entries go first beyond MAX_PENDING."""
    _states.pop(task_id, None)
    while len(_states) >= MAX_PENDING:
        _states.pop(next(iter(_states)))
    _states[task_id] = state
    return state


async def areport(current: float, total: float | None = None, message: str = "", *,
                  task_id: str | None = None, backend: str = "default") -> bool:
    """``report`` for ``async def`` tasks: the write runs in a thread, never on the loop."""
    if task_id is None:
        found = _current_task()
        if found is None:
            _check(current, total, message)
            return False
        task_id, backend = found
    return await sync_to_async(report)(current, total, message, task_id=task_id, backend=backend)


def _write(task_id: str, state: _State, values: tuple[float, float | None, str]) -> bool:
    from loom.compat import task_backends
    from loom.events.tasks import publish_task_event
    from loom.models import TaskRecord

    current, total, message = values
    at = timezone.now()
    store = cast("DatabaseBackend", task_backends[state.backend]).store
    if not store.progress(task_id, current, total, message, at):
        return False
    if state.task_path is None or state.queue_name is None:
        row = TaskRecord.objects.using(store.alias).filter(pk=task_id).values("task_path", "queue_name").first()
        if row is None:
            return True
        state.task_path, state.queue_name = row["task_path"], row["queue_name"]
    shown = Progress(current, total, message, at)
    publish_task_event("progress", task_id=task_id, task_path=state.task_path,
                       queue_name=state.queue_name, status="RUNNING", **shown.as_dict())
    return True


class Reporter:
    """Progress of one task, bound to its id: ``for_context(context)`` in a ``takes_context`` task."""

    def __init__(self, task_id: str, backend: str = "default") -> None:
        self.task_id = str(task_id)
        self.backend = backend
        self.current = 0.0
        self.total: float | None = None

    def update(self, current: float, total: float | None = None, message: str = "") -> bool:
        self.current, self.total = current, total if total is not None else self.total
        return report(current, self.total, message, task_id=self.task_id, backend=self.backend)

    def advance(self, step: float = 1, message: str = "") -> bool:
        return self.update(self.current + step, self.total, message)

    async def aupdate(self, current: float, total: float | None = None, message: str = "") -> bool:
        self.current, self.total = current, total if total is not None else self.total
        return await areport(current, self.total, message, task_id=self.task_id, backend=self.backend)


def for_context(context: Any) -> Reporter:
    """A ``Reporter`` for the task whose ``TaskContext`` this is."""
    result = context.task_result
    return Reporter(result.id, result.backend)


def flush(task_id: str) -> bool:
    """Store a report that the throttle held back; the worker's task_finished does this for you."""
    with _lock:
        state = _states.pop(str(task_id), None)
    if state is None or state.pending is None:
        return False
    return _write(str(task_id), state, state.pending)


# -- reading -----------------------------------------------------------------------------------

def _locate(result_or_id: Any, backend: str) -> tuple[str, str]:
    if isinstance(result_or_id, TaskResult):
        return str(result_or_id.id), result_or_id.backend
    if result_or_id is None or not str(result_or_id).strip():
        raise ValueError("get_progress() needs a TaskResult or a task id, got nothing.")
    return str(result_or_id), backend


def get_progress(result_or_id: AnyTaskResult | str, *, backend: str = "default") -> Progress | None:
    """The last stored progress of a task (None before its first report)."""
    from django.core.exceptions import ValidationError

    from loom.compat import TaskResultDoesNotExist, task_backends
    from loom.models import TaskRecord

    task_id, alias = _locate(result_or_id, backend)
    try:
        row = (TaskRecord.objects.using(cast("DatabaseBackend", task_backends[alias]).store.alias).filter(pk=task_id)
               .values("progress_current", "progress_total", "progress_message", "progress_at").first())
    except (ValidationError, ValueError):
        row = None
    if row is None:
        raise TaskResultDoesNotExist(task_id)
    if row["progress_current"] is None:
        return None
    return Progress(row["progress_current"], row["progress_total"], row["progress_message"], row["progress_at"])


async def aget_progress(result_or_id: AnyTaskResult | str, *, backend: str = "default") -> Progress | None:
    return await sync_to_async(get_progress)(result_or_id, backend=backend)


# -- which task is running here ----------------------------------------------------------------

@receiver(task_started, dispatch_uid="loom.progress.started")
def _on_started(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    _running.set((str(task_result.id), task_result.backend))
    state = _State(task_result.backend, task_result.task.module_path, task_result.task.queue_name)
    with _lock:
        _remember(str(task_result.id), state)  # a retry starts afresh


@receiver(task_finished, dispatch_uid="loom.progress.finished")
def _on_finished(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    try:
        flush(task_result.id)
    except Exception:
        import logging

        logging.getLogger("loom.progress").exception("loom: could not store the last progress of %s", task_result.id)
    running = _running.get()
    if running is not None and running[0] == str(task_result.id):
        _running.set(None)


class _CallableModule(types.ModuleType):
    """Lets a task call ``progress(current, total, message)`` after ``from loom import progress``."""

    def __call__(self, current: float, total: float | None = None, message: str = "", **kwargs: Any) -> bool:
        return report(current, total, message, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
