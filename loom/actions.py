"""Operator actions on tasks: retry, cancel and delete, in one place for the admin, the dashboard
and the CLI.

``perform(backend, action, ids)`` looks at each task's state, writes through the backend's
``Store`` (one statement per change: see ``loom.store.operations`` for why that matters on
SQLite), publishes a ``cancelled`` event for each READY task it cancelled, and returns a
``Report``: how many tasks changed and, for every other id, why not, in words an operator can
act on. ``applies(action, status, cancel_requested)`` is what a page asks before showing a button.

What it refuses: permissions and HTTP. Callers decide who may act (``loom.dashboard.access``, the
admin's ``has_*_permission``; the CLI is trusted like ``manage.py`` itself).

- retry: FAILED or CANCELLED → READY now, with one more attempt allowed if none is left; not a
  task whose unique key (``unique_key``) another waiting or running task holds.
- cancel: READY → CANCELLED at once (it never runs); RUNNING → ``cancel_requested``, and its
  worker stops the run and records CANCELLED.
- delete: any task that is not RUNNING (its worker would lose the row under it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.utils import timezone

from loom.models import Status

ACTIONS = ("retry", "cancel", "delete")
# The states each action applies to.
APPLIES_TO = {
    "retry": (Status.FAILED, Status.CANCELLED),
    "cancel": (Status.READY, Status.RUNNING),
    "delete": (Status.READY, Status.SUCCESSFUL, Status.FAILED, Status.CANCELLED),
}


@dataclass(frozen=True, slots=True)
class Report:
    """What one ``perform`` did: ``changed`` tasks, and why each other id was left alone."""

    action: str
    asked: int
    changed: int
    # Of ``changed``, RUNNING tasks asked to stop (cancel only): they end when their worker sees it.
    stopping: int = 0
    refused: dict[str, str] = field(default_factory=dict)


def applies(action: str, status: str, cancel_requested: bool = False) -> bool:
    """Whether ``action`` can change a task in this state (a stopping task cannot be cancelled twice)."""
    if action == "cancel" and status == Status.RUNNING and cancel_requested:
        return False
    return status in APPLIES_TO[action]


def _why_not(action: str, status: str | None, cancel_requested: bool) -> str:
    if status is None:
        return "no such task"
    if action == "cancel" and status == Status.RUNNING and cancel_requested:
        return "is already stopping (cancel requested)"
    needs = " or ".join(sorted(APPLIES_TO[action]))
    return f"is {status}, cannot {action} (needs {needs})"


def perform(backend, action: str, ids: Iterable[str]) -> Report:
    """Run ``action`` on the tasks ``ids`` of a ``DatabaseBackend``; see the module docstring."""
    from loom.queries import tasks_of

    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; use one of {', '.join(ACTIONS)}.")
    ids = list(dict.fromkeys(str(i) for i in ids))
    before = {str(row["id"]): row for row in tasks_of(backend).filter(pk__in=ids).values(
        "id", "status", "cancel_requested", "task_path", "queue_name")}
    targets = [i for i in ids if i in before and applies(action, before[i]["status"], before[i]["cancel_requested"])]
    refused = {i: _why_not(action, before.get(i, {}).get("status"), before.get(i, {}).get("cancel_requested", False))
               for i in ids if i not in targets}
    if not targets:
        return Report(action, len(ids), 0, refused=refused)
    from loom.queries import forget_counts

    forget_counts()  # the next page shows what this changed, not a count taken before
    store, now = backend.store, timezone.now()
    if action == "retry":
        changed, held = store.retry(targets, now)
        refused.update((i, "has a unique key that another waiting or running task holds") for i in held)
        return Report(action, len(ids), changed, refused=refused)
    if action == "delete":
        return Report(action, len(ids), store.delete(targets), refused=refused)
    changed = store.cancel(targets, now)
    ready = [i for i in targets if before[i]["status"] == Status.READY]
    if ready:
        announce_cancelled(tasks_of(backend).filter(pk__in=ready, status=Status.CANCELLED)
                           .only("id", "task_path", "queue_name"))
    stopping = sum(1 for i in targets if before[i]["status"] == Status.RUNNING)
    return Report(action, len(ids), changed, stopping=min(stopping, changed), refused=refused)


def announce_cancelled(records: Iterable) -> None:
    """Publish ``cancelled`` for rows that just became CANCELLED (each needs id, task_path, queue_name)."""
    from loom.events.tasks import publish_cancelled

    publish_cancelled(records)

