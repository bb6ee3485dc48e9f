"""Notifiers wake an idle worker when new work may be due, so it never busy-polls the database.

- PostgreSQL: ``PostgresNotifier`` holds the one LISTEN connection (NOTIFY comes from the insert
  trigger and from release/rescue statements, delivered on commit).
- SQLite: ``SQLiteNotifier`` watches ``PRAGMA data_version``, which changes when another
  connection commits; the check is a read of shared memory, not a query of the table.
- MariaDB/MySQL: no notifier; the worker polls with a short delay that grows while idle.

Every notifier calls ``on_wake()`` after (re)connecting too, since anything sent while it was not
listening was missed. ``for_store`` picks one by vendor.
"""

from __future__ import annotations

from collections.abc import Callable

from loom.store import Store


def for_store(store: Store, on_wake: Callable[[], None], queues: list[str] | None):
    vendor = store.vendor
    if vendor == "postgresql":
        from loom.notifier.postgres import PostgresNotifier

        return PostgresNotifier(store.alias, on_wake, queues)
    if vendor == "sqlite":
        from loom.notifier.sqlite import SQLiteNotifier

        return SQLiteNotifier(store.alias, on_wake)
    return None
