"""How loom's own processes use Django's database connections.

A worker process owns the connections it opens, so it configures them for a life of many
threads writing to one database, whatever ``DATABASES`` says (``prepare_worker``, called once at
start-up, before any connection opens):

- **SQLite** (``startproject``'s default, no OPTIONS: DEFERRED transactions, a 5 s busy timeout):
  a transaction that reads and then writes while another connection writes fails at once with
  "database is locked" (SQLite cannot wait there without risking a deadlock). The worker's
  connections begin every transaction as a writer (``transaction_mode = "IMMEDIATE"``), so they
  queue for the write lock instead, with a long busy timeout (``SQLITE_TIMEOUT``). The database
  file is switched to WAL once (a persistent property of the file: readers, including the web
  process, no longer wait for writers) unless ``OPTIONS["SQLITE_WAL"]`` is False. Settings the user
  wrote explicitly are kept.
- **PostgreSQL**: a connection whose peer went silent (a cut link, a host that vanished, a
  failover that left no one to reset the connection) is given up within seconds instead of after
  the kernel's many minutes of retransmissions: TCP keepalives and ``tcp_user_timeout``
  (``PG_TCP_OPTIONS``), and a connect timeout. A long query is not affected: the server's kernel
  answers keepalives while the query runs. Settings the user wrote are kept.
- **Every database**: Django's health check runs before the first query of each task on a
  connection kept from an earlier task (``CONN_MAX_AGE`` > 0), so a connection that died while
  idle is replaced instead of failing the task, as Django does around each request.

Each worker service labels its thread's PostgreSQL connections (``application_name`` = "loom
fetcher", ...), so ``pg_stat_activity`` shows which part of a worker holds which connection. The
label is sent when the connection opens: no extra statement, and safe behind a pooler. The
services' connections write only loom's bookkeeping and do not wait for the disk at commit (see
``labelled``): a database crash can undo their last writes, which runs a task again, never loses one.

The web process keeps the user's settings; the system check ``loom.W003`` says what to set there.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from django.db import connections

logger = logging.getLogger("loom.worker")

# Seconds a worker's SQLite connection waits for the write lock before "database is locked".
SQLITE_TIMEOUT = 60.0
# Seconds a worker keeps trying to switch a busy SQLite file to WAL at start-up.
WAL_SWITCH_TIMEOUT = 10.0
# libpq settings a worker's PostgreSQL connections get unless OPTIONS says otherwise: a silent
# peer is noticed in about 15 s (idle: 5 s + 3 probes 3 s apart; sending: tcp_user_timeout), well
# within the default 30 s lease, so the services retry on a fresh connection instead of hanging.
PG_TCP_OPTIONS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 3,
                  "keepalives_count": 3, "tcp_user_timeout": 15000}
# Longest application_name PostgreSQL keeps.
MAX_APPLICATION_NAME = 63


def prepare_worker(wal: bool = True) -> None:
    """Configure every alias's connections in this worker process (call before any opens)."""
    for alias in connections:
        settings = connections.settings[alias]
        settings["CONN_HEALTH_CHECKS"] = True
        if "postgresql" in settings["ENGINE"]:
            options = settings.setdefault("OPTIONS", {})
            for name, value in PG_TCP_OPTIONS.items():
                options.setdefault(name, value)
        elif settings["ENGINE"].endswith("sqlite3"):
            options = settings.setdefault("OPTIONS", {})
            options.setdefault("transaction_mode", "IMMEDIATE")
            options.setdefault("timeout", SQLITE_TIMEOUT)
            if wal:
                _use_wal(alias, settings["NAME"], options["timeout"])
    for conn in connections.all(initialized_only=True):
        conn.close()  # reopened with the settings above


def _use_wal(alias: str, name, timeout: float) -> None:
    """Switching needs a moment with no lock held on the file: a busy database is retried."""
    path = str(name)
    if not path or path == ":memory:" or "mode=memory" in path:
        return
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT
    while True:
        raw = sqlite3.connect(path, timeout=timeout)
        try:
            mode = raw.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if time.monotonic() > deadline:
                logger.warning("loom: SQLite database %r stays in its journal mode: the switch to WAL "
                               "found it busy for %gs (%s); readers will wait for writers",
                               alias, WAL_SWITCH_TIMEOUT, exc)
                return
            time.sleep(0.05)
        finally:
            raw.close()
    if str(mode).lower() != "wal":
        logger.warning("loom: SQLite database %r stays in journal mode %r (WAL refused)", alias, mode)


def labelled(alias: str, role: str, *, bookkeeping: bool = False, lock_wait: float | None = None):
    """A new connection object for ``alias`` that names itself "loom <role>" on PostgreSQL.

    ``bookkeeping``: the connection only writes loom's own state (claims, outcomes, leases), whose
    loss in a database crash means a task runs again, never a lost task: it does not wait for its
    commits to reach the disk (PostgreSQL ``synchronous_commit = off``, unless the alias goes
    through a transaction pooler, where a session setting would leak; SQLite ``synchronous =
    NORMAL``, durable in WAL mode against a crash of the process). Enqueues and the tasks' own
    queries keep the user's settings.

    ``lock_wait``: seconds a statement may wait for a lock before it fails (PostgreSQL
    ``lock_timeout``, MariaDB ``lock_wait_timeout`` and ``innodb_lock_wait_timeout`` in whole
    seconds, SQLite's busy timeout), for a loop that must not stall behind another client's lock
    (a migration's ALTER TABLE); left out behind a transaction pooler and where the user set an
    ``init_command`` of their own."""
    wrapper = connections.create_connection(alias)
    settings = connections.settings[alias]
    options = dict(settings.get("OPTIONS") or {})
    if "postgresql" in settings["ENGINE"]:
        own = options.get("application_name")
        options["application_name"] = (f"{own} (loom {role})" if own else f"loom {role}")[:MAX_APPLICATION_NAME]
        if bookkeeping and not settings.get("DISABLE_SERVER_SIDE_CURSORS"):
            options["options"] = f"{options.get('options', '')} -c synchronous_commit=off".strip()
        if lock_wait is not None and not settings.get("DISABLE_SERVER_SIDE_CURSORS"):
            options["options"] = f"{options.get('options', '')} -c lock_timeout={int(lock_wait * 1000)}".strip()
    elif settings["ENGINE"].endswith("sqlite3") and (bookkeeping or lock_wait is not None):
        if bookkeeping:
            options["init_command"] = f"{options.get('init_command', '')};PRAGMA synchronous=NORMAL".strip(";")
        if lock_wait is not None:
            options["timeout"] = min(float(options.get("timeout", lock_wait)), lock_wait)
    elif "mysql" in settings["ENGINE"] and lock_wait is not None and not options.get("init_command"):
        seconds = max(1, round(lock_wait))
        options["init_command"] = f"SET SESSION lock_wait_timeout = {seconds}, innodb_lock_wait_timeout = {seconds}"
    else:
        return wrapper
    wrapper.settings_dict = {**settings, "OPTIONS": options}
    return wrapper


def label_thread(role: str, *, bookkeeping: bool = False, lock_wait: float | None = None) -> None:
    """Give this thread its own connection objects for loom's part ``role`` (see ``labelled``)."""
    for alias in connections:
        current = getattr(connections._connections, alias, None)
        if current is not None and current.connection is not None:
            continue  # already connected under another name: leave it
        connections[alias] = labelled(alias, role, bookkeeping=bookkeeping, lock_wait=lock_wait)


def unlabel_thread() -> None:
    """Plain connection objects for this thread again (a child forked from a labelled thread)."""
    for alias in connections:
        connections[alias] = connections.create_connection(alias)


def close_broken() -> None:
    """Close this thread's connections after an error, so the next call reconnects cleanly
    (a connection inside a transaction is left to its owner)."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            try:
                conn.close()
            except Exception:
                conn.connection = None


def json_as_text(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: PostgreSQL ``json`` columns arrive as text, as Django
    has ``jsonb`` arrive, so ``JSONText`` decodes each value exactly once (psycopg would decode
    it first, and a JSON string would then be decoded twice)."""
    if connection.vendor == "postgresql":
        from psycopg.types.string import TextLoader

        connection.connection.adapters.register_loader("json", TextLoader)
