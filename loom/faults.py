"""Which database errors are the infrastructure's fault rather than the data's or the task's.

Two kinds matter to loom:

- **connection lost**: the server went away under a connection (failover, restart, a pooler or
  an idle-connection reaper, ``pg_terminate_backend``), or could not be reached at all. The
  statement may or may not have run. A task that meets one is treated like a task whose worker
  died (it runs again within ``LOST_RETRIES``); a loom service backs off and tries again.
- **transient**: connection lost, or lock contention the database gave up waiting on (SQLite's
  "database is locked", a deadlock or lock wait timeout on MariaDB, a serialization failure on
  PostgreSQL). Worth the same statement again later; never a reason to blame a value.

Everything else (a constraint, a value the column refuses, a syntax error) is the statement's
own problem. The checks look through Django's wrapper at the driver's exception (psycopg 3,
PyMySQL or mysqlclient, sqlite3) and never import a driver that is not installed.
"""

from __future__ import annotations

import sqlite3

# PostgreSQL SQLSTATEs: class 08 (connection exception) and these.
_PG_LOST = {"57P01", "57P02", "57P03", "53300"}  # admin/crash shutdown, cannot connect now, too many connections
_PG_CONTENTION = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
# MySQL/MariaDB client and server error codes.
_MYSQL_LOST = {2002, 2003, 2006, 2013, 2055, 1927, 1053, 4031, 1152, 1184}
_MYSQL_CONTENTION = {1205, 1213}  # lock wait timeout, deadlock
_SQLITE_CONTENTION = ("database is locked", "database table is locked", "database is busy")


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _kind(exc: BaseException) -> str | None:
    """'lost', 'contention' or None, for one exception (not its chain)."""
    module = type(exc).__module__
    if module.startswith("psycopg"):
        import psycopg

        state = getattr(exc, "sqlstate", None)
        if state is not None:
            if state.startswith("08") or state in _PG_LOST:
                return "lost"
            if state in _PG_CONTENTION:
                return "contention"
            return None
        # No SQLSTATE: the client noticed the connection broke, or could not open one.
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return "lost"
        return None
    if module.startswith(("pymysql", "MySQLdb")):
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        if code in _MYSQL_LOST or (code == 0 and type(exc).__name__ == "InterfaceError"):
            return "lost"
        if code in _MYSQL_CONTENTION:
            return "contention"
        return None
    if isinstance(exc, sqlite3.OperationalError):
        if any(text in str(exc) for text in _SQLITE_CONTENTION):
            return "contention"
    return None


def connection_lost(exc: BaseException) -> bool:
    """The error (or one it was raised from) says the database connection was lost or refused."""
    return any(_kind(e) == "lost" for e in _chain(exc))


def transient(exc: BaseException) -> bool:
    """Worth retrying the same statement later: a lost connection or lock contention."""
    return any(_kind(e) is not None for e in _chain(exc))
