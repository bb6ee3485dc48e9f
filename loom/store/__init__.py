"""Store: the only writer of the queue table, one method per named query.

The SQL lives in ``sql/<vendor>/<name>.sql`` (falling back to ``sql/common/``) so the statements
that decide speed and correctness can be read and reviewed as SQL. A file may carry directives in
its leading comments: ``-- row:`` is the template of one row of a multi-row statement, ``-- join:``
what joins the rows (``,`` by default). ``{queue_filter}``, ``{ids}`` and ``{rows}`` are expanded
here; everything else is a bound parameter. Inserts go through the ORM (``bulk_create``): the ORM
owns the schema, and a single-statement insert is already one round trip.

The Store refuses to run tasks, to sleep or to retry: callers own those decisions.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from django.db import DatabaseError, IntegrityError, InterfaceError, connections, transaction

from loom.codec import dumps, pg_array
from loom.records import CLAIM_COLUMNS, ClaimedTask, NewTask, Outcome
from loom.store.archive import Archive
from loom.store.flow import FlowControl
from loom.store.operations import OperatorActions
from loom.store.rows import rows_as_dicts

# NewTask fields in the order Store._copy writes them (all are TaskRecord columns of the same name).
NEW_TASK_FIELDS = ("id", "task_path", "backend", "queue_name", "priority", "args", "kwargs", "run_after",
                   "available_at", "enqueued_at", "max_attempts", "timeout", "hard_timeout", "trace_context",
                   "unique_key", "unique_window", "unique_replace", "concurrency_key", "concurrency_limit",
                   "fair_key", "workflow_step", "atomic")

# Parameters of one row of insert.sql.
INSERT_PARAMS = 22

SQL_DIR = Path(__file__).with_name("sql")

# complete_many with NOTIFYs for the rows it wrote (PostgreSQL): the events go out when the
# outcomes commit, and a late outcome the claim guard refused announces nothing. pg_notify is
# volatile, so the CTE runs in full; ORDER BY keeps the outcomes' order.
COMPLETE_AND_NOTIFY = """WITH done AS ({update} RETURNING t.id),
sent AS (SELECT pg_notify(%s, e.payload) FROM unnest(%s::uuid[], %s::text[]) WITH ORDINALITY AS e(id, payload, n)
         WHERE e.payload IS NOT NULL AND e.id IN (SELECT id FROM done) ORDER BY e.n)
SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM sent)"""
VENDOR_DIRS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql"}


@dataclass(frozen=True, slots=True)
class Statement:
    """One named SQL statement with its directives."""

    name: str
    text: str
    row: str | None
    join: str


@functools.cache
def load(vendor: str, name: str) -> Statement:
    folder = VENDOR_DIRS.get(vendor)
    if folder is None:
        raise NotImplementedError(
            f"loom supports PostgreSQL, SQLite and MySQL/MariaDB; database vendor {vendor!r} is not one."
        )
    path = SQL_DIR / folder / f"{name}.sql"
    if not path.exists():
        path = SQL_DIR / "common" / f"{name}.sql"
    row, join, body = None, ", ", []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("-- row:"):
            row = stripped.removeprefix("-- row:").strip()
        elif stripped.startswith("-- join:"):
            join = f" {stripped.removeprefix('-- join:').strip()} "
        elif not stripped.startswith("--"):
            body.append(line)
    return Statement(name=name, text="\n".join(body).strip(), row=row, join=join)


class Store(OperatorActions, FlowControl, Archive):
    """Named queries over one database alias. Cheap to build; holds no connection itself."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        # The flow claim's ranked keyed backlog (loom.store.flow), per claim signature.
        self._keyed_cache: dict = {}

    @property
    def connection(self):
        return connections[self.alias]

    @property
    def vendor(self) -> str:
        return self.connection.vendor

    # -- helpers -------------------------------------------------------------------------------

    def _dt(self, value: dt.datetime | None):
        return self.connection.ops.adapt_datetimefield_value(value)

    def _id(self, value: str):
        from loom.models import TaskRecord

        return TaskRecord._meta.pk.get_db_prep_value(value, self.connection)

    def _queue_filter(self, queues: Sequence[str] | None, params: dict) -> str:
        if not queues:
            return ""
        if self.vendor == "postgresql":
            params["queues"] = list(queues)
            return "AND queue_name = ANY(%(queues)s)"
        names = []
        for i, queue in enumerate(queues):
            params[f"q_{i}"] = queue
            names.append(f"%(q_{i})s")
        return f"AND queue_name IN ({', '.join(names)})"

    def _in_list(self, ids: Sequence, params: dict, prefix: str = "id") -> str:
        names = []
        for i, value in enumerate(ids):
            params[f"{prefix}_{i}"] = value
            names.append(f"%({prefix}_{i})s")
        return ", ".join(names)

    def _ids_where(self, ids: Iterable[str], params: dict, *, keep: bool = False) -> str:
        """``id IN (...)``, or with ``keep`` every id but those (``TRUE`` when there are none)."""
        values = [self._id(str(i)) for i in ids]
        if not values:
            return "1 = 1" if keep else "1 = 0"
        return f"id {'NOT IN' if keep else 'IN'} ({self._in_list(values, params)})"

    def _superseded(self, table: str = "loom_task") -> str:
        """SQL: this row (``table``) is a debounced task (replace=True) whose unique key another
        row holds, so it must not go back to READY (the statements end it CANCELLED instead)."""
        if self.vendor == "mysql":  # MariaDB cannot read the table it updates but through a copy
            slot = f"CONCAT({table}.backend, '|', {table}.task_path, '|', {table}.unique_key)"
            rows = "(SELECT id, unique_slot FROM loom_task WHERE unique_slot IS NOT NULL)"
        else:
            slot = f"{table}.backend || '|' || {table}.task_path || '|' || {table}.unique_key"
            rows = "loom_task"
        return (f"({table}.unique_replace AND {table}.unique_key IS NOT NULL AND EXISTS "
                f"(SELECT 1 FROM {rows} AS dup WHERE dup.unique_slot = {slot} AND dup.id <> {table}.id))")

    def answers(self) -> bool:
        """Whether the database answers a trivial query now (reconnecting if the connection broke).
        Tells an outage (keep the work, retry later) from a statement the database refuses."""
        conn = self.connection
        if not conn.in_atomic_block and conn.connection is not None and not conn.is_usable():
            conn.close()
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            return True
        except (DatabaseError, InterfaceError):
            if not conn.in_atomic_block:
                conn.close()
            return False

    # -- writes --------------------------------------------------------------------------------

    def insert(self, tasks: Sequence[NewTask], notify: tuple[str, str] | None = None) -> None:
        """Insert new READY rows in the caller's transaction (PostgreSQL notifies by trigger).

        One statement from a prepared template (``insert.sql``): the ORM would compile the same
        INSERT again for every enqueue, which costs more than the round trip on a fast
        connection. Many rows go through COPY on PostgreSQL (see docs/design.md). ``notify``
        (PostgreSQL, one task): a (channel, payload) NOTIFY sent by the same statement, so on
        commit (``loom.events.tasks.inline_enqueued``)."""
        if not tasks:
            return
        if self.vendor == "postgresql" and len(tasks) > 1:
            self._copy(tasks)
            return
        statement = load(self.vendor, "insert")
        if notify is not None and self.vendor == "postgresql" and len(tasks) == 1:
            with self.connection.cursor() as cursor:
                cursor.execute(f"WITH new AS ({statement.text.format(rows=statement.row)} RETURNING 1) "
                               "SELECT pg_notify(%s, %s) FROM new", [*self._row(tasks[0]), *notify])
            return
        # SQLite caps the parameters of one statement: as many rows per statement as fit.
        limit = self.connection.features.max_query_params
        per_statement = len(tasks) if limit is None else max(1, limit // INSERT_PARAMS)
        with self.connection.cursor() as cursor:
            for start in range(0, len(tasks), per_statement):
                chunk = tasks[start:start + per_statement]
                params: list = []
                for t in chunk:
                    params += self._row(t)
                cursor.execute(statement.text.format(rows=statement.join.join([statement.row] * len(chunk))),
                               params)

    def insert_unique(self, task: NewTask, now: dt.datetime) -> str:
        """Insert ``task`` unless a task holds its unique key; return the id of the task that
        holds it now (``task.id`` when inserted). One statement decides (the unique index on
        ``unique_slot``); an expired window is released just before, in the same transaction."""
        slot = f"{task.backend}|{task.task_path}|{task.unique_key}"
        if task.unique_replace:
            updates = ["args", "kwargs", "run_after", "available_at"]
            if self.vendor == "mysql":
                clause = "ON DUPLICATE KEY UPDATE " + ", ".join(
                    f"{c} = IF(status = 'READY', VALUES({c}), {c})" for c in updates)
            else:
                clause = ("ON CONFLICT (unique_slot) DO UPDATE SET "
                          + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates) + " WHERE loom_task.status = 'READY'")
        elif self.vendor == "mysql":
            clause = "ON DUPLICATE KEY UPDATE unique_key = VALUES(unique_key)"
        else:
            clause = "ON CONFLICT (unique_slot) DO UPDATE SET unique_key = EXCLUDED.unique_key"
        statement = load(self.vendor, "insert_unique")
        sql = statement.text.format(rows=statement.row, on_conflict=clause)
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(load(self.vendor, "release_unique").text, {"slot": slot, "now": self._dt(now)})
            for _ in range(3):
                cursor.execute(sql, self._row(task))
                row = cursor.fetchone()
                if row is None:  # replace met a running holder of the key (enqueued without replace)
                    cursor.execute("SELECT id FROM loom_task WHERE unique_slot = %s", [slot])
                    row = cursor.fetchone()
                if row is not None:  # else the holder just let go of the key: insert again
                    return _uuid_str(row[0])
        raise DatabaseError(f"could not insert or find the holder of unique key {task.unique_key!r}")

    def _row(self, t: NewTask) -> list:
        """insert.sql's parameters for one task, in NEW_TASK_FIELDS order (on every enqueue: the
        connection and its converters are looked up once)."""
        from loom.models import TaskRecord

        connection = self.connection
        adapt = connection.ops.adapt_datetimefield_value
        pk = TaskRecord._meta.pk.get_db_prep_value
        return [pk(t.id, connection), t.task_path, t.backend, t.queue_name, t.priority, dumps(t.args),
                dumps(t.kwargs), adapt(t.run_after), adapt(t.available_at), adapt(t.enqueued_at),
                t.max_attempts, t.timeout, t.hard_timeout, None if t.trace_context is None else dumps(t.trace_context),
                t.unique_key, t.unique_window, t.unique_replace, t.concurrency_key, t.concurrency_limit, t.fair_key,
                None if t.workflow_step is None else pk(t.workflow_step, connection), t.atomic]

    def _copy(self, tasks: Sequence[NewTask]) -> None:
        columns = [*NEW_TASK_FIELDS, "status", "attempts", "worker_ids", "errors", "cancel_requested",
                   "progress_message"]
        self.connection.ensure_connection()
        with self.connection.connection.cursor() as cursor:
            with cursor.copy(f"COPY loom_task ({', '.join(columns)}) FROM STDIN") as copy:
                for t in tasks:
                    copy.write_row((t.id, t.task_path, t.backend, t.queue_name, t.priority,
                                    dumps(t.args), dumps(t.kwargs), t.run_after, t.available_at,
                                    t.enqueued_at, t.max_attempts, t.timeout, t.hard_timeout,
                                    t.trace_context and dumps(t.trace_context), t.unique_key, t.unique_window,
                                    t.unique_replace, t.concurrency_key, t.concurrency_limit, t.fair_key,
                                    t.workflow_step, t.atomic, "READY", 0, "[]", "[]", False, ""))

    def claim(
        self,
        worker_id: str,
        queues: Sequence[str] | None,
        limit: int,
        now: dt.datetime,
        lease_until: dt.datetime,
        exclude: Iterable[str] = (),
    ) -> list[ClaimedTask]:
        """Claim up to ``limit`` due rows, highest priority then oldest, in one statement, and
        return them as the claim statement itself returned them. Tasks under flow control are
        left to ``claim_flow``; ``exclude`` names queues to leave out (paused, limited) when
        ``queues`` is None (every queue)."""
        if limit <= 0:
            return []
        params = {"worker": worker_id, "now": self._dt(now), "lease": self._dt(lease_until), "limit": limit}
        queue_filter = self._queue_filter(queues, params)
        exclude = sorted(exclude)
        if exclude and not queues:
            queue_filter += f" AND queue_name NOT IN ({self._in_list(exclude, params, 'x')})"
        columns = ", ".join(CLAIM_COLUMNS)
        if self.vendor == "mysql":
            rows = self._claim_mysql(params, queue_filter, columns)
        else:
            # One statement in autocommit is atomic on its own: no BEGIN/COMMIT round trips.
            with self.connection.cursor() as cursor:
                cursor.execute(load(self.vendor, "claim").text.format(queue_filter=queue_filter,
                                                                      columns=columns), params)
                rows = cursor.fetchall()
        claimed = [ClaimedTask(**values) for values in rows_as_dicts(self.connection, rows)]
        claimed.sort(key=lambda c: (-c.priority, c.available_at, c.id))  # the claim's own order
        if self.vendor == "mysql":
            claimed = [c.after_claim(worker_id, now) for c in claimed]
        return claimed

    def _claim_mysql(self, params: dict, queue_filter: str, columns: str) -> list:
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            cursor.execute(load("mysql", "claim_lock").text.format(queue_filter=queue_filter, columns=columns),
                           params)
            rows = cursor.fetchall()
            if rows:
                update = {k: params[k] for k in ("worker", "now", "lease")}
                cursor.execute(load("mysql", "claim").text.format(ids=self._in_list([r[0] for r in rows], update)),
                               update)
        return rows

    def complete_many(self, worker_id: str, completions: Sequence[Outcome], *,
                      notify: tuple[str, Sequence[str | None]] | None = None) -> int:
        """Write a batch of outcomes in one statement; return how many rows it changed.

        ``notify`` (PostgreSQL): a channel and one payload (or None) per outcome, NOTIFYed by the
        same statement for the rows it wrote only (loom.events.tasks.inline_finished)."""
        if not completions:
            return 0
        if self.vendor == "postgresql":
            columns = [pg_array(c.id for c in completions), pg_array(c.status for c in completions),
                       pg_array(_iso(c.finished_at) for c in completions),
                       pg_array(_iso(c.available_at) for c in completions),
                       pg_array(c.return_value_json for c in completions),
                       pg_array(c.errors_json for c in completions),
                       pg_array(str(c.attempt) for c in completions),
                       pg_array(_iso(c.unique_until) for c in completions), worker_id]
            sql = load("postgresql", "complete_many").text.format(superseded=self._superseded("t"))
            with self.connection.cursor() as cursor:
                if notify is None:
                    cursor.execute(sql, columns)
                    return cursor.rowcount
                channel, payloads = notify
                cursor.execute(COMPLETE_AND_NOTIFY.format(update=sql.rstrip().rstrip(";")),
                               [*columns, channel, columns[0], pg_array(payloads)])
                return cursor.fetchone()[0]
        statement = load(self.vendor, "complete_many")
        params: list = []
        for c in completions:
            params += [
                self._id(c.id),
                c.status,
                self._dt(c.finished_at),
                self._dt(c.available_at),
                c.return_value_json,
                c.errors_json,
                c.attempt,
                self._dt(c.unique_until),
            ]
        params.append(worker_id)
        sql = statement.text.format(rows=statement.join.join([statement.row] * len(completions)),
                                    superseded=self._superseded("t" if self.vendor == "mysql" else "loom_task"))
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.rowcount

    def release(self, worker_id: str, ids: Iterable[str]) -> int:
        """Return claimed-but-unstarted rows to READY as if never claimed."""
        ids = list(ids)
        if not ids:
            return 0
        return self._release(worker_id, ids, keep=False)

    def release_orphans(self, worker_id: str, held: Iterable[str]) -> int:
        """Return to READY every row claimed by ``worker_id`` but the ones it holds: rows whose
        claim committed while its reply was lost (a dropped connection), so never started."""
        return self._release(worker_id, list(held), keep=True)

    def _release(self, worker_id: str, ids: list, *, keep: bool) -> int:
        from django.utils import timezone

        params: dict = {"worker": worker_id, "now": self._dt(timezone.now())}
        sql = load(self.vendor, "release").text.format(where=self._ids_where(ids, params, keep=keep),
                                                       superseded=self._superseded())
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0] if self.vendor == "postgresql" else cursor.rowcount

    def heartbeat(self, worker_id: str, ids: Iterable[str], lease_until: dt.datetime) -> list[str]:
        """Renew the lease on the tasks ``worker_id`` holds (and only those); return the ones it
        still holds. The others were written meanwhile or rescued and maybe claimed by another
        worker: a second statement, only when the first changed fewer rows, says which."""
        params: dict = {"worker": worker_id, "lease": self._dt(lease_until)}
        wanted = [str(i) for i in ids]
        if not wanted:
            return []
        in_list = self._in_list([self._id(i) for i in wanted], params)
        with self.connection.cursor() as cursor:
            cursor.execute(load(self.vendor, "heartbeat").text.format(ids=in_list), params)
            if cursor.rowcount == len(wanted):
                return wanted
            cursor.execute(f"SELECT id FROM loom_task WHERE claimed_by = %(worker)s AND status = 'RUNNING' "
                           f"AND id IN ({in_list})", params)
            return [_uuid_str(row[0]) for row in cursor.fetchall()]

    def progress(self, task_id: str, current: float, total: float | None, message: str, at: dt.datetime) -> int:
        """Store a running task's progress; returns 0 if the task is no longer RUNNING."""
        params = {"id": self._id(task_id), "current": current, "total": total,
                  "message": printable(message)[:255], "at": self._dt(at)}
        with self.connection.cursor() as cursor:
            cursor.execute(load(self.vendor, "progress").text, params)
            return cursor.rowcount

    # -- liveness: leases, workers, leadership ------------------------------------------------

    def rescue(self, now: dt.datetime, *, error_class: str, error_text: str,
               expired: bool = False, workers: Sequence[str] = (), task_ids: Sequence[str] = (),
               claimed_by: str | None = None, attempt: int | None = None, extra_attempts: int = 0,
               retry: bool = True) -> list[str]:
        """End the attempt of RUNNING rows whose lease expired, whose worker is known dead, or
        that are named (only while ``claimed_by`` holds them in their ``attempt``, if given); READY again while
        ``retry`` and attempts remain (``max_attempts + extra_attempts``), else FAILED. Each gets
        an attempt entry in errors. Returns their ids."""
        params: dict = {"now": self._dt(now), "now_iso": now.isoformat(), "error_class": error_class,
                        "error_text": error_text, "extra": extra_attempts, "retry": retry}
        if expired:
            where = "lease_expires_at < %(now)s"
        elif workers:
            where = f"claimed_by IN ({self._in_list(list(workers), params, 'w')})"
        elif task_ids:
            where = self._ids_where(task_ids, params)
        else:
            return []
        if claimed_by is not None:
            params["claimed_by"] = claimed_by
            where += " AND claimed_by = %(claimed_by)s"
        if attempt is not None:
            params["attempt"] = attempt
            where += " AND attempts = %(attempt)s"
        with self.connection.cursor() as cursor:
            if self.vendor == "mysql":
                with transaction.atomic(using=self.alias):
                    cursor.execute(f"SELECT id FROM loom_task WHERE status = 'RUNNING' AND {where} FOR UPDATE",
                                   params)
                    ids = [row[0] for row in cursor.fetchall()]
                    cursor.execute(load("mysql", "rescue").text.format(where=where, superseded=self._superseded()),
                                   params)
            else:
                cursor.execute(load(self.vendor, "rescue").text.format(where=where, superseded=self._superseded()),
                               params)
                ids = [row[0] for row in cursor.fetchall()]
        return [_uuid_str(i) for i in ids]

    def cancelled(self, worker_id: str) -> list[str]:
        """Ids of tasks this worker runs that an operator asked to cancel."""
        with self.connection.cursor() as cursor:
            cursor.execute(load(self.vendor, "cancelled").text, {"worker": worker_id})
            return [_uuid_str(row[0]) for row in cursor.fetchall()]

    def elect(self, name: str, worker_id: str, now: dt.datetime, until: dt.datetime) -> bool:
        """Take or keep the cluster-wide role ``name`` until ``until``; True if this worker holds it."""
        from loom.models import LeaderLease

        params = {"name": name, "worker": worker_id, "now": self._dt(now), "until": self._dt(until)}
        with self.connection.cursor() as cursor:
            cursor.execute(load(self.vendor, "elect").text, params)
            if cursor.rowcount:
                return True
        try:
            with transaction.atomic(using=self.alias):
                LeaderLease.objects.using(self.alias).create(name=name, holder=worker_id, expires_at=until)
            return True
        except IntegrityError:
            return False

    def resign(self, name: str, worker_id: str) -> None:
        from loom.models import LeaderLease

        LeaderLease.objects.using(self.alias).filter(name=name, holder=worker_id).delete()

    def register_worker(self, worker_id: str, *, queues: Sequence[str] | None, concurrency: dict,
                        now: dt.datetime) -> None:
        """Insert this worker's row (or refresh it, when a registration is retried after an
        error whose reply was lost): single statements, never a read before the write."""
        import os
        import socket

        from loom.models import WorkerRecord

        values = dict(hostname=socket.gethostname(), pid=os.getpid(), queues=list(queues or []),
                      concurrency=concurrency, started_at=now, heartbeat_at=now, stopped_at=None)
        rows = WorkerRecord.objects.using(self.alias)
        if not rows.filter(id=worker_id).update(**values):
            try:
                with transaction.atomic(using=self.alias):
                    rows.create(id=worker_id, **values)
            except IntegrityError:
                rows.filter(id=worker_id).update(**values)

    def worker_beat(self, worker_id: str, now: dt.datetime, tasks_done: int) -> None:
        from loom.models import WorkerRecord

        WorkerRecord.objects.using(self.alias).filter(id=worker_id).update(heartbeat_at=now, tasks_done=tasks_done)

    def worker_stopped(self, worker_id: str, now: dt.datetime, tasks_done: int) -> None:
        from loom.models import WorkerRecord

        WorkerRecord.objects.using(self.alias).filter(id=worker_id).update(
            stopped_at=now, heartbeat_at=now, tasks_done=tasks_done)

    def prune_workers(self, before: dt.datetime) -> int:
        """Forget workers that stopped, or last beat, before the cut-off."""
        from django.db.models import Q

        from loom.models import WorkerRecord

        return WorkerRecord.objects.using(self.alias).filter(
            Q(stopped_at__lt=before) | Q(heartbeat_at__lt=before)).delete()[0]

    def enqueue_tick(self, schedule: str, tick_at: dt.datetime, enqueue) -> bool:
        """Enqueue a periodic tick unless it already was: tick row and task commit together."""
        from loom.models import PeriodicTick

        if PeriodicTick.objects.using(self.alias).filter(schedule=schedule, tick_at=tick_at).exists():
            return False
        try:
            with transaction.atomic(using=self.alias):
                tick = PeriodicTick.objects.using(self.alias).create(schedule=schedule, tick_at=tick_at, task_id="")
                tick.task_id = enqueue()
                tick.save(update_fields=["task_id"])
        except IntegrityError:
            return False
        return True

    def prune_ticks(self, before: dt.datetime) -> int:
        from loom.models import PeriodicTick

        return PeriodicTick.objects.using(self.alias).filter(tick_at__lt=before).delete()[0]

    def prune_workflows(self, before: dt.datetime) -> int:
        """Forget durable steps recorded before the cut-off, and workflows finished before it
        (with their nodes); returns how many workflows went."""
        from loom.models import StepRecord, Workflow, WorkflowNode

        StepRecord.objects.using(self.alias).filter(created_at__lt=before)._raw_delete(self.alias)
        old = Workflow.objects.using(self.alias).filter(finished_at__lt=before)
        WorkflowNode.objects.using(self.alias).filter(workflow__in=old.values("pk"))._raw_delete(self.alias)
        return old._raw_delete(self.alias)

    # -- reads (ORM) ---------------------------------------------------------------------------

    def next_available_at(self, queues: Sequence[str] | None, exclude: Iterable[str] = ()) -> dt.datetime | None:
        """When the earliest READY row becomes due, so an idle worker can sleep until then."""
        from django.db.models import Min

        from loom.models import TaskRecord

        qs = TaskRecord.objects.using(self.alias).ready()
        if queues:
            qs = qs.filter(queue_name__in=list(queues))
        if exclude:
            qs = qs.exclude(queue_name__in=list(exclude))
        return qs.aggregate(at=Min("available_at"))["at"]


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _uuid_str(value) -> str:
    """Task ids as Django shows them (dashed), whatever the database returned (SQLite: hex)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def printable(text: str) -> str:
    """Display text as a text column can hold it: no NUL, no lone surrogates (both replaced)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text
