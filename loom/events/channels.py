"""Bridge to Django Channels: with ``LOOM_EVENTS["CHANNELS_BRIDGE"] = True``, every ``send()`` is
also a ``group_send`` on the default channel layer, as ``{"type": "loom.event", "payload": ...}``,
so a consumer's ``loom_event(self, message)`` handler receives it. It needs Channels and a
channel layer; loom itself never requires either.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync


def _layer():
    try:
        from channels.layers import get_channel_layer
    except ImportError:
        raise ImportError(
            "LOOM_EVENTS['CHANNELS_BRIDGE'] is on but Channels is not installed; pip install "
            "channels or turn the bridge off."
        ) from None
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("LOOM_EVENTS['CHANNELS_BRIDGE'] is on but CHANNEL_LAYERS has no default layer.")
    return layer


def forward(group: str, payload: dict[str, Any]) -> None:
    message = {"type": "loom.event", "payload": payload}
    layer = _layer()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        async_to_sync(layer.group_send)(group, message)
    else:
        # Called from async code: schedule it rather than block the loop.
        loop.create_task(layer.group_send(group, message))
