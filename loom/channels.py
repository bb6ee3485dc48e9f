"""TaskConsumer: a Channels consumer that turns ``task.enqueue`` messages into durable tasks.

Code that hands work to the background over a channel layer keeps its shape and gains loom's
durability: the message becomes a row in the task table (committed before the reply), and a
loom worker runs it, with retries, time limits and progress, even if every process restarts::

    # asgi.py
    from channels.routing import ChannelNameRouter, ProtocolTypeRouter
    from loom.channels import TaskConsumer

    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "channel": ChannelNameRouter({"loom-tasks": TaskConsumer.as_asgi()}),
    })

    # anywhere (a view, a WebSocket consumer)
    async_to_sync(channel_layer.send)("loom-tasks", {
        "type": "task.enqueue", "task": "shop.tasks.send_receipt", "args": [order.pk],
        "reply_channel": self.channel_name,     # optional: hear back
    })

and ``python manage.py runworker loom-tasks`` receives them. ``group_send`` works too, to a
group the worker's channel belongs to (``group_add("jobs", "loom-tasks")``).

Message keys: ``task`` (dotted path of a ``@task`` function, required), ``args`` (list),
``kwargs`` (dict), ``queue_name``, ``priority``, ``run_after`` (ISO 8601 with a time zone) and
``reply_channel``. The reply is ``{"type": "task.enqueued", "task_id": ..., "task": ...}``, or
``{"type": "task.rejected", "error": ...}`` naming what was wrong.

It refuses anything that is not a ``Task`` and, when ``allowed_tasks`` is set on a subclass, any
path not in it. A bad message is logged (logger ``loom.channels``) and rejected; it never
crashes the consumer. Needs Channels (``pip install django-loom[channels]``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from channels.consumer import SyncConsumer
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from loom.compat import Task

__all__ = ["TaskConsumer", "InvalidMessage", "build_call"]

logger = logging.getLogger("loom.channels")

# Keys a task.enqueue message may carry.
MESSAGE_KEYS = frozenset({"type", "task", "args", "kwargs", "queue_name", "priority", "run_after", "reply_channel"})


class InvalidMessage(ValueError):
    """A task.enqueue message that cannot become a task; the text says what to change."""


def build_call(message: dict[str, Any], allowed_tasks: Collection[str] | None = None,
               ) -> tuple[Task[..., Any], list[Any], dict[str, Any]]:
    """The Task (with the message's overrides) and the arguments a message asks for."""
    unknown = sorted(set(message) - MESSAGE_KEYS)
    if unknown:
        raise InvalidMessage(f"unknown key(s) {', '.join(map(repr, unknown))}; a task.enqueue message takes "
                             f"{', '.join(sorted(MESSAGE_KEYS - {'type'}))}.")
    path = message.get("task")
    if not isinstance(path, str) or not path:
        raise InvalidMessage("'task' must be the dotted path of a @task function, e.g. 'shop.tasks.send_receipt'.")
    if allowed_tasks is not None and path not in allowed_tasks:
        raise InvalidMessage(f"task {path!r} is not in this consumer's allowed_tasks.")
    try:
        task = import_string(path)
    except ImportError as exc:
        raise InvalidMessage(f"task {path!r} does not import ({exc}).") from None
    if not isinstance(task, Task):
        raise InvalidMessage(f"{path!r} is a {type(task).__name__}, not a task: decorate it with @task.")
    args, kwargs = message.get("args", []), message.get("kwargs", {})
    if not isinstance(args, (list, tuple)):
        raise InvalidMessage(f"'args' must be a list, got {type(args).__name__}.")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidMessage("'kwargs' must be a dict with string keys.")
    changes: dict[str, Any] = {}
    if "queue_name" in message:
        if not isinstance(message["queue_name"], str):
            raise InvalidMessage("'queue_name' must be a string.")
        changes["queue_name"] = message["queue_name"]
    if "priority" in message:
        if not isinstance(message["priority"], int) or isinstance(message["priority"], bool):
            raise InvalidMessage("'priority' must be a whole number.")
        changes["priority"] = message["priority"]
    if message.get("run_after") is not None:
        when = parse_datetime(message["run_after"]) if isinstance(message["run_after"], str) else None
        if when is None or when.tzinfo is None:
            raise InvalidMessage("'run_after' must be an ISO 8601 date and time with a time zone, "
                                 "e.g. '2030-01-01T09:00:00+00:00'.")
        changes["run_after"] = when
    return (task.using(**changes) if changes else task), list(args), kwargs


class TaskConsumer(SyncConsumer):  # type: ignore[misc]  # Channels ships no type hints
    # Dotted task paths this consumer may enqueue; None: any @task function.
    allowed_tasks: Collection[str] | None = None

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") != "task.enqueue":  # Channels would raise, and stop the consumer
            logger.warning("loom.channels: ignored a %r message; TaskConsumer handles task.enqueue only",
                           message.get("type"))
            return
        await super().dispatch(message)

    def task_enqueue(self, message: dict[str, Any]) -> None:
        reply_to = message.get("reply_channel")
        try:
            task, args, kwargs = build_call(message, self.allowed_tasks)
            result = task.enqueue(*args, **kwargs)
        except Exception as exc:  # a bad message is rejected, never fatal to the consumer
            logger.warning("loom.channels: rejected a task.enqueue message: %s", exc)
            self._reply(reply_to, {"type": "task.rejected", "error": str(exc), "task": message.get("task")})
            return
        self._reply(reply_to, {"type": "task.enqueued", "task_id": result.id, "task": task.module_path})

    def _reply(self, channel: Any, message: dict[str, Any]) -> None:
        if not isinstance(channel, str) or not channel:
            return
        from asgiref.sync import async_to_sync

        try:
            async_to_sync(self.channel_layer.send)(channel, message)
        except Exception:
            logger.exception("loom.channels: could not reply to %r", channel)
