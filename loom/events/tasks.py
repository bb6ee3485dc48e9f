"""Task lifecycle events, published from Django's own task signals.

``task_enqueued`` → ``enqueued`` (sent on commit, in the process that enqueued),
``task_started`` → ``started`` and ``task_finished`` → ``finished`` or ``failed`` (in the worker),
``loom.progress`` → ``progress``, operator cancels → ``cancelled``. Each goes to the task's group,
its queue's group and ``ALL_TASKS``. Receivers never raise: an event that cannot be published is
logged, and the task runs on. Turn them off with ``LOOM_EVENTS["TASK_EVENTS"] = False``.

``finished``/``failed`` are sent as the task returns, a few milliseconds before the worker writes
the outcome to the row: a subscriber that reloads the row at once may still read RUNNING.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.dispatch import receiver
from django.utils import timezone

from loom.compat import AnyTaskResult, TaskResultStatus, task_enqueued, task_finished, task_started
from loom.events import ALL_TASKS, config, get_broker, hub, publish, queue_group, task_group

logger = logging.getLogger("loom.events")

# Event type for each final status of Django's TaskResult.
FINAL_TYPES = {TaskResultStatus.SUCCESSFUL: "finished", TaskResultStatus.FAILED: "failed"}


def _groups(task_id: Any, queue_name: str) -> tuple[str, ...]:
    return (task_group(task_id), queue_group(queue_name), ALL_TASKS)


def publish_task_event(kind: str, *, task_id: Any, task_path: str, queue_name: str, status: str,
                       **extra: Any) -> None:
    """Publish one task event; never raises (failures are logged)."""
    try:
        conf = config()
        if not conf.task_events:
            return
        if hub.empty and not conf.channels_bridge and not get_broker().cross_process:
            return  # in-process delivery and nobody here subscribed: nothing to build
        payload = {"type": kind, "task_id": str(task_id), "task": task_path, "queue": queue_name,
                   "status": str(status), "at": timezone.now().isoformat(), **extra}
        publish(_groups(task_id, queue_name), payload)
    except Exception:
        logger.exception("loom events: could not publish %s for task %s", kind, task_id)


def _from_result(kind: str, result: AnyTaskResult, status: str | None = None) -> None:
    publish_task_event(kind, task_id=result.id, task_path=result.task.module_path,
                       queue_name=result.task.queue_name, status=status or result.status)


@receiver(task_enqueued, dispatch_uid="loom.events.enqueued")
def _on_enqueued(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    _from_result("enqueued", task_result)


@receiver(task_started, dispatch_uid="loom.events.started")
def _on_started(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    _from_result("started", task_result)


@receiver(task_finished, dispatch_uid="loom.events.finished")
def _on_finished(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    kind = FINAL_TYPES.get(task_result.status)
    if kind is not None:
        _from_result(kind, task_result)


def publish_cancelled(records: Iterable[Any]) -> None:
    """Announce rows that were just cancelled (an operator cancel of READY tasks, or a worker)."""
    for record in records:
        publish_task_event("cancelled", task_id=record.id, task_path=record.task_path,
                           queue_name=record.queue_name, status="CANCELLED")
