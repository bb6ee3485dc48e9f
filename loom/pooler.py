"""Transaction poolers (PgBouncer ``pool_mode = transaction``): where a worker LISTENs, or why it polls.

A transaction pooler lends a server connection for one transaction at a time. Everything loom
does to the queue is a single transaction or an autocommit statement (enqueue, ``COPY``, claim,
complete, heartbeat, the leader's lease row, ``NOTIFY``), so all of it works through the pooler
unchanged. ``LISTEN`` does not: it subscribes the server session, which the pooler hands to
someone else after the statement, so notifications would reach a stranger or nobody. This module
owns that one decision:

- ``OPTIONS["LISTEN_DATABASE"]`` names a ``DATABASES`` alias that reaches the same PostgreSQL
  database directly (not through the pooler); workers (and the PostgreSQL event broker, unless
  ``LOOM_EVENTS["DATABASE"]`` says otherwise) LISTEN there: one connection per worker process.
- Without it, a ``DATABASE`` marked as pooled (``DISABLE_SERVER_SIDE_CURSORS: True``, the
  setting Django already asks for behind a transaction pooler) gets no LISTEN: the worker polls,
  from 10 ms up to ``POLL_INTERVAL`` while idle, and says so when it starts.
- Otherwise the worker LISTENs on ``DATABASE`` itself, as before.

Configure::

    DATABASES = {
        "default": {"ENGINE": "django.db.backends.postgresql", "HOST": "pgbouncer", "PORT": 6432,
                    "DISABLE_SERVER_SIDE_CURSORS": True, ...},
        "direct": {"ENGINE": "django.db.backends.postgresql", "HOST": "db", "PORT": 5432, ...},
    }
    TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend",
                         "OPTIONS": {"LISTEN_DATABASE": "direct"}}}

Nothing else is needed from loom: Django's psycopg 3 connections use client-side binding and no
prepared statements unless ``OPTIONS["prepare_threshold"]`` turns them on (only do that with a
PgBouncer that supports them, 1.21+ with ``max_prepared_statements``). This module refuses to
guess whether a host:port is a pooler; the settings above say so. See docs/pgbouncer.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core import checks
from django.db import connections

if TYPE_CHECKING:
    from loom.conf import Options
    from loom.store import Store


def is_pooled(alias: str) -> bool:
    """Whether DATABASES[alias] is marked as going through a transaction pooler."""
    return bool(connections.settings[alias].get("DISABLE_SERVER_SIDE_CURSORS"))


def listen_alias(config: Options) -> str | None:
    """The alias to LISTEN on for the task database of ``config``, or None: poll."""
    if config.listen_database:
        return config.listen_database
    return None if is_pooled(config.database) else config.database


def listener_for(store: Store, queues: list[str] | None, config: Options) -> Any:
    """The worker's listener (``loom.notifier``): LISTEN on ``listen_alias`` for PostgreSQL, the
    file watcher for SQLite; None where the worker polls (MariaDB, a pooler without LISTEN_DATABASE)."""
    if store.vendor == "sqlite":
        from loom.notifier.sqlite import SQLiteListener

        return SQLiteListener(store.alias)
    if store.vendor != "postgresql":
        return None
    alias = listen_alias(config)
    if alias is None:
        return None
    from loom.notifier.postgres import PostgresListener

    return PostgresListener(alias, queues)


def polling_notice(backend_alias: str, config: Options) -> str | None:
    """What a starting worker says when it will poll because its database is pooled."""
    if connections[config.database].vendor != "postgresql" or listen_alias(config) is not None:
        return None
    return (
        f"loom worker: polling for new tasks (every {config.poll_interval:g} s at most when idle): "
        f"DATABASES[{config.database!r}] goes through a transaction pooler "
        f"(DISABLE_SERVER_SIDE_CURSORS), where LISTEN cannot work. Set "
        f"TASKS[{backend_alias!r}]['OPTIONS']['LISTEN_DATABASE'] to an alias that connects to "
        "PostgreSQL directly to wake on NOTIFY instead."
    )


def check(backend_alias: str, config: Options) -> list[checks.CheckMessage]:
    """Problems with OPTIONS['LISTEN_DATABASE'] (system checks loom.E131-E132, loom.W133-W134)."""
    where = f"TASKS[{backend_alias!r}]['OPTIONS']['LISTEN_DATABASE']"
    alias = config.listen_database
    if config.database not in connections.settings:
        return []  # loom.E001 reports it
    if alias is None:
        if connections[config.database].vendor == "postgresql" and is_pooled(config.database):
            return [checks.Warning(
                f"DATABASES[{config.database!r}] goes through a transaction pooler and {where} is "
                "not set: workers poll for new tasks instead of waking on NOTIFY.",
                hint="Add a DATABASES alias that connects to PostgreSQL directly and name it in "
                     "LISTEN_DATABASE (see docs/pgbouncer.md).",
                id="loom.W133",
            )]
        return []
    if alias not in connections.settings:
        return [checks.Error(f"{where} is {alias!r}, which is not in DATABASES.",
                             hint="Name a DATABASES alias that connects to PostgreSQL directly.",
                             id="loom.E131")]
    if connections[alias].vendor != "postgresql" or connections[config.database].vendor != "postgresql":
        return [checks.Error(
            f"{where} is {alias!r}, but LISTEN/NOTIFY needs PostgreSQL for both it and "
            f"DATABASES[{config.database!r}].",
            hint="Remove LISTEN_DATABASE: SQLite and MariaDB workers have their own wake-up.",
            id="loom.E132")]
    if is_pooled(alias):
        return [checks.Warning(
            f"{where} is {alias!r}, which is marked as going through a transaction pooler "
            "(DISABLE_SERVER_SIDE_CURSORS); LISTEN needs a direct connection.",
            hint="Point LISTEN_DATABASE at an alias that connects to PostgreSQL directly.",
            id="loom.W134")]
    return []
