"""The reads behind the dashboard, ``manage.py loom status`` and the metrics: one function per question.

Each takes the ``DatabaseBackend`` to look at and reads its database through the ORM; aggregates
are computed by the database (counts, per-minute buckets), so a busy table costs an index range
scan, not a transfer of rows. Nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.models import Case, CharField, Count, IntegerField, Max, Min, Q, Sum, Value, When
from django.db.models.functions import Substr, TruncMinute
from django.utils import timezone

from loom.compat import task_backends
from loom.models import FINAL_STATUSES, PeriodicTick, Status, TaskRecord, WorkerRecord

# Minutes shown in the throughput chart.
CHART_MINUTES = 60
# Tasks listed per page.
PAGE_SIZE = 50
# Workers listed (most recent heartbeat first).
MAX_WORKERS = 200


def database_backends() -> dict[str, Any]:
    """The configured TASKS backends that loom's dashboard can show, by alias."""
    from loom.backends.database import DatabaseBackend

    return {b.alias: b for b in task_backends.all() if isinstance(b, DatabaseBackend)}


def pick_backend(alias: str | None):
    found = database_backends()
    if not found:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("No TASKS backend uses loom.backends.DatabaseBackend; "
                                   "the dashboard has nothing to show.")
    return found.get(alias or "") or found.get("default") or next(iter(found.values()))


def tasks_of(backend):
    return TaskRecord.objects.using(backend.store.alias).filter(backend=backend.alias)


@dataclass
class QueueRow:
    name: str
    ready: int = 0
    scheduled: int = 0
    running: int = 0
    failed_hour: int = 0
    oldest_due: dt.datetime | None = None
    # When READY and RUNNING were counted, if earlier than now (a large backlog's count is
    # reused for a moment: _active_counts).
    counted_at: dt.datetime | None = None
    # Flow control (loom.queues): paused, and the limits in force (None: no limit).
    paused: bool = False
    concurrency: int | None = None
    rate: str | None = None

    @property
    def depth(self) -> int:
        return self.ready + self.scheduled


def queue_rows(backend, now: dt.datetime | None = None) -> list[QueueRow]:
    """Per queue: READY due now, READY scheduled later, RUNNING, FAILED in the last hour."""
    now = now or timezone.now()
    rows = {name: QueueRow(name) for name in sorted(backend.queues or ())}
    qs = tasks_of(backend)
    active, counted_at = _active_counts(backend, now)
    for item in active:
        row = rows.setdefault(item["queue_name"], QueueRow(item["queue_name"]))
        row.counted_at = counted_at
        due = item["due"] or 0
        if item["status"] == Status.RUNNING:
            row.running = item["n"]
        else:
            row.ready, row.scheduled = due, item["n"] - due
            if due:
                row.oldest_due = item["oldest"]
    failed = (qs.filter(status=Status.FAILED, finished_at__gte=now - dt.timedelta(hours=1))
              .values("queue_name").annotate(n=Count("pk")))
    for item in failed:
        rows.setdefault(item["queue_name"], QueueRow(item["queue_name"])).failed_hour = item["n"]
    from loom.queues import overview

    for info in overview(backend.alias):
        row = rows.setdefault(info.name, QueueRow(info.name))
        row.paused, row.concurrency, row.rate = info.paused, info.concurrency, info.rate
    return sorted(rows.values(), key=lambda r: r.name)


@dataclass
class KeyRow:
    key: str
    limit: int | None
    running: int = 0
    waiting: int = 0


def concurrency_keys(backend, limit: int = 20) -> list[KeyRow]:
    """The concurrency keys with tasks waiting or running: how full each is (most running first).

    Two reads, each on an index that holds only what it counts: RUNNING rows by the status index,
    READY keyed rows by the flow claim's partial index (its condition is repeated so that the
    planner sees it applies). One read of both statuses scanned a whole plain backlog."""
    keyed = tasks_of(backend).filter(concurrency_key__isnull=False)
    rows: dict[str, KeyRow] = {}
    running = (keyed.filter(status=Status.RUNNING).values("concurrency_key")
               .annotate(n=Count("*"), limit=Max("concurrency_limit")).order_by())
    waiting = (keyed.filter(Q(status=Status.READY),
                            Q(concurrency_key__isnull=False) | Q(fair_key__isnull=False))
               .values("concurrency_key").annotate(n=Count("*"), limit=Max("concurrency_limit")).order_by())
    for item in running:
        rows[item["concurrency_key"]] = KeyRow(item["concurrency_key"], item["limit"], running=item["n"])
    for item in waiting:
        row = rows.setdefault(item["concurrency_key"], KeyRow(item["concurrency_key"], item["limit"]))
        row.waiting = item["n"]
        row.limit = max(row.limit or 0, item["limit"] or 0) or None
    ordered = sorted(rows.values(), key=lambda r: (-r.running, -r.waiting, r.key))
    return ordered[:limit]


@dataclass
class Bucket:
    minute: dt.datetime
    successful: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.successful + self.failed + self.cancelled


def throughput(backend, now: dt.datetime | None = None, minutes: int = CHART_MINUTES) -> list[Bucket]:
    """Tasks finished per minute over the last ``minutes``, oldest first, by outcome."""
    now = (now or timezone.now()).astimezone(dt.UTC).replace(second=0, microsecond=0)
    start = now - dt.timedelta(minutes=minutes - 1)
    buckets = {start + dt.timedelta(minutes=i): Bucket(start + dt.timedelta(minutes=i)) for i in range(minutes)}
    finished = tasks_of(backend).filter(status__in=[Status.SUCCESSFUL, Status.FAILED, Status.CANCELLED],
                                        finished_at__gte=start)
    as_text = _minute_as_text(backend)
    # SQLite's TruncMinute is a Python function called per row (80 ms for 45k rows); the stored
    # UTC text's first 16 characters are the minute already.
    by_minute: Any = (Substr("finished_at", 1, 16, output_field=CharField()) if as_text
                      else TruncMinute("finished_at", tzinfo=dt.UTC))
    counts = finished.annotate(minute=by_minute).values("minute", "status").annotate(n=Count("*")).order_by()
    for item in counts:
        minute = item["minute"]
        if minute is None:
            continue
        if as_text:
            minute = dt.datetime.strptime(minute, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        bucket = buckets.get(minute.astimezone(dt.UTC))
        if bucket is not None:
            setattr(bucket, item["status"].lower(), getattr(bucket, item["status"].lower()) + item["n"])
    return list(buckets.values())


def _minute_as_text(backend) -> bool:
    """Finished times are stored as UTC text (SQLite with USE_TZ): bucket them by their text."""
    from django.conf import settings

    return connections[backend.store.alias].vendor == "sqlite" and settings.USE_TZ


@dataclass
class WorkerRow:
    id: str
    record: WorkerRecord | None
    alive: bool
    heartbeat_age: float | None
    running: list[dict] = field(default_factory=list)

    @property
    def state(self) -> str:
        """alive, stopped (it said so on its way out) or "no heartbeat" (gone without a word)."""
        if self.alive:
            return "alive"
        return "stopped" if self.record is not None and self.record.stopped_at is not None else "no heartbeat"


def worker_rows(backend, now: dt.datetime | None = None) -> list[WorkerRow]:
    """Registered workers (alive first) and any worker that holds a task but never registered."""
    now = now or timezone.now()
    stale = dt.timedelta(seconds=backend.config.lease_seconds)
    running: dict[str, list[dict]] = {}
    for item in (tasks_of(backend).running().order_by("started_at")
                 .values("id", "task_path", "claimed_by", "started_at", "progress_current", "progress_total")[:1000]):
        running.setdefault(item["claimed_by"] or "?", []).append(item)
    rows = []
    for record in WorkerRecord.objects.using(backend.store.alias).order_by("-heartbeat_at")[:MAX_WORKERS]:
        age = (now - record.heartbeat_at).total_seconds()
        alive = record.stopped_at is None and age <= stale.total_seconds()
        rows.append(WorkerRow(record.id, record, alive, age, running.pop(record.id, [])))
    for worker_id, items in running.items():
        rows.append(WorkerRow(worker_id, None, True, None, items))
    rows.sort(key=lambda r: (not r.alive, r.heartbeat_age if r.heartbeat_age is not None else 0))
    return rows


@dataclass
class TaskFilter:
    status: str = ""
    queue: str = ""
    task: str = ""
    q: str = ""
    page: int = 1
    problem: str = ""

    @classmethod
    def from_query(cls, data) -> "TaskFilter":
        status = data.get("status", "")
        if status not in Status.values:
            status = ""
        try:
            page = max(1, int(data.get("page", 1)))
        except ValueError:
            page = 1
        return cls(status=status, queue=data.get("queue", "").strip()[:100],
                   task=data.get("task", "").strip()[:255], q=data.get("q", "").strip()[:100], page=page)

    def apply(self, qs):
        if self.status:
            qs = qs.filter(status=self.status)
        if self.queue:
            qs = qs.filter(queue_name=self.queue)
        if self.task:
            qs = qs.filter(task_path__icontains=self.task)
        if self.q:
            try:
                qs = qs.filter(pk=uuid.UUID(self.q))
            except ValueError:
                self.problem = f"{self.q!r} is not a task id (a UUID such as 01920000-0000-7000-8000-000000000000)."
                qs = qs.none()
        return qs


def task_page(backend, flt: TaskFilter) -> tuple[list[TaskRecord], bool]:
    """One page of tasks, newest first, and whether there is a next page (no COUNT of the table).
    An index serves each order, so a page reads about 51 rows however large the table: newest
    enqueued first by id (ids are time-ordered, uuid7; the primary key), and for a finished status
    latest finished first (the index on status and finished_at). Ordering by enqueued_at sorted
    every matching row: seconds at millions of rows."""
    order = ("-finished_at", "-id") if flt.status in FINAL_STATUSES else ("-id",)
    qs = flt.apply(tasks_of(backend)).order_by(*order).defer("args", "kwargs", "return_value", "errors")
    start = (flt.page - 1) * PAGE_SIZE
    rows = list(qs[start:start + PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE


class StatusCounts(dict):
    """Rows per status. ``as_of``: when the finished statuses were counted, ``active_as_of``:
    READY and RUNNING, each if that was earlier than now (a large table's count is reused for a
    while); None when the count is current."""

    as_of: dt.datetime | None = None
    active_as_of: dt.datetime | None = None


# Counts reused while they are slow to take. Counting finished rows reads every one of them: at
# millions of rows that takes seconds, on every dashboard refresh and metrics scrape; a large READY
# backlog (100,000 tasks) takes 50-100 ms, on every live refresh of every open page. A count that
# took longer than COUNT_SLOW seconds is reused for the longer of its TTL and 20 times what it
# took; the page says when it was taken. READY and RUNNING only when there are at least
# ACTIVE_REUSE_ROWS of them: a small queue is always counted now. Operator actions forget them.
COUNT_SLOW = 0.05
FINISHED_COUNT_TTL = 30.0
ACTIVE_COUNT_TTL = 2.0
ACTIVE_REUSE_ROWS = 10_000
_finished_counts: dict[tuple[str, str], tuple[float, dt.datetime, dict[str, int]]] = {}
_active_counts_cache: dict[tuple[str, str], tuple[float, dt.datetime, list[dict]]] = {}


def forget_counts() -> None:
    """Count everything afresh next time (after an operator changed tasks)."""
    _finished_counts.clear()
    _active_counts_cache.clear()


def _active_counts(backend, now: dt.datetime) -> tuple[list[dict], dt.datetime | None]:
    """READY and RUNNING per queue: n, due now, the oldest due; and when counted, if reused."""
    key = (backend.alias, backend.store.alias)
    cached = _active_counts_cache.get(key)
    if cached is not None and time.monotonic() < cached[0]:
        return cached[2], cached[1]
    began = time.monotonic()
    # COUNT(*) and a SUM, not COUNT(id): SQLite then reads no primary key for each of a large
    # backlog's rows.
    items = list(tasks_of(backend).filter(status__in=[Status.READY, Status.RUNNING])
                 .values("queue_name", "status")
                 .annotate(n=Count("*"), due=Sum(Case(When(available_at__lte=now, then=Value(1)), default=Value(0),
                                                      output_field=IntegerField())),
                           oldest=Min("available_at")))
    took = time.monotonic() - began
    if took > COUNT_SLOW and sum(item["n"] for item in items) >= ACTIVE_REUSE_ROWS:
        _active_counts_cache[key] = (time.monotonic() + max(ACTIVE_COUNT_TTL, 20 * took), now, items)
    else:
        _active_counts_cache.pop(key, None)
    return items, None


def status_counts(backend, queues: list[QueueRow] | None = None) -> StatusCounts:
    """``queues``: ``queue_rows(backend)`` if the caller has it, which holds the READY and RUNNING
    counts already (counting a large backlog twice doubled the cost of a metrics scrape)."""
    counts = StatusCounts({status: 0 for status in Status.values})
    qs = tasks_of(backend)
    if queues is None:
        active, counts.active_as_of = _active_counts(backend, timezone.now())
        for item in active:
            counts[item["status"]] += item["n"]
    else:
        counts[Status.READY] = sum(q.ready + q.scheduled for q in queues)
        counts[Status.RUNNING] = sum(q.running for q in queues)
        counts.active_as_of = next((q.counted_at for q in queues if q.counted_at), None)
    key = (backend.alias, backend.store.alias)
    cached = _finished_counts.get(key)
    if cached is not None and time.monotonic() < cached[0]:
        counts.update(cached[2])
        counts.as_of = cached[1]
        return counts
    began, at = time.monotonic(), timezone.now()
    finished: dict[str, int] = {str(status): 0 for status in FINAL_STATUSES}
    for item in qs.filter(status__in=FINAL_STATUSES).values("status").annotate(n=Count("pk")).order_by():
        finished[item["status"]] = item["n"]
    took = time.monotonic() - began
    if took > COUNT_SLOW:
        _finished_counts[key] = (time.monotonic() + max(FINISHED_COUNT_TTL, 20 * took), at, finished)
    else:
        _finished_counts.pop(key, None)
    counts.update(finished)
    return counts


@dataclass
class ScheduleRow:
    name: str
    task: str = ""
    cron: str = ""
    args: Any = None
    kwargs: Any = None
    problem: str = ""
    last_tick: dt.datetime | None = None
    last_task_id: str = ""
    # Where the task of the last tick stands (a loom.phase.Phase), if it is still kept.
    last_phase: Any = None
    next_run: dt.datetime | None = None


def schedule_rows(backend, now: dt.datetime | None = None) -> list[ScheduleRow]:
    """``TASKS[alias]["OPTIONS"]["PERIODIC"]`` with the last tick of each, where its task stands,
    and the next run (read defensively: a bad entry is shown with its problem)."""
    from croniter import croniter
    from django.conf import settings

    from loom.phase import phase_of

    now = now or timezone.now()
    options = (getattr(settings, "TASKS", {}).get(backend.alias) or {}).get("OPTIONS") or {}
    periodic = options.get("PERIODIC") or {}
    if not isinstance(periodic, dict):
        return [ScheduleRow("PERIODIC", problem="OPTIONS['PERIODIC'] should be a dict of name -> schedule.")]
    rows = []
    for name, spec in periodic.items():
        if not isinstance(spec, dict):
            rows.append(ScheduleRow(str(name), problem="Each schedule should be a dict with 'task' and 'cron'."))
            continue
        row = ScheduleRow(str(name), task=str(spec.get("task", "")), cron=str(spec.get("cron", "")),
                          args=spec.get("args", []), kwargs=spec.get("kwargs", {}),
                          problem="" if spec.get("task") and spec.get("cron") else "Needs 'task' and 'cron'.")
        if not row.problem and croniter.is_valid(row.cron):
            row.next_run = croniter(row.cron, now).get_next(dt.datetime)  # as the Scheduler reads it
        rows.append(row)
    if rows:
        ticks = PeriodicTick.objects.using(backend.store.alias)
        last = ticks.filter(schedule__in=[r.name for r in rows]).values("schedule").annotate(at=Max("tick_at"))
        wanted = Q(pk__in=[])
        for item in last:
            wanted |= Q(schedule=item["schedule"], tick_at=item["at"])
        latest = {tick.schedule: tick for tick in ticks.filter(wanted)}
        for row in rows:
            tick = latest.get(row.name)
            if tick is not None:
                row.last_tick = tick.tick_at
                try:
                    row.last_task_id = str(uuid.UUID(tick.task_id))
                except ValueError:
                    row.last_task_id = ""
        enqueued = {str(r.pk): r for r in tasks_of(backend).filter(
            pk__in=[r.last_task_id for r in rows if r.last_task_id]).defer("args", "kwargs", "return_value", "errors")}
        for row in rows:
            if row.last_task_id in enqueued:
                row.last_phase = phase_of(enqueued[row.last_task_id], now)
    return rows
