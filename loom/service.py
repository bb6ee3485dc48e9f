"""Service: the one shape of every background service in a worker.

A service is a thread that calls ``run_once()`` until stopped. ``run_once()`` holds the logic and
returns how long to wait before the next call (``None``: until woken). ``wake()`` cuts a wait
short; ``stop()`` ends the loop after the current call. Tests call ``run_once()`` directly, or wait
on ``ran`` (an Event set after every call) instead of sleeping.

A service never dies of a failing ``run_once()``: it closes its thread's broken connections and
tries again with a backoff that grows from ``min_retry_delay`` to ``max_retry_delay``. An outage
is logged once when it starts (a database error as one line, anything else with its traceback),
again at most every ``REPEAT_LOG`` seconds while it lasts, and once when the service is back.
``failing_since`` tells others (health checks, a burst run) how long it has been failing.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from django.db import DatabaseError, InterfaceError, connections

from loom import databases, faults

logger = logging.getLogger("loom.worker")

# Seconds between two "still failing" log lines of one outage.
REPEAT_LOG = 60.0


class Outage:
    """Logs a run of failures of one part of a worker once: when it starts, at most every
    REPEAT_LOG seconds while it lasts, and when it ends; and says how long to wait next."""

    def __init__(self, name: str, min_delay: float = 0.1, max_delay: float = 5.0) -> None:
        self.name = name
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.failures = 0  # in a row
        self.since: float | None = None  # time.monotonic() of the first of them
        self._logged_at = 0.0

    def failed(self, exc: BaseException) -> float:
        """Record a failure; return the seconds to wait before trying again."""
        now = time.monotonic()
        self.failures += 1
        if self.failures == 1:
            self.since = now
        if self.failures == 1 or now - self._logged_at >= REPEAT_LOG:
            self._logged_at = now
            still = "" if self.failures == 1 else f" (still, {now - self.since:.0f}s, {self.failures} tries)"
            if isinstance(exc, (DatabaseError, InterfaceError)) or faults.transient(exc):
                logger.warning("loom %s: database unavailable%s: %s: %s; retrying until it answers",
                               self.name, still, type(exc).__name__, _first_line(exc))
            else:
                logger.error("loom %s failed%s; retrying", self.name, still, exc_info=exc)
        delay = min(self.min_delay * 2 ** (self.failures - 1), self.max_delay)
        return delay * random.uniform(0.8, 1.2)

    def recovered(self) -> None:
        if self.failures:
            logger.warning("loom %s: working again after %.1fs (%d failed tries)", self.name,
                           time.monotonic() - (self.since or time.monotonic()), self.failures)
            self.failures, self.since = 0, None


class Service:
    name = "service"
    # Shortest and longest wait after run_once() raised, before trying again.
    min_retry_delay = 0.1
    max_retry_delay = 5.0

    def __init__(self) -> None:
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self.ran = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage = Outage(self.name, self.min_retry_delay, self.max_retry_delay)

    @property
    def failures(self) -> int:
        """Consecutive failed calls of run_once()."""
        return self.outage.failures

    @property
    def failing_since(self) -> float | None:
        """time.monotonic() of the first of them (None while healthy)."""
        return self.outage.since

    def run_once(self) -> float | None:
        raise NotImplementedError

    def on_start(self) -> None:
        """Called in the service's own thread before the loop: its connections are its own,
        named after it, and write only loom's bookkeeping (see ``loom.databases.labelled``)."""
        databases.label_thread(self.name, bookkeeping=True)

    def on_stop(self) -> None:
        """Called in the service's own thread after the loop ends (flush, close)."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"loom-{self.name}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        self._stopping.set()
        self.wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def sleep(self, delay: float | None) -> None:
        """Wait ``delay`` seconds (None: until woken) or until ``wake()``."""
        self._wake.wait(delay)

    def call(self) -> float | None:
        """One ``run_once()`` with the outage handling of the loop; returns the wait after it."""
        try:
            delay = self.run_once()
        except Exception as exc:
            delay = self.outage.failed(exc)
            databases.close_broken()
            return delay
        self.outage.recovered()
        return delay

    def _loop(self) -> None:
        try:
            self.on_start()
            while not self._stopping.is_set():
                self._wake.clear()
                delay = self.call()
                self.ran.set()
                if delay is None or delay > 0:
                    self.sleep(delay)
            self.on_stop()
        finally:
            connections.close_all()


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""
