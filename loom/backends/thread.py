"""ThreadBackend: a ``django.tasks`` backend that runs tasks in this process, after commit.

Configure::

    TASKS = {"default": {"BACKEND": "loom.backends.ThreadBackend",
                         "OPTIONS": {"THREADS": 4, "MAX_RESULTS": 1000, "RESULT_TTL": 3600,
                                     "GRACE": 10, "DATABASE": "default"}}}

For "send this e-mail after the response" in a small site, without running a worker. ``enqueue``
validates the task and its JSON arguments like ``DatabaseBackend``, then hands the task to a
bounded pool of ``THREADS`` daemon threads when the caller's transaction on ``DATABASE`` commits
(at once in autocommit; never if it rolls back), so the task sees the rows its view wrote.
``task_enqueued`` is sent at that moment; ``task_started``/``task_finished`` around the run, with
the backend class as sender, as ``ImmediateBackend`` does. Queued tasks start highest priority
first; ``async def`` tasks run to completion in a pool thread. Each run closes the database
connections it opened, as a request does (``close_old_connections``).

At interpreter exit, tasks still queued or running get ``GRACE`` seconds to finish; the rest are
lost, with a warning. Results live in this process's memory only: at most ``MAX_RESULTS`` finished
ones, each for ``RESULT_TTL`` seconds, readable from any thread of the process and lost on
restart. A task enqueued in a transaction that rolls back never runs; its result stays READY
until it expires.

Refused: ``run_after`` (no deferral), and loom's per-task ``max_attempts > 1`` and ``timeout`` (a
thread cannot be stopped, and nothing here retries). When tasks must survive a restart, run in
another process or be retried, use ``DatabaseBackend``. Building the backend (``@task`` does it at
import) starts no thread and touches no database.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

from django.core import checks
from django.db import transaction
from django.utils import timezone

from loom import codec, execution, results
from loom.backends.database import DatabaseBackend
from loom.compat import (
    AnyTask,
    BaseTaskBackend,
    InvalidTask,
    Task,
    AnyTaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_enqueued,
)
from loom.executors.threads import ThreadExecutor
from loom.records import ClaimedTask
from loom.task import Task as LoomTask

logger = logging.getLogger("loom.backends.thread")

# Tasks run at once per process and alias.
DEFAULT_THREADS = 4
# Finished results kept for get_result; the oldest go first.
DEFAULT_MAX_RESULTS = 1000
# Seconds a finished result stays readable.
DEFAULT_RESULT_TTL = 3600.0
# Seconds queued and running tasks get to finish when the interpreter exits.
DEFAULT_GRACE = 10.0
# Database alias whose transaction commit releases the task.
DEFAULT_DATABASE = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadOptions:
    threads: int = DEFAULT_THREADS
    max_results: int = DEFAULT_MAX_RESULTS
    result_ttl: float = DEFAULT_RESULT_TTL
    grace: float = DEFAULT_GRACE
    database: str = DEFAULT_DATABASE

    @classmethod
    def from_settings(cls, options: dict[str, Any]) -> ThreadOptions:
        known = {f.name.upper(): f.name for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(
                f"Unknown ThreadBackend OPTIONS key {unknown[0]!r}; expected one of {', '.join(sorted(known))}."
            )
        opts = cls(**{known[key]: value for key, value in options.items()})
        for name in ("threads", "max_results"):
            value = getattr(opts, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"OPTIONS[{name.upper()!r}] must be an integer >= 1, got {value!r}.")
        for name in ("result_ttl", "grace"):
            value = getattr(opts, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"OPTIONS[{name.upper()!r}] must be a number >= 0, got {value!r}.")
        if not isinstance(opts.database, str) or not opts.database:
            raise ValueError("OPTIONS['DATABASE'] must be a database alias (a non-empty string).")
        return opts


class ThreadBackend(BaseTaskBackend):
    task_class = LoomTask

    # No run_after: a task runs as soon as its transaction commits.
    supports_defer = False
    # async def tasks run to completion in a pool thread.
    supports_async_task = True
    # Results are readable from any thread of this process (not from other processes).
    supports_get_result = True
    # Queued tasks start highest priority first.
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.config = ThreadOptions.from_settings(self.options)

    @property
    def runtime(self) -> Runtime:
        # Django builds one backend instance per thread; the pool and results are per process.
        return _runtime(self.alias, self.config, type(self))

    def validate_task(self, task: AnyTask) -> None:
        if not isinstance(task, Task):
            raise InvalidTask(f"{task!r} is not a django.tasks.Task; decorate the function with @task.")
        super().validate_task(task)
        if getattr(task, "max_attempts", None) not in (None, 1):
            raise InvalidTask(
                "ThreadBackend runs each task once; max_attempts needs DatabaseBackend, which retries."
            )
        if getattr(task, "timeout", None) is not None:
            raise InvalidTask("ThreadBackend cannot stop a running thread, so it refuses a task timeout.")

    def enqueue(self, task: AnyTask, args: Any, kwargs: Any) -> AnyTaskResult:  # type: ignore[override]
        self.validate_task(task)
        args, kwargs = DatabaseBackend._encode_arguments(args, kwargs)
        result = results.build(task, id=str(uuid.uuid4()), status=TaskResultStatus.READY,
                               enqueued_at=timezone.now(), args=args, kwargs=kwargs, backend=self.alias)
        runtime = self.runtime
        runtime.store(result)

        def release() -> None:
            try:
                task_enqueued.send(type(self), task_result=_copy(result))
            finally:
                runtime.submit(result)

        db = transaction.get_connection(self.config.database)
        if db.in_atomic_block or (db.connection is not None and not db.get_autocommit()):
            transaction.on_commit(release, using=self.config.database)
        else:
            release()  # autocommit: as on_commit would, without opening a connection to ask
        return _copy(result)

    def get_result(self, result_id: str) -> AnyTaskResult:
        return self.runtime.get(result_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every task released so far has finished; False if ``timeout`` passed first.

        For tests and scripts: Django's test ``TestCase`` releases tasks only through
        ``captureOnCommitCallbacks(execute=True)``.
        """
        return self.runtime.wait(timeout)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        from django.conf import settings

        if self.config.database in settings.DATABASES:
            return []
        return [checks.Error(
            f"TASKS[{self.alias!r}]['OPTIONS']['DATABASE'] is {self.config.database!r}, which is not in DATABASES.",
            hint="Set it to one of the aliases in DATABASES.",
            id="loom.E101",
        )]


def _copy(result: AnyTaskResult) -> AnyTaskResult:
    """A result the caller may change without changing the stored one (Django mutates in place)."""
    return results.with_value(result)


class Runtime:
    """The executor and the results of one alias in this process. Tasks run through
    ``loom.execution`` (the worker's code path) on a ``ThreadExecutor`` (the worker's pool)."""

    def __init__(self, alias: str, config: ThreadOptions, sender: type) -> None:
        self.alias = alias
        self.config = config
        self.sender = sender
        self.worker_id = f"{socket.gethostname()[:40]}-{os.getpid()}-threads"
        # Monotonic seconds; tests replace it to expire results without waiting.
        self.clock = time.monotonic
        self.executor = ThreadExecutor(config.threads, name=f"loom-tasks-{alias}")
        self._lock = threading.Lock()
        self._exiting = False
        self._exit_registered = False
        self._results: dict[str, AnyTaskResult] = {}
        self._expiry: OrderedDict[str, float] = OrderedDict()  # finished ids, oldest first

    # -- results ---------------------------------------------------------------------------

    def store(self, result: AnyTaskResult) -> None:
        with self._lock:
            self._results[result.id] = result
            if result.is_finished:
                self._expiry[result.id] = self.clock() + self.config.result_ttl
                self._expiry.move_to_end(result.id)
            self._prune()

    def get(self, result_id: str) -> AnyTaskResult:
        with self._lock:
            self._prune()
            result = self._results.get(result_id)
        if result is None:
            raise TaskResultDoesNotExist(result_id)
        return _copy(result)

    def _prune(self) -> None:
        now = self.clock()
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now and len(self._expiry) <= self.config.max_results:
                return
            del self._expiry[oldest]
            self._results.pop(oldest, None)

    # -- running ---------------------------------------------------------------------------

    def submit(self, result: AnyTaskResult) -> None:
        with self._lock:
            if self._exiting:
                logger.warning("Task %s (%s) was released during interpreter exit and will not run.",
                               result.id, result.task.module_path)
                return
            if not self._exit_registered:
                self._exit_registered = True
                _register_exit(self._drain)
        self.executor.submit(self._run, result, priority=result.task.priority)

    def _run(self, queued: AnyTaskResult) -> None:
        now = timezone.now()
        running = results.with_value(queued, status=TaskResultStatus.RUNNING, started_at=now,
                                     last_attempted_at=now, worker_ids=[*queued.worker_ids, self.worker_id])
        self.store(running)
        claimed = ClaimedTask(
            id=queued.id, task_path=queued.task.module_path, backend=self.alias,
            queue_name=queued.task.queue_name, priority=queued.task.priority, run_after=None,
            args=running.args, kwargs=running.kwargs, available_at=now, enqueued_at=queued.enqueued_at or now,
            started_at=now, last_attempted_at=now, attempts=1, max_attempts=1, worker_ids=running.worker_ids,
        )
        try:
            # KeyboardInterrupt here can only come from the task itself, with no one to stop:
            # it fails the task like any other exception and the thread lives on.
            outcome, final = execution.run(claimed, interruptible=False, announce_on_write=False)
        except Exception:  # a signal receiver failed: log it, keep the thread
            logger.exception("ThreadBackend could not complete task %s", queued.id)
            return
        if final is None:  # it never ran (its path no longer imports)
            final = results.from_claimed(queued.task, claimed, status=outcome.status,
                                         finished_at=outcome.finished_at, errors=codec.loads(outcome.errors_json))
        self.store(final)

    def wait(self, timeout: float | None = None) -> bool:
        return self.executor.wait(timeout)

    def _drain(self) -> None:
        with self._lock:
            self._exiting = True
        if not self.executor.shutdown(wait=self.config.grace):
            logger.warning("ThreadBackend %r: %d task(s) unfinished after the %g s grace period at exit "
                           "are lost.", self.alias, self.executor.unfinished, self.config.grace)


def _register_exit(callback: Any) -> None:
    # threading's own exit hook runs before the interpreter stops creating threads, which an
    # async task (async_to_sync) still needs; plain atexit runs too late for that.
    register = getattr(threading, "_register_atexit", None)
    if register is None:
        import atexit

        atexit.register(callback)
        return
    try:
        register(callback)
    except RuntimeError:  # already shutting down
        pass


_runtimes: dict[tuple[str, ThreadOptions, type], Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime(alias: str, config: ThreadOptions, sender: type) -> Runtime:
    key = (alias, config, sender)
    runtime = _runtimes.get(key)
    if runtime is None:
        with _runtimes_lock:
            runtime = _runtimes.setdefault(key, Runtime(alias, config, sender))
    return runtime


if hasattr(os, "register_at_fork"):
    # A forked child inherits queues but no threads: it starts empty.
    os.register_at_fork(after_in_child=_runtimes.clear)
