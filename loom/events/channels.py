"""ChannelsBridge: every loom event also goes to Django Channels' layer, as a ``group_send``.

With ``LOOM_EVENTS["CHANNELS_BRIDGE"] = True`` each event published in this process (your
``events.send(group, payload)`` and the task events ``enqueued``, ``started``, ``progress``,
``finished``, ``failed``, ``cancelled``) is sent to the same group names on the default channel
layer as ``{"type": "loom.event", "group": group, "payload": payload}``, so a consumer that joined
``loom.task.<id>`` (``events.task_group(id)``) gets them in its ``loom_event(self, message)``
handler. Task events come from the worker process: the layer must reach across processes
(channels-redis), not ``InMemoryChannelLayer``.

Like the network brokers, publishing only queues the event; one background thread (an
``Outbox``) sends batches on an event loop of its own, so a task never waits on Redis. Events are
best effort: a batch the layer refuses is logged and dropped (the task row stays the truth).
Needs Channels and ``CHANNEL_LAYERS``; loom itself never requires either, and without the
setting nothing here is imported.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from loom.events.outbox import Outbox
from loom.events.wire import encode

# The Channels message type: a consumer handles it in ``loom_event``.
MESSAGE_TYPE = "loom.event"


def _layer() -> Any:
    try:
        from channels.layers import get_channel_layer
    except ImportError:
        raise ImportError(
            "LOOM_EVENTS['CHANNELS_BRIDGE'] is on but Channels is not installed; pip install "
            "django-loom[channels] (or channels channels-redis), or turn the bridge off."
        ) from None
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("LOOM_EVENTS['CHANNELS_BRIDGE'] is on but CHANNEL_LAYERS has no default layer.")
    return layer


class ChannelsBridge:
    def __init__(self) -> None:
        self.layer = _layer()  # fails here, in the caller, when Channels is missing
        self._loop: asyncio.AbstractEventLoop | None = None
        self.outbox = Outbox("channels", self._send, self._reset)

    def forward(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None:
        self.outbox.put(encode(groups, payload))

    def flush(self, timeout: float | None = None) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    def _send(self, batch: list[str]) -> None:
        # The outbox thread keeps one loop, so channels-redis keeps its connection between batches.
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._group_send(batch))

    async def _group_send(self, batch: list[str]) -> None:
        for data in batch:
            event = json.loads(data)
            for group in event["g"]:
                await self.layer.group_send(group, {"type": MESSAGE_TYPE, "group": group, "payload": event["p"]})

    def _reset(self) -> None:
        # Closing our loop is enough: channels-redis then drops the pools of this loop only (its
        # close_pools() would close every loop's, including a consumer's in this process).
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()


_bridge: ChannelsBridge | None = None
_lock = threading.Lock()


def get_bridge() -> ChannelsBridge:
    global _bridge
    if _bridge is None:
        with _lock:
            if _bridge is None:
                _bridge = ChannelsBridge()
    return _bridge


def reset() -> None:
    """Stop the bridge's thread (tests; CHANNEL_LAYERS or LOOM_EVENTS changed)."""
    global _bridge
    with _lock:
        bridge, _bridge = _bridge, None
    if bridge is not None:
        bridge.close()
