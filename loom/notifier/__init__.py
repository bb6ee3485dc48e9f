"""Listeners tell an idle fetcher that new work may be due, so it never busy-polls the database.

A listener is not a thread: the fetcher waits on it directly (``select`` on its file descriptor,
beside the fetcher's own wake-up pipe), so a notification reaches the claim with no hand-off
between threads. Each listener has the same small shape:

- ``open()``: connect and subscribe (raises on a database error; the fetcher retries);
- ``fileno()``: the descriptor that becomes readable when something may have changed, or None
  when the listener can only be polled (then ``interval`` says how often);
- ``drain() -> bool``: consume what arrived; True if it may mean new work for this worker;
- ``close()``.

Implementations:

- PostgreSQL: ``PostgresListener``, one LISTEN connection (NOTIFY comes from the insert trigger
  and from release/rescue statements, delivered on commit).
- SQLite: ``SQLiteListener``: Linux inotify on the database file and its WAL (a commit writes
  them), else ``PRAGMA data_version`` polled every 2 ms.
- MariaDB/MySQL: none; the fetcher polls with a short delay that grows while idle.

After (re)opening, the fetcher claims at once: anything sent while it was not listening was missed.
Which listener a worker uses, including behind a transaction pooler, is ``loom.pooler``'s call.
"""

from __future__ import annotations

from typing import Protocol


class Listener(Protocol):
    interval: float | None  # seconds between two polls when fileno() is None

    def open(self) -> None: ...

    def fileno(self) -> int | None: ...

    def drain(self) -> bool: ...

    def close(self) -> None: ...
