"""Operator writes (dashboard, CLI, admin): retry, cancel, delete, purge, prune.

A mixin of ``Store``, kept in its own module so the queue's hot path stays readable in
``store/__init__.py``. These are rare, human-sized writes, so they use the ORM rather than named
SQL; like every write to the task table they go through ``Store``. ``loom.actions`` is what
callers use: it checks states, reports per task and publishes the events.

Each write is ONE statement run in autocommit, never a read followed by a write in a transaction.
On SQLite with Django's default settings (DEFERRED transactions, 5 s busy timeout) a transaction
that has read and then wants to write while a worker writes gets "database is locked" at once:
SQLite refuses to wait for a lock it could deadlock on. A statement that writes from its start
takes the write lock first and waits the busy timeout like any writer. What can still fail (a
writer holding the lock past the busy timeout) is retried here, ``LOCK_ATTEMPTS`` times with a
doubling wait, unless the caller is inside a transaction (a statement cannot be retried there).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Iterable

from django.db import OperationalError, transaction
from django.db.models.expressions import RawSQL

# Tries of one operator write that SQLite refuses with "database is locked".
LOCK_ATTEMPTS = 5
# Seconds before the second try; each later try waits twice as long (0.1 + 0.2 + 0.4 + 0.8).
LOCK_BACKOFF = 0.1

# Appends one entry (JSON text, a parameter) to ``errors`` in the UPDATE itself, with no read of
# the row first. ``errors`` is JSON kept verbatim as text (``loom.models.JSONText``), so the entry
# is spliced in as text, as the rescue statements do.
APPEND_ERROR = {
    "sqlite": "substr(rtrim(errors), 1, length(rtrim(errors)) - 1)"
              " || CASE WHEN rtrim(errors) = '[]' THEN '' ELSE ',' END || %s || ']'",
    "postgresql": "(left(rtrim(errors::text), -1)"
                  " || CASE WHEN rtrim(errors::text) = '[]' THEN '' ELSE ',' END || %s || ']')::json",
    "mysql": "CONCAT(LEFT(RTRIM(errors), CHAR_LENGTH(RTRIM(errors)) - 1), IF(RTRIM(errors) = '[]', '', ','), %s, ']')",
}

CANCELLED_BEFORE_RUN = "loom.exceptions.TaskCancelled: cancelled by an operator before it ran.\n"


# Finished rows deleted per statement when pruning; on SQLite, whose one write lock every other
# writer (the web process's enqueues, with Django's 5 s default busy timeout) waits for, fewer:
# a batch there holds the lock for about 0.1 s at 10M rows, and the pruner then leaves it free
# as long again before the next.
PRUNE_BATCH = 5_000
PRUNE_BATCH_SQLITE = 500


class OperatorActions:
    """Needs ``alias``, ``vendor`` and ``connection`` from ``Store``, and ``Archive``'s methods."""

    alias: str

    def _tasks(self, ids: Iterable[str]):
        from loom.models import TaskRecord

        return TaskRecord.objects.using(self.alias).filter(pk__in=[str(i) for i in ids])

    def _write(self, statement: Callable[[], int]) -> int:
        """Run one write statement, retrying a transient SQLite lock with backoff."""
        for attempt in range(1, LOCK_ATTEMPTS + 1):
            try:
                return statement()
            except OperationalError as exc:
                transient = (self.vendor == "sqlite" and "locked" in str(exc)
                             and not self.connection.in_atomic_block)
                if not transient or attempt == LOCK_ATTEMPTS:
                    raise
            time.sleep(LOCK_BACKOFF * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def _delete_finished_sqlite(self, ids: list, finished_before: dt.datetime) -> int:
        """SQLite's planner reads "status IN (...) AND finished_at < ..." through the index on
        (status, finished_at), scanning every old finished row to find these few (0.8 s a batch at
        2M rows); a unary + on those columns keeps it on the primary key."""
        from loom.models import FINAL_STATUSES, TaskRecord

        pk = TaskRecord._meta.pk
        values = [pk.get_db_prep_value(i, self.connection) for i in ids]
        statuses = ", ".join(f"'{status}'" for status in FINAL_STATUSES)
        with self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM loom_task WHERE id IN ({', '.join(['%s'] * len(values))}) "
                           f"AND +status IN ({statuses}) AND +finished_at < %s",
                           [*values, self.connection.ops.adapt_datetimefield_value(finished_before)])
            return cursor.rowcount

    def _notify(self, queues: Iterable[str]) -> None:
        if self.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                for queue in sorted(set(queues)):
                    cursor.execute("SELECT pg_notify('loom', %s)", [queue])

    def _append_error(self, entry: dict) -> RawSQL:
        from loom import codec
        from loom.models import JSONText

        return RawSQL(APPEND_ERROR[self.vendor], [codec.dumps(entry)], output_field=JSONText())

    def retry(self, ids: Iterable[str], now: dt.datetime) -> tuple[int, list[str]]:
        """Put FAILED or CANCELLED tasks back to READY now, allowing them one more attempt.

        Returns how many changed and the ids left alone because another task with the same
        unique key waits or runs (the database refuses a second holder: ``loom_task_unique``).
        Those are rare, so the common case stays one statement; only when it is refused does
        each task get its own. The last attempt's progress is cleared: the bar belongs to the
        attempt that reported it."""
        from django.db import IntegrityError
        from django.db.models import Case, F, PositiveIntegerField, Value, When

        def put_back(targets: list[str]) -> int:
            if self.connection.in_atomic_block:  # a refused statement must not spoil the caller's transaction
                with transaction.atomic(using=self.alias):
                    return update(targets)
            return self._write(lambda: update(targets))

        def update(targets: list[str]) -> int:
            return self._tasks(targets).filter(status__in=["FAILED", "CANCELLED"]).update(
                status="READY", available_at=now, finished_at=None, cancel_requested=False, unique_until=None,
                max_attempts=Case(When(max_attempts__lte=F("attempts"),
                                       then=F("attempts") + Value(1, output_field=PositiveIntegerField())),
                                  default=F("max_attempts"), output_field=PositiveIntegerField()),
                progress_current=None, progress_total=None, progress_message="", progress_at=None,
            )

        ids = [str(i) for i in ids]
        self.unarchive(ids, ["FAILED", "CANCELLED"])  # claims read loom_task alone
        queues = (list(self._tasks(ids).values_list("queue_name", flat=True).distinct())
                  if self.vendor == "postgresql" else [])
        held: list[str] = []
        try:
            changed = put_back(ids)
        except IntegrityError:
            changed = 0
            for one in ids:
                try:
                    changed += put_back([one])
                except IntegrityError:
                    held.append(one)
        if changed:
            self._notify(queues)
        return changed, held

    def cancel(self, ids: Iterable[str], now: dt.datetime) -> int:
        """Cancel READY tasks at once (they never run) and ask workers to stop RUNNING ones.

        Two statements, READY first: a task claimed in between is RUNNING for the second."""
        ids = [str(i) for i in ids]
        # The keys of loom.records.error_entry, with attempt null: no attempt ran, none ended.
        entry = {"exception_class_path": "loom.exceptions.TaskCancelled", "traceback": CANCELLED_BEFORE_RUN,
                 "attempt": None, "worker_id": None, "started_at": None, "finished_at": now.isoformat()}
        cancelled = self._write(lambda: self._tasks(ids).filter(status="READY").update(
            status="CANCELLED", finished_at=now, errors=self._append_error(entry)))
        asked = self._write(lambda: self._tasks(ids).filter(status="RUNNING", cancel_requested=False).update(
            cancel_requested=True))
        return cancelled + asked

    def delete(self, ids: Iterable[str]) -> int:
        """Delete tasks that are not running (a running task's worker would lose its row)."""
        return self._write(lambda: self._tasks(ids).exclude(status="RUNNING")._raw_delete(self.alias))

    def purge(self, queue: str) -> int:
        """Delete every READY task of a queue."""
        from loom.models import TaskRecord

        return self._write(lambda: TaskRecord.objects.using(self.alias).ready().filter(
            queue_name=queue)._raw_delete(self.alias))

    def prune(self, finished_before: dt.datetime, batch: int | None = None, *, exact: bool = True) -> int:
        """Delete finished tasks older than a cut-off (results are kept until then).

        On PostgreSQL archive tables whose whole slice is older are dropped first
        (``loom.store.archive``); with ``exact`` (an operator's prune) the rows older than the
        cut-off in the one table that straddles it are deleted too, without it (the pruner) that
        table waits until it is wholly old. Rows in ``loom_task`` itself are deleted ``batch``
        per statement: each is a short transaction, so pruning millions of rows never holds one
        snapshot long enough to stall VACUUM (PostgreSQL) or the write lock (SQLite) for long,
        and claims, which touch only READY and RUNNING rows, never wait for it."""
        from loom.models import TaskRecord

        old = TaskRecord.objects.using(self.alias).finished().filter(finished_at__lt=finished_before)
        dropped = 0
        if self.archives:
            dropped = self.drop_archives(finished_before)
            if not exact:
                old = old.extra(where=["loom_task.tableoid = 'loom_task'::regclass"])
        return dropped + self._prune_rows(old, finished_before, batch)

    def _prune_rows(self, old, finished_before: dt.datetime, batch: int | None) -> int:
        sqlite = self.vendor == "sqlite"
        batch = batch or (PRUNE_BATCH_SQLITE if sqlite else PRUNE_BATCH)
        total = 0
        while True:
            ids = list(old.order_by().values_list("pk", flat=True)[:batch])
            if not ids:
                return total
            # Still finished and old: an operator may have retried one since it was read.
            began = time.monotonic()
            if sqlite:
                deleted = self._write(functools.partial(self._delete_finished_sqlite, ids, finished_before))
            else:
                deleted = self._write(functools.partial(old.filter(pk__in=ids)._raw_delete, self.alias))
            total += deleted
            if len(ids) < batch or not deleted:  # none deleted: never read the same rows forever
                return total
            if sqlite:
                time.sleep(time.monotonic() - began)
