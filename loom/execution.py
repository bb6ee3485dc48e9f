"""Runs one claimed task once and says what happened, as Django's ImmediateBackend would.

``execute`` (sync tasks, and coroutines in a thread without a loop) and ``aexecute`` (on the
worker's event loop) import the task path, refuse anything that is not a ``Task``, build the
``TaskResult``/``TaskContext`` the task sees, send ``task_started``/``task_finished`` with the
backend class as sender, and return an ``Outcome``. They never touch the database and never
raise, except ``KeyboardInterrupt``, which the caller must see (as ImmediateBackend lets it pass).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import functools
import inspect
import random
import traceback
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.utils import timezone
from django.utils.module_loading import import_string

from loom import faults, telemetry
from loom.codec import dumps, normalize
from loom.compat import (
    Task,
    TaskContext,
    TaskResult,
    TaskResultStatus,
    task_finished,
    task_started,
)
from loom.exceptions import TaskArgumentsMismatch, TaskImportError, TimeLimitExceeded
from loom.records import ClaimedTask, Outcome
from loom.results import from_claimed

# Longest wait between two attempts of a retried task, in seconds.
MAX_RETRY_DELAY = 3600.0

# The id of the task running in this thread or coroutine (None outside a task): lets helpers such
# as loom.progress find their task without being handed the context.
logger = logging.getLogger("loom.worker")

current_task_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("loom_current_task_id", default=None)


def resolve(claimed: ClaimedTask) -> Task:
    """Import the stored path and return the Task with the stored overrides applied."""
    task = _resolved(claimed.task_path, claimed.priority, claimed.queue_name, claimed.backend)
    return task.using(run_after=claimed.run_after) if claimed.run_after is not None else task


@functools.lru_cache(maxsize=4096)
def _resolved(path: str, priority: int, queue_name: str, backend: str) -> Task:
    """One Task per path and overrides for the life of the process (code does not change under a
    running worker), so most runs skip the import and ``using()``. Failures are not cached."""
    try:
        obj = import_string(path)
    except ImportError as exc:
        raise TaskImportError(
            f"Task path {path!r} no longer imports ({exc}). If the task was renamed "
            "or moved, keep an alias at the old path until its queued tasks have run."
        ) from exc
    if not isinstance(obj, Task):
        raise TaskImportError(
            f"{path!r} is a {type(obj).__name__}, not a django.tasks.Task; loom only "
            "runs functions decorated with @task."
        )
    changes: dict[str, Any] = {}
    if obj.priority != priority:
        changes["priority"] = priority
    if obj.queue_name != queue_name:
        changes["queue_name"] = queue_name
    if obj.backend != backend:
        changes["backend"] = backend
    return obj.using(**changes) if changes else obj


@functools.lru_cache(maxsize=1024)
def _signature(func) -> inspect.Signature:
    """Signatures are costly to build and never change for a function: one per task function."""
    return inspect.signature(func)


def _call_arguments(task: Task, result: TaskResult) -> tuple[list, dict]:
    args = list(result.args)
    if task.takes_context:
        args.insert(0, TaskContext(task_result=result))
    try:
        _signature(task.func).bind(*args, **result.kwargs)
    except TypeError as exc:
        raise TaskArgumentsMismatch(
            f"The stored arguments no longer fit {task.module_path}{_signature(task.func)}: {exc}"
        ) from None
    return args, result.kwargs


def _error(claimed: ClaimedTask, exc: BaseException, finished_at) -> dict[str, Any]:
    kind = type(exc)
    return claimed.error_entry(f"{kind.__module__}.{kind.__qualname__}",
                               "".join(traceback.format_exception(exc)), finished_at)


def _retry_delay(task: Task | None, attempt: int) -> float:
    base = 1.0 if task is None else float(getattr(task, "retry_backoff", 1.0) or 0.0)
    return min(base * 2 ** (attempt - 1), MAX_RETRY_DELAY) * random.uniform(0.5, 1.5)


def _lost_retries(task: Task) -> int:
    return getattr(getattr(task.get_backend(), "config", None), "lost_retries", 0)


def _will_retry(task: Task | None, claimed: ClaimedTask, exc: BaseException) -> bool:
    """A failure is retried while attempts remain and ``retry_on`` matches; a lost database
    connection (the infrastructure's fault, like a dead worker) also gets OPTIONS["LOST_RETRIES"]
    more runs beyond ``max_attempts``, unless ``retry_on`` leaves the error out."""
    if task is None:
        return False
    retry_on = tuple(getattr(task, "retry_on", (Exception,)))
    if not isinstance(exc, retry_on):
        return False
    budget = claimed.max_attempts
    if faults.connection_lost(exc):
        budget += _lost_retries(task)
    return claimed.attempts < budget


def _failure(task: Task | None, claimed: ClaimedTask, exc: BaseException) -> tuple[Outcome, TaskResult | None]:
    now = timezone.now()
    errors = [*claimed.errors, _error(claimed, exc, now)]
    if _will_retry(task, claimed, exc):
        outcome = Outcome(
            id=claimed.id,
            status=TaskResultStatus.READY,
            finished_at=None,
            available_at=now + timedelta(seconds=_retry_delay(task, claimed.attempts)),
            return_value_json=None,
            errors_json=dumps(errors),
            attempt=claimed.attempts,
            task_path=claimed.task_path,
            queue_name=claimed.queue_name,
        )
        return outcome, None
    outcome = Outcome(
        id=claimed.id,
        status=TaskResultStatus.FAILED,
        finished_at=now,
        available_at=None,
        return_value_json=None,
        errors_json=dumps(errors),
        attempt=claimed.attempts,
        unique_until=_unique_until(claimed, now),
        task_path=claimed.task_path,
        queue_name=claimed.queue_name,
    )
    final = None
    if task is not None:
        final = from_claimed(task, claimed, status=TaskResultStatus.FAILED, finished_at=now, errors=errors)
    return outcome, final


def _unique_until(claimed: ClaimedTask, finished_at: Any) -> Any:
    """A finished task with a unique_window keeps its unique key until then (loom.models)."""
    return None if claimed.unique_window is None else finished_at + timedelta(seconds=claimed.unique_window)


def cancelled(claimed: ClaimedTask, message: str = "Cancelled by an operator while running.") -> Outcome:
    """The outcome of a run stopped by a cancel: a final state of its own, with the reason kept."""
    from loom.exceptions import TaskCancelled

    now = timezone.now()
    error = claimed.error_entry(f"{TaskCancelled.__module__}.{TaskCancelled.__qualname__}",
                                f"loom.exceptions.TaskCancelled: {message}\n", now)
    return Outcome(id=claimed.id, status="CANCELLED", finished_at=now, available_at=None,
                   return_value_json=None, errors_json=dumps([*claimed.errors, error]),
                   attempt=claimed.attempts, unique_until=_unique_until(claimed, now),
                   task_path=claimed.task_path, queue_name=claimed.queue_name)


def _success(task: Task, claimed: ClaimedTask, value: Any, encoded: str) -> tuple[Outcome, TaskResult]:
    now = timezone.now()
    outcome = Outcome(
        id=claimed.id,
        status=TaskResultStatus.SUCCESSFUL,
        finished_at=now,
        available_at=None,
        return_value_json=None if value is None else encoded,
        errors_json=dumps(claimed.errors) if claimed.errors else "[]",
        attempt=claimed.attempts,
        unique_until=_unique_until(claimed, now),
        task_path=claimed.task_path,
        queue_name=claimed.queue_name,
    )
    final = from_claimed(task, claimed, status=TaskResultStatus.SUCCESSFUL, finished_at=now, return_value=value)
    return outcome, final


def _notify_finished(sender: type, result: TaskResult, on_write: bool = True) -> None:
    """Send task_finished. Its receivers run after the body, once the outcome is decided: one that
    fails (say, a receiver that writes, on a connection that just dropped) is logged and the
    outcome stands; raising would hand the worker a run it could only put back as never started,
    and a body that ran would run again with no lost attempt to show for it. ``on_write``: the
    outcome's writer announces the ``finished`` event (loom.events.tasks.announce), not the
    signal's receiver."""
    try:
        if on_write:
            task_finished.send(sender, task_result=result, loom_announced_on_write=True)
        else:
            task_finished.send(sender, task_result=result)
    except Exception:
        logger.exception("loom: a task_finished receiver failed for task %s; its outcome stands", result.id)


def _send_finished(sender: type, result: TaskResult, exc: BaseException | None = None) -> None:
    """Send task_finished; for a failure, from inside an except block so receivers see exc_info."""
    if exc is None:
        _notify_finished(sender, result)
        return
    try:
        raise exc
    except BaseException:
        _notify_finished(sender, result)


@telemetry.traced_run
def execute(claimed: ClaimedTask) -> Outcome:
    """Run a claimed task in the calling thread."""
    return run(claimed)[0]


def run(claimed: ClaimedTask, *, interruptible: bool = True,
        announce_on_write: bool = True) -> tuple[Outcome, TaskResult | None]:
    """Run a claimed task in the calling thread; also return the final TaskResult the
    ``task_finished`` signal carried (None while the task will be retried, or if it never ran).
    A KeyboardInterrupt from the task is raised for the caller to act on, unless not
    ``interruptible``: then it fails the task like any other exception. ``announce_on_write``:
    whoever writes the outcome announces its ``finished`` event (a worker; ``run_tasks``)."""
    try:
        task = resolve(claimed)
    except Exception as exc:
        return _failure(None, claimed, exc)
    sender = type(task.get_backend())
    result = from_claimed(task, claimed)
    token = current_task_id.set(claimed.id)
    try:
        task_started.send(sender=sender, task_result=result)
        try:
            args, kwargs = _call_arguments(task, result)
            if inspect.iscoroutinefunction(task.func):
                raw = async_to_sync(task.func)(*args, **kwargs)
            else:
                raw = task.func(*args, **kwargs)
            value, encoded = normalize(raw)
        except BaseException as exc:
            if interruptible and isinstance(exc, KeyboardInterrupt):
                raise
            outcome, final = _failure(task, claimed, exc)
            if final is not None:
                _notify_finished(sender, final, announce_on_write)  # in the except block: exc_info is set
            return outcome, final
        outcome, final = _success(task, claimed, value, encoded)
        _notify_finished(sender, final, announce_on_write)
        return outcome, final
    finally:
        current_task_id.reset(token)


async def _acall(task: Task, args: list, kwargs: dict) -> Any:
    if inspect.iscoroutinefunction(task.func):
        return await task.func(*args, **kwargs)
    return await sync_to_async(task.func)(*args, **kwargs)


async def _with_time_limit(seconds: float | None, coro) -> Any:
    """Soft limit for coroutines: cancel the run at the limit and report TimeLimitExceeded."""
    if seconds is None:
        return await coro
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            return await coro
    except TimeoutError:
        if limit.expired():
            raise TimeLimitExceeded(f"the task ran longer than its time limit of {seconds:g}s") from None
        raise


def is_async(claimed: ClaimedTask) -> bool:
    """Whether the claimed task is a coroutine function (False if it cannot be resolved, so
    that execute() reports why). Asked for every dispatched task, hence cached by path."""
    return _is_coroutine_path(claimed.task_path)


@functools.lru_cache(maxsize=4096)
def _is_coroutine_path(path: str) -> bool:
    try:
        obj = import_string(path)
    except ImportError:
        return False
    return isinstance(obj, Task) and inspect.iscoroutinefunction(obj.func)


@telemetry.traced_run
async def aexecute(claimed: ClaimedTask) -> Outcome:
    """Run a claimed task on the running event loop; sync receivers of signals run in a thread."""
    try:
        task = resolve(claimed)
    except Exception as exc:
        return _failure(None, claimed, exc)[0]
    sender = type(task.get_backend())
    result = from_claimed(task, claimed)
    current_task_id.set(claimed.id)  # each coroutine runs in its own asyncio Task and context
    await sync_to_async(task_started.send)(sender=sender, task_result=result)
    try:
        args, kwargs = _call_arguments(task, result)
        raw = await _with_time_limit(claimed.timeout, _acall(task, args, kwargs))
        value, encoded = normalize(raw)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise  # the worker is stopping: the caller puts the task back, it did not fail
    except BaseException as exc:
        outcome, final = _failure(task, claimed, exc)
        if final is not None:
            await sync_to_async(_send_finished)(sender, final, exc)
        return outcome
    outcome, final = _success(task, claimed, value, encoded)
    await sync_to_async(_send_finished)(sender, final)
    return outcome
