"""Atomic tasks: the body and its success commit in one transaction (``@task(atomic=True)``).

The task thread runs the body inside ``transaction.atomic()`` on the backend's database and, before
that transaction commits, writes the SUCCESSFUL outcome itself (fenced like the Completer's: only
while this worker's claim of this attempt holds), and moves the task's workflow on if it is a step.
An exception, a time limit or a kill rolls all of it back; a failed or retried run's outcome then
goes the usual way (the Completer). So the body's database effects commit exactly once per
success, whatever happens to the worker. The Completer skips an outcome marked ``written``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db import transaction

from loom.execution import execute
from loom.records import ClaimedTask, Outcome


class _Undo(Exception):
    """Roll the task's transaction back (the run did not succeed, or the task is no longer ours)."""


def run_atomic(claimed: ClaimedTask, worker_id: str) -> Outcome:
    from loom.compat import task_backends
    from loom.workflow import engine

    backend: Any = task_backends[claimed.backend]
    store = backend.store
    outcome: Outcome | None = None
    try:
        with transaction.atomic(using=store.alias):
            outcome = execute(claimed)
            if outcome.status != "SUCCESSFUL":
                raise _Undo
            if store.complete_many(worker_id, [outcome]) != 1:
                raise _Undo  # the claim was lost (rescued elsewhere): this run's effects must not stay
            if claimed.workflow_step is not None:
                engine.advance(store.alias, claimed.workflow_step, outcome.status, outcome.return_value_json)
    except _Undo:
        assert outcome is not None
        return outcome
    return replace(outcome, written=True)
