"""Listener: the one thread per process that receives a network broker's events for the hub.

It starts on the first subscription (a worker that never subscribes never listens), reconnects
with a growing delay after an error, and sets ``connected`` once it is listening, so callers can
wait for that instead of sleeping. Subclasses say how to connect, receive and disconnect.
"""

from __future__ import annotations

import json
import logging
import threading

from loom.events.hub import Hub

logger = logging.getLogger("loom.events")

# Seconds a receive call may block, which bounds how long stop() takes.
RECEIVE_TIMEOUT = 0.5
# Longest wait between two reconnect attempts, in seconds.
MAX_BACKOFF = 5.0


class Listener:
    name = "listener"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.received = 0

    # -- for subclasses ------------------------------------------------------------------------

    def connect(self) -> None:
        raise NotImplementedError

    def receive(self, timeout: float) -> list[str]:
        raise NotImplementedError

    def disconnect(self) -> None:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self, wait: float | None = None) -> bool:
        """Start once; with ``wait``, block up to that many seconds until listening."""
        with self._lock:
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"loom-events-{self.name}", daemon=True)
                self._thread.start()
        return self.connected.wait(wait) if wait else self.connected.is_set()

    def stop(self, timeout: float | None = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                if not self.connected.is_set():
                    self.connect()
                    self.connected.set()
                    backoff = 0.1
                for data in self.receive(RECEIVE_TIMEOUT):
                    self._dispatch(data)
            except Exception:
                logger.warning("loom events: %s lost its connection; reconnecting in %.1fs",
                               self.name, backoff, exc_info=True)
                self.connected.clear()
                self._safe_disconnect()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.connected.clear()
        self._safe_disconnect()

    def _safe_disconnect(self) -> None:
        try:
            self.disconnect()
        except Exception:
            pass

    def _dispatch(self, data: str) -> None:
        try:
            message = json.loads(data)
            groups, payload = message["g"], message["p"]
        except (ValueError, KeyError, TypeError):
            logger.warning("loom events: ignored a message that is not a loom event: %.200r", data)
            return
        self.received += 1
        self.hub.deliver(groups, payload)
