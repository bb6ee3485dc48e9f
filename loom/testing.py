"""Test helpers for loom users and for loom's own suite.

``run_tasks()`` runs every due task inline, in the calling thread and its database connection,
through the same claim -> execute -> complete path as the worker. Because it uses the caller's
connection it sees data created inside a ``TestCase`` transaction, which a worker (another
connection) cannot. ``clock`` can be injected to make deferred tasks due without waiting.

``Clock`` is a fake clock for anything in loom that takes ``clock=`` (``run_tasks``, the worker
and its maintenance services): it stands still until ``advance()``d, so a test never sleeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from django.utils import timezone

from loom.compat import task_backends
from loom.events.tasks import announce
from loom.execution import execute
from loom.worker.atomic import run_atomic
from loom.workflow import engine

# Stops a task that keeps re-enqueueing itself from looping run_tasks forever.
MAX_ROUNDS = 1000


class Clock:
    """A clock that moves only when told: ``clock()`` is "now", ``clock.advance(seconds)``."""

    def __init__(self, start: datetime | None = None) -> None:
        # A second ahead by default, so that tasks enqueued just before are due.
        self.now = start or timezone.now() + timedelta(seconds=1)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def run_tasks(
    *,
    backend: str = "default",
    queues: Sequence[str] | None = None,
    clock: Callable[[], datetime] = timezone.now,
    worker_id: str = "loom-testing",
) -> int:
    """Run all due tasks (including retries that become due at ``clock()``); return how many ran."""
    from loom.backends.database import DatabaseBackend

    loom_backend = task_backends[backend]
    if not isinstance(loom_backend, DatabaseBackend):
        raise TypeError(f"run_tasks() runs loom DatabaseBackend tasks; TASKS[{backend!r}] is "
                        f"{type(loom_backend).__name__}.")
    store = loom_backend.store
    lease = loom_backend.config.lease_seconds
    ran = 0
    for _ in range(MAX_ROUNDS):
        now = clock()
        claimed = store.claim(worker_id, queues, 100, now, now + timedelta(seconds=lease))
        if not claimed:
            return ran
        outcomes = []
        for task in claimed:  # as a worker runs them: atomic tasks and workflow steps included
            outcome = run_atomic(task, worker_id) if task.atomic else execute(task)
            outcomes.append(replace(outcome, workflow_step=task.workflow_step))
        store.complete_many(worker_id, [o for o in outcomes if o.workflow_step is None and not o.written])
        for outcome in outcomes:
            if outcome.workflow_step is not None and not outcome.written:
                engine.complete_step(store, worker_id, outcome)
        announce(outcomes)  # finished/failed events, once written (as the worker's Completer)
        ran += len(outcomes)
    raise RuntimeError(f"run_tasks stopped after {MAX_ROUNDS} rounds: do tasks enqueue each other forever?")
