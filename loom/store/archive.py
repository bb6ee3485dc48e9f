"""Finished tasks out of the hot table, on PostgreSQL: archive tables that are dropped, not deleted.

Why: a queue's table is mostly finished rows. Kept in ``loom_task`` they make every index and
every VACUUM of the hot table grow with the retention, and pruning them is a DELETE of millions
of rows (132 s for 10M on this project's bench machine) that leaves as many dead tuples behind.

How: the maintenance leader moves finished rows, a batch per statement, into
``loom_task_done_<start>_<seconds>``: tables that INHERIT ``loom_task``, one per slice of
finishing time. Inheritance (not declarative partitioning) because a partitioned table's unique
indexes must contain the partition key, and ``loom_task_unique`` (unique tasks) and the primary
key could not; an inheriting table shares the columns (a later migration that adds one adds it
there too) while the unique index stays on the hot table alone. Every ORM read of ``loom_task``
(``get_result``, the dashboard, the admin) reads the archive tables with it, so nothing else
changes; the claim and the worker's writes name ``ONLY loom_task``. Pruning drops whole archive
tables whose slice ended before the cut-off: milliseconds for any number of rows, and the lock it
takes is on the archive table alone, so claims never wait for it.

What stays in ``loom_task``: unfinished rows, rows finished in the last ``ARCHIVE_AFTER``
seconds, and finished rows that still hold a unique key (``unique_slot``, a ``unique_window``):
the unique index must see those. The pruner deletes those as before.

A task is kept at least ``RETENTION`` and at most ``RETENTION`` plus one slice
(``slice_seconds``: about a seventh of the retention, a day for the default 7 days).

SQLite and MariaDB have no table inheritance; there finished rows stay in ``loom_task`` and the
pruner deletes them in batches (``OperatorActions.prune``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

logger = logging.getLogger("loom.worker")

PREFIX = "loom_task_done_"
NAME = re.compile(rf"^{PREFIX}(\d{{14}})_(\d+)$")
# Slice lengths an archive table may span, shortest first; slice_seconds picks one.
SLICES = (60, 300, 900, 3600, 6 * 3600, 86400)
# Rows moved per statement: each statement is its own short transaction.
ARCHIVE_BATCH = 5_000
# Seconds a finished row stays in loom_task before it is archived: a task whose outcome was just
# written is the one an operator or a page is most likely to act on.
ARCHIVE_AFTER = 30.0
# How long the leader waits for a lock on an archive table (a long reader holds it); it tries again
# at its next pass rather than queue every later reader of loom_task behind its DROP.
LOCK_TIMEOUT = "1s"
# Creating a table that inherits loom_task takes a SHARE UPDATE EXCLUSIVE lock on it, which only
# a VACUUM or ANALYZE of loom_task conflicts with (autovacuum gives way after deadlock_timeout).
CREATE_LOCK_TIMEOUT = "5s"

FINISHED = "status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED') AND unique_slot IS NULL"


def slice_seconds(retention: float) -> int:
    """The archive tables' slice for a retention: about a seventh of it, so about eight tables
    exist at a time and a task outlives its retention by at most that much."""
    wanted = retention / 7
    return max([s for s in SLICES if s <= wanted], default=SLICES[0])


def table_name(start: dt.datetime, seconds: int) -> str:
    return f"{PREFIX}{start.astimezone(dt.timezone.utc):%Y%m%d%H%M%S}_{seconds}"


def slice_of(moment: dt.datetime, seconds: int) -> dt.datetime:
    epoch = int(moment.timestamp()) // seconds * seconds
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def _columns() -> list[str]:
    from loom.models import TaskRecord

    return [str(f.column) for f in TaskRecord._meta.concrete_fields if not f.generated]


def _move(source: str, where: str, target: str) -> str:
    """SQL (after WITH): delete the rows of ``source`` that match ``where`` and insert them into
    ``target`` in the same statement, every stored column but the generated ``unique_slot``."""
    columns = _columns()
    listed = ", ".join(columns)
    returned = ", ".join(f"t.{c}" for c in columns)
    return (f"moved AS (DELETE FROM {source} WHERE {where} RETURNING {returned}) "
            f"INSERT INTO {target} ({listed}) SELECT {listed} FROM moved")


class Archive:
    """A part of ``Store``, which provides what is declared here. PostgreSQL only."""

    if TYPE_CHECKING:
        alias: str

        @property
        def vendor(self) -> str: ...
        @property
        def connection(self) -> Any: ...

    @property
    def archives(self) -> bool:
        """Whether finished rows move to archive tables here (PostgreSQL)."""
        return self.vendor == "postgresql"

    def archive_tables(self) -> list[tuple[str, dt.datetime, dt.datetime]]:
        """The archive tables with the slice each holds: (name, start, end)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                           "WHERE i.inhparent = 'loom_task'::regclass")
            names = [row[0] for row in cursor.fetchall()]
        tables = []
        for name in names:
            match = NAME.match(name)
            if match:
                start = dt.datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
                tables.append((name, start, start + dt.timedelta(seconds=int(match[2]))))
        return sorted(tables, key=lambda t: t[1])

    def _ensure_table(self, name: str) -> None:
        """Create an archive table: the columns by inheritance, the indexes a reader of finished
        tasks needs (by id, by status and finishing time), and an always-empty one on
        ``unique_slot`` so a lookup by unique key answers at once here too."""
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{CREATE_LOCK_TIMEOUT}'")
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
            if cursor.fetchone()[0]:
                return
            cursor.execute(f"CREATE TABLE {name} () INHERITS (loom_task)")
            cursor.execute(f"ALTER TABLE {name} ADD PRIMARY KEY (id)")
            cursor.execute(f"CREATE INDEX {name}_finished ON {name} (status, finished_at)")
            cursor.execute(f"CREATE INDEX {name}_unique ON {name} (unique_slot) WHERE unique_slot IS NOT NULL")

    def _oldest_finished(self, before: dt.datetime) -> dt.datetime | None:
        """The earliest finishing time among the rows to archive, one index probe per status."""
        probes = " UNION ALL ".join(
            f"(SELECT finished_at FROM ONLY loom_task WHERE status = '{status}' AND unique_slot IS NULL "
            f"AND finished_at < %(before)s ORDER BY status, finished_at LIMIT 1)"
            for status in ("SUCCESSFUL", "FAILED", "CANCELLED"))
        with self.connection.cursor() as cursor:
            cursor.execute(f"SELECT min(finished_at) FROM ({probes}) AS oldest", {"before": before})
            return cursor.fetchone()[0]

    def archive(self, before: dt.datetime, seconds: int, budget: float = 2.0,
                batch: int = ARCHIVE_BATCH) -> int:
        """Move rows finished before ``before`` into their archive tables, ``batch`` rows per
        statement, for about ``budget`` seconds; return how many moved."""
        moved, deadline = 0, time.monotonic() + budget
        while time.monotonic() < deadline:
            oldest = self._oldest_finished(before)
            if oldest is None:
                break
            start = slice_of(oldest, seconds)
            end = min(start + dt.timedelta(seconds=seconds), before)
            name = table_name(start, seconds)
            try:
                self._ensure_table(name)
            except DatabaseError:  # another leader made it meanwhile: it exists now
                if not any(t[0] == name for t in self.archive_tables()):
                    raise
            with self.connection.cursor() as cursor:
                cursor.execute(
                    f"WITH picked AS (SELECT id FROM ONLY loom_task WHERE {FINISHED} "
                    f"AND finished_at >= %(start)s AND finished_at < %(end)s LIMIT %(batch)s "
                    f"FOR UPDATE SKIP LOCKED), "
                    + _move("ONLY loom_task t USING picked", "t.id = picked.id", name),
                    {"start": start, "end": end, "batch": batch})
                moved += cursor.rowcount
                if cursor.rowcount == 0:
                    break  # what is left is locked by someone else: next pass
        return moved

    def drop_archives(self, cutoff: dt.datetime) -> int:
        """Drop the archive tables whose whole slice ended before ``cutoff``; return the number
        of rows they held. A table a long reader holds is left for the next pass."""
        rows = 0
        for name, _start, end in self.archive_tables():
            if end > cutoff:
                continue
            try:
                with self.connection.cursor() as cursor:
                    cursor.execute(f"SELECT count(*) FROM {name}")
                    held = cursor.fetchone()[0]
                with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    cursor.execute(f"DROP TABLE {name}")
                rows += held
            except DatabaseError as exc:
                logger.warning("loom could not drop %s now (%s); trying at the next prune",
                               name, str(exc).strip().splitlines()[0])
        return rows

    def unarchive(self, ids: Iterable[str], statuses: Iterable[str]) -> int:
        """Move rows back into ``loom_task`` (an operator's retry makes them claimable again);
        only those in ``statuses``, so a row that changed meanwhile stays where it is."""
        ids = [str(i) for i in ids]
        if not ids or not self.archives:
            return 0
        with self.connection.cursor() as cursor:
            cursor.execute(
                "WITH " + _move("loom_task t", "t.id = ANY(%s::uuid[]) AND t.tableoid <> 'loom_task'::regclass "
                                "AND t.status = ANY(%s)", "loom_task"),
                [ids, list(statuses)])
            return cursor.rowcount
