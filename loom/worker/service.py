"""Service: the one shape of every background service in a worker.

A service is a thread that calls ``run_once()`` until stopped. ``run_once()`` holds the logic and
returns how long to wait before the next call (``None``: until woken). ``wake()`` cuts a wait
short; ``stop()`` ends the loop after the current call. Tests call ``run_once()`` directly, or wait
on ``ran`` (an Event set after every call) instead of sleeping. A failing ``run_once()`` is logged
and retried after ``error_delay``: a service never dies of a passing database error.
"""

from __future__ import annotations

import logging
import threading

from django.db import connections

logger = logging.getLogger("loom.worker")


class Service:
    name = "service"
    # Seconds to wait after run_once() raised, before trying again.
    error_delay = 1.0

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self.ran = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> float | None:
        raise NotImplementedError

    def on_stop(self) -> None:
        """Called in the service's own thread after the loop ends (flush, close)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"loom-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    delay = self.run_once()
                except Exception:
                    logger.exception("loom %s failed; retrying in %.1fs", self.name, self.error_delay)
                    _drop_broken_connections()
                    delay = self.error_delay
                self.ran.set()
                if delay is None or delay > 0:
                    self._wake.wait(delay)
            self.on_stop()
        finally:
            connections.close_all()


def _drop_broken_connections() -> None:
    """After an error, close this thread's connections so the next call reconnects cleanly."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            try:
                conn.close()
            except Exception:
                conn.connection = None
