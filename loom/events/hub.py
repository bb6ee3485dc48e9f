"""Hub: fans events out to the subscribers of this process, from any thread to any thread or loop.

Every broker ends here: the in-process broker delivers straight to the hub, the PostgreSQL and
Redis brokers deliver what their one listener thread receives. A ``Subscription`` is a bounded
buffer that a thread waits on (``get``) or a coroutine awaits (``aget``) — a coroutine waits on an
``asyncio.Event`` of its own loop, so a server-sent-events client under ASGI holds no thread.

The hub refuses to block a publisher: a subscriber that falls ``maxsize`` events behind loses the
oldest ones, and ``dropped`` says how many, so a slow browser cannot stall a worker.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Events a subscriber may fall behind before the oldest are dropped.
DEFAULT_MAXSIZE = 1000


@dataclass(frozen=True, slots=True)
class Event:
    """One delivered event: the group it was sent to and its JSON payload."""

    group: str
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.payload.get("type", "message"))


class Subscription:
    """Events of some groups, buffered for one consumer. Close it when done (or use ``with``)."""

    def __init__(self, hub: "Hub", groups: Iterable[str], maxsize: int = DEFAULT_MAXSIZE,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.hub = hub
        self.groups = frozenset(groups)
        self.maxsize = maxsize
        self.dropped = 0
        self.closed = False
        self._items: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._loop = loop
        self._ready = asyncio.Event() if loop is not None else None

    # -- producer side (any thread) --------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        with self._cond:
            if self.closed:
                return
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._cond.notify()
        self._wake_loop()

    def _wake_loop(self) -> None:
        if self._loop is None or self._ready is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the consumer's loop is gone: nobody will read this subscription
            self.close()

    # -- consumer side ---------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds or once closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft() if self._items else None

    async def aget(self, timeout: float | None = None) -> Event | None:
        """Like ``get`` for a coroutine on the loop this subscription was made on."""
        if self._ready is None:
            raise RuntimeError("This subscription was made with subscribe(); use asubscribe() in async code.")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                if self._items:
                    return self._items.popleft()
                if self.closed:
                    return None
                self._ready.clear()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._ready.wait(), remaining)
            except TimeoutError:
                return None

    def close(self) -> None:
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._cond.notify_all()
        self.hub.remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """Subscriptions of this process, by group."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_group: dict[str, set[Subscription]] = {}

    def add(self, subscription: Subscription) -> Subscription:
        with self._lock:
            for group in subscription.groups:
                self._by_group.setdefault(group, set()).add(subscription)
        return subscription

    def remove(self, subscription: Subscription) -> None:
        with self._lock:
            for group in subscription.groups:
                subs = self._by_group.get(group)
                if subs is not None:
                    subs.discard(subscription)
                    if not subs:
                        del self._by_group[group]

    def deliver(self, groups: Iterable[str], payload: dict[str, Any]) -> int:
        """Hand one event to every subscriber of any of ``groups`` (once each); return how many."""
        targets: dict[Subscription, str] = {}
        with self._lock:
            for group in groups:
                for sub in self._by_group.get(group, ()):
                    targets.setdefault(sub, group)
        for sub, group in targets.items():
            sub.deliver(Event(group, payload))
        return len(targets)

    @property
    def empty(self) -> bool:
        """No subscription at all in this process (read without the lock: a hint, for fast paths)."""
        return not self._by_group

    def subscriber_count(self, group: str | None = None) -> int:
        with self._lock:
            if group is not None:
                return len(self._by_group.get(group, ()))
            return len({sub for subs in self._by_group.values() for sub in subs})
