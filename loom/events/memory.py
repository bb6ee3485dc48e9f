"""MemoryBroker: events stay inside this process (SQLite sites, tests, a single server).

Publishing delivers straight to the hub in the caller's thread; it only appends to buffers, so
it is cheap and never blocks. A worker running in another process cannot reach these
subscribers: that is why the server-sent-events view also watches the task row when the broker
is not ``cross_process`` (see ``loom.sse``).
"""

from __future__ import annotations

import json
from typing import Any

from loom.events.hub import Hub
from loom.events.wire import encode


class MemoryBroker:
    # Events reach other processes (workers, other web servers).
    cross_process = False
    name = "memory"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def publish(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None:
        if not any(self.hub.subscriber_count(group) for group in groups):
            return
        # A round trip through JSON, so subscribers see what a network broker would deliver.
        self.hub.deliver(groups, json.loads(encode(groups, payload))["p"])

    def listen(self, wait: float | None = None) -> bool:
        """Nothing to start: publishers deliver to the hub themselves."""
        return True

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass
