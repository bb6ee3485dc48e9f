"""Django Channels, both ways: a WebSocket starts a durable task and follows its events live.

``TaskProgressConsumer`` (a WebSocket at ``/ws/channels/``) turns ``{"start": n}`` from the
browser into a ``task.enqueue`` message on the channel layer, the usual "hand it to the
background" shape; loom's ``TaskConsumer`` (``runworker loom-tasks``) stores it as a task and
replies with its id. The consumer then joins the task's group, and loom's Channels bridge
(``LOOM_EVENTS["CHANNELS_BRIDGE"]``) delivers the task's ``started``/``progress``/``finished``
events from the worker, which the consumer passes to the browser. docs/channels.md walks through
it; ``demo_site/asgi_channels.py`` and ``demo_site/settings_channels.py`` wire it up.
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from channels.generic.websocket import JsonWebsocketConsumer
from django.tasks import task

from loom import events, progress

# The channel loom's TaskConsumer listens on (``manage.py runworker loom-tasks``).
TASKS_CHANNEL = "loom-tasks"
# Largest count a browser may ask for.
MAX_COUNT = 50


@task
def count_to(n: int) -> int:
    for i in range(1, n + 1):
        time.sleep(0.1)  # stands in for real work
        progress(i, n, f"{i} of {n}")
    return n


class TaskProgressConsumer(JsonWebsocketConsumer):
    def connect(self) -> None:
        self.task_groups: list[str] = []
        self.accept()

    def receive_json(self, content, **kwargs) -> None:
        n = content.get("start") if isinstance(content, dict) else None
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_COUNT:
            self.send_json({"type": "error", "error": f'send {{"start": n}} with n from 1 to {MAX_COUNT}'})
            return
        async_to_sync(self.channel_layer.send)(TASKS_CHANNEL, {
            "type": "task.enqueue", "task": count_to.module_path, "args": [n],
            "reply_channel": self.channel_name,
        })

    def task_enqueued(self, message) -> None:
        """loom's TaskConsumer stored the task: follow its events."""
        group = events.task_group(message["task_id"])
        async_to_sync(self.channel_layer.group_add)(group, self.channel_name)
        self.task_groups.append(group)
        self.send_json({"type": "accepted", "task_id": message["task_id"]})

    def task_rejected(self, message) -> None:
        self.send_json({"type": "error", "error": message["error"]})

    def loom_event(self, message) -> None:
        """An event of a task we follow, from the worker through loom's Channels bridge."""
        self.send_json(message["payload"])

    def disconnect(self, code) -> None:
        for group in self.task_groups:
            async_to_sync(self.channel_layer.group_discard)(group, self.channel_name)
