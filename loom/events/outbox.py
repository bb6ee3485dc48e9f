"""Outbox: hands events to a broker's network client from one background thread, in batches.

A task thread or a request that publishes an event only appends to a queue; the outbox thread
writes whatever has gathered in one round trip (one ``SELECT pg_notify(...), ...`` or one Redis
pipeline). Publishing therefore never waits on the network and never joins the caller's
transaction. Events are best effort: a batch that cannot be sent after one reconnect is dropped
and logged, since the task table, not the event stream, is the source of truth.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loom.events.listener import Listener

logger = logging.getLogger("loom.events")

# Most events written in one round trip.
BATCH_SIZE = 200
# Seconds the exit hook waits for queued events to be sent.
EXIT_FLUSH_TIMEOUT = 2.0
# Seconds without events after which the outbox closes its connection (reopened on the next).
IDLE_CLOSE = 1.0


class Outbox:
    """One daemon thread calling ``send(batch)``; ``reset()`` is called after a failed send."""

    def __init__(self, name: str, send: Callable[[list[str]], None], reset: Callable[[], None]) -> None:
        self.name = name
        self._send = send
        self._reset = reset
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self.sent = 0
        # Events put so far, and handled so far (sent or dropped), in order: see wait_handled.
        self._put = 0
        self._handled = 0
        self._progress = threading.Condition()

    def put(self, data: str) -> None:
        if self._thread is None:
            self._start()
        self._idle.clear()
        with self._progress:
            self._put += 1
        self._queue.put(data)

    def wait_handled(self, timeout: float) -> bool:
        """Wait until every event put before this call was sent (or dropped); False on timeout.
        Unlike ``flush`` it does not wait for events put meanwhile, so it ends under a steady flow."""
        with self._progress:
            mark = self._put
            return self._progress.wait_for(lambda: self._handled >= mark, timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"loom-events-{self.name}", daemon=True)
                self._thread.start()
                atexit.register(self.flush, EXIT_FLUSH_TIMEOUT)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything put so far was sent (or dropped); False on timeout."""
        return self._idle.wait(timeout)

    def close(self, timeout: float | None = EXIT_FLUSH_TIMEOUT) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                try:
                    first = self._queue.get(timeout=IDLE_CLOSE)
                except queue.Empty:
                    self._reset()  # idle: hold no database connection or socket between bursts
                    first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < BATCH_SIZE:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                self._deliver(batch)
                with self._progress:
                    self._handled += len(batch)
                    self._progress.notify_all()
                if self._queue.empty():
                    self._idle.set()
                if stop:
                    return
        finally:
            self._idle.set()
            self._reset()

    def _deliver(self, batch: list[str]) -> None:
        for attempt in (1, 2):
            try:
                self._send(batch)
                self.sent += len(batch)
                return
            except Exception:
                self._reset()
                if attempt == 2:
                    logger.exception("loom events: dropped %d events that %s could not send", len(batch), self.name)


class NetworkBroker:
    """What the PostgreSQL and Redis brokers share: an ``outbox`` that sends, a ``listener`` that
    receives; subclasses set both and write the network calls."""

    outbox: Outbox
    listener: "Listener"

    def listen(self, wait: float | None = None) -> bool:
        return self.listener.start(wait)

    def flush(self, timeout: float | None = None) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()
        self.listener.stop()
