"""Task lifecycle events, published from Django's own task signals.

``task_enqueued`` → ``enqueued`` (sent on commit, in the process that enqueued),
``task_started`` → ``started`` and ``task_finished`` → ``finished`` or ``failed`` (in the worker),
``loom.progress`` → ``progress``, operator cancels → ``cancelled``. Each goes to the task's group,
its queue's group and ``ALL_TASKS``. Receivers never raise: an event that cannot be published is
logged, and the task runs on. Turn them off with ``LOOM_EVENTS["TASK_EVENTS"] = False``.

In a worker, ``finished``/``failed`` are announced once the outcome is written (``announce``,
called by whoever wrote it), so a subscriber that reloads the row reads the final state, and a
late outcome the claim guard refused announces nothing. On PostgreSQL, when the events travel as
NOTIFY on the task database, the completion's own statement carries them (``inline_finished``):
delivered when it commits, with no round trip of their own, once the outbox has sent the runs'
``started`` events (so those still arrive first). ``task_finished`` is then sent with
``loom_announced_on_write=True`` and its receiver here leaves the event alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.dispatch import receiver
from django.utils import timezone

from loom.compat import AnyTaskResult, TaskResultStatus, task_enqueued, task_finished, task_started
from loom.events import ALL_TASKS, config, get_broker, hub, publish, queue_group, task_group

if TYPE_CHECKING:
    from loom.records import Outcome

logger = logging.getLogger("loom.events")

# Longest a completion waits for the outbox to send the runs' started events (inline_finished).
ORDER_WAIT = 1.0
# Event type for each final status of Django's TaskResult.
FINAL_TYPES = {TaskResultStatus.SUCCESSFUL: "finished", TaskResultStatus.FAILED: "failed"}


def _groups(task_id: Any, queue_name: str) -> tuple[str, ...]:
    return (task_group(task_id), queue_group(queue_name), ALL_TASKS)


def _payload(kind: str, task_id: Any, task_path: str, queue_name: str, status: str, *, when: Any = None,
             **extra: Any) -> dict[str, Any]:
    return {"type": kind, "task_id": str(task_id), "task": task_path, "queue": queue_name, "status": str(status),
            "at": (when or timezone.now()).isoformat(), **extra}


def publish_task_event(kind: str, *, task_id: Any, task_path: str, queue_name: str, status: str,
                       **extra: Any) -> None:
    """Publish one task event; never raises (failures are logged)."""
    try:
        conf = config()
        if not conf.task_events:
            return
        if hub.empty and not conf.channels_bridge and not get_broker().cross_process:
            return  # in-process delivery and nobody here subscribed: nothing to build
        publish(_groups(task_id, queue_name), _payload(kind, task_id, task_path, queue_name, status, **extra))
    except Exception:
        logger.exception("loom events: could not publish %s for task %s", kind, task_id)


def _from_result(kind: str, result: AnyTaskResult, status: str | None = None) -> None:
    publish_task_event(kind, task_id=result.id, task_path=result.task.module_path,
                       queue_name=result.task.queue_name, status=status or result.status)


def _inline_channel(alias: str) -> str | None:
    """The NOTIFY channel a statement on ``alias`` can carry task events on, or None."""
    conf = config()
    if not conf.task_events or conf.channels_bridge:
        return None
    inline_channel = getattr(get_broker(), "inline_channel", None)
    return inline_channel(alias) if inline_channel is not None else None


def _final_kind(outcome: "Outcome") -> str | None:
    """``finished``/``failed`` for a final outcome that says which task ran, else None."""
    kind = FINAL_TYPES.get(outcome.status)  # type: ignore[call-overload]
    return kind if outcome.task_path else None


def inline_finished(alias: str, outcomes: Sequence["Outcome"]) -> tuple[str, list[str | None]] | None:
    """(channel, one NOTIFY payload or None per outcome) for a completion statement on ``alias``
    to carry the ``finished``/``failed`` events of the outcomes it writes; None: ``announce``
    them after the write. An outcome with None (not final, or too large) is left to ``announce``.

    Each run's ``started`` event went to the outbox's own connection before its outcome existed;
    waiting (at most ``ORDER_WAIT``) until the outbox has sent what it holds keeps ``started``
    ahead of ``finished`` for every subscriber: NOTIFYs arrive in the order their transactions
    commit."""
    channel = _inline_channel(alias)
    if channel is None:
        return None
    from loom.events.postgres import MAX_PAYLOAD
    from loom.events.wire import encode

    payloads: list[str | None] = []
    for outcome in outcomes:
        kind = _final_kind(outcome)
        data = None if kind is None else encode(
            _groups(outcome.id, outcome.queue_name),
            _payload(kind, outcome.id, outcome.task_path, outcome.queue_name, outcome.status, when=outcome.finished_at))
        payloads.append(data if data is not None and len(data.encode()) <= MAX_PAYLOAD else None)
    outbox = getattr(get_broker(), "outbox", None)
    if outbox is not None and any(payloads) and not outbox.wait_handled(ORDER_WAIT):
        logger.warning("loom events: the event outbox is behind; finished events may overtake started ones")
    return channel, payloads


def announce(outcomes: Iterable["Outcome"]) -> None:
    """Publish the ``finished``/``failed`` events of outcomes just written; never raises."""
    for outcome in outcomes:
        kind = _final_kind(outcome)
        if kind is not None:
            publish_task_event(kind, task_id=outcome.id, task_path=outcome.task_path, queue_name=outcome.queue_name,
                               status=outcome.status, when=outcome.finished_at)


def inline_enqueued(alias: str, result: AnyTaskResult) -> tuple[str, str] | None:
    """(channel, NOTIFY payload) of ``result``'s ``enqueued`` event when the event broker
    NOTIFYs on the database that ``alias`` writes to: the enqueue's own INSERT then carries it,
    delivered when the enqueue commits (as the signal that would publish it), without a second
    round trip from the outbox's connection, which cost a one-by-one enqueue on PostgreSQL a
    third of its time. None: the signal publishes it as usual. The signal is then sent with
    ``loom_event_sent=True``."""
    channel = _inline_channel(alias)
    if channel is None:
        return None
    from loom.events.postgres import MAX_PAYLOAD
    from loom.events.wire import encode

    payload = _payload("enqueued", result.id, result.task.module_path, result.task.queue_name, result.status)
    data = encode(_groups(result.id, result.task.queue_name), payload)
    return (channel, data) if len(data.encode()) <= MAX_PAYLOAD else None


@receiver(task_enqueued, dispatch_uid="loom.events.enqueued")
def _on_enqueued(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    if kwargs.get("loom_event_sent"):
        return  # the enqueue's own statement carried it (inline_enqueued)
    _from_result("enqueued", task_result)


@receiver(task_started, dispatch_uid="loom.events.started")
def _on_started(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    _from_result("started", task_result)


@receiver(task_finished, dispatch_uid="loom.events.finished")
def _on_finished(sender: type, task_result: AnyTaskResult, **kwargs: Any) -> None:
    if kwargs.get("loom_announced_on_write"):
        return  # a worker's run: announced once its outcome is written (announce, inline_finished)
    kind = FINAL_TYPES.get(task_result.status)
    if kind is not None:
        _from_result(kind, task_result)


def publish_cancelled(records: Iterable[Any]) -> None:
    """Announce rows that were just cancelled (an operator cancel of READY tasks, or a worker)."""
    for record in records:
        publish_task_event("cancelled", task_id=record.id, task_path=record.task_path,
                           queue_name=record.queue_name, status="CANCELLED")
