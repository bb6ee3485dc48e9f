"""PostgresBroker: events travel as PostgreSQL NOTIFY on one channel (``loom_events``).

Publishing queues the event for the outbox thread, which sends a batch as one
``SELECT pg_notify(...), ...`` on a connection of its own (so an event never waits for, or rolls
back with, the caller's transaction). A process that subscribes opens one LISTEN connection in a
listener thread and hands every event to the hub; events are filtered by group in the process.
NOTIFY carries at most 8000 bytes: send an id and let the subscriber load the rest.

Configure with ``LOOM_EVENTS = {"BACKEND": "postgresql", "DATABASE": "default"}`` (``"auto"``,
the default, picks this broker when the task database is PostgreSQL).
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from loom.codec import pg_array
from loom.events.hub import Hub
from loom.events.listener import Listener
from loom.events.outbox import NetworkBroker, Outbox
from loom.events.wire import encode

# Largest payload PostgreSQL accepts in one NOTIFY, in bytes.
MAX_PAYLOAD = 7999


def _open(alias: str) -> BaseDatabaseWrapper:
    """A private autocommit psycopg connection with the alias's settings."""
    wrapper = connections.create_connection(alias)
    wrapper.ensure_connection()
    wrapper.connection.autocommit = True
    return wrapper


class _PostgresListener(Listener):
    name = "postgresql-listener"

    def __init__(self, hub: Hub, alias: str, channel: str) -> None:
        super().__init__(hub)
        self.alias = alias
        self.channel = channel
        self._wrapper: BaseDatabaseWrapper | None = None

    def connect(self) -> None:
        self._wrapper = _open(self.alias)
        self._wrapper.connection.execute(f'LISTEN "{self.channel}"')

    def receive(self, timeout: float) -> list[str]:
        assert self._wrapper is not None, "connect() first"
        return [note.payload for note in self._wrapper.connection.notifies(timeout=timeout, stop_after=256)]

    def disconnect(self) -> None:
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            wrapper.close()


class PostgresBroker(NetworkBroker):
    cross_process = True
    name = "postgresql"

    def __init__(self, hub: Hub, alias: str, channel: str) -> None:
        if connections[alias].vendor != "postgresql":
            raise ValueError(
                f"LOOM_EVENTS uses the postgresql broker on database {alias!r}, which is "
                f"{connections[alias].vendor}; set LOOM_EVENTS['DATABASE'] to a PostgreSQL alias "
                "or pick another BACKEND."
            )
        self.alias = alias
        self.channel = channel
        self.listener = _PostgresListener(hub, alias, channel)
        self.outbox = Outbox(self.name, self._send, self._reset)
        self._wrapper: BaseDatabaseWrapper | None = None

    def publish(self, groups: tuple[str, ...], payload: dict[str, Any]) -> None:
        data = encode(groups, payload)
        if len(data) * 4 > MAX_PAYLOAD and len(data.encode()) > MAX_PAYLOAD:  # 4: UTF-8's worst case
            raise ValueError(
                f"Event for {', '.join(groups)} is {len(data.encode())} bytes encoded; PostgreSQL "
                f"NOTIFY carries at most {MAX_PAYLOAD}. Send an id and load the rest on receipt."
            )
        self.outbox.put(data)

    def inline_channel(self, alias: str) -> str | None:
        """This broker's channel if a NOTIFY sent through ``alias`` reaches its listeners (the
        same PostgreSQL database), else None."""
        if alias == self.alias:
            return self.channel
        mine, theirs = connections.settings[self.alias], connections.settings[alias]
        same = theirs["ENGINE"] == mine["ENGINE"] and all(
            (theirs.get(key) or "") == (mine.get(key) or "") for key in ("NAME", "HOST", "PORT"))
        return self.channel if same else None

    def _send(self, batch: list[str]) -> None:
        if self._wrapper is None:
            self._wrapper = _open(self.alias)
        # One statement of fixed text for the whole batch, its payloads in one array (in order).
        self._wrapper.connection.execute(
            "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) WITH ORDINALITY AS b(p, n) ORDER BY n",
            [self.channel, pg_array(batch)])

    def _reset(self) -> None:
        wrapper, self._wrapper = self._wrapper, None
        if wrapper is not None:
            try:
                wrapper.close()
            except Exception:
                pass
