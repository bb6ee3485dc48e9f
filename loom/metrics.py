"""Prometheus metrics: queue depth, task durations and outcomes (needs ``prometheus-client``).

Two sources, because a task's life spans processes:

- The table, read at scrape time by ``metrics_view`` (any web process, cluster-wide): gauges
  ``loom_queue_depth{backend,queue,state}`` (state: ready, scheduled, running),
  ``loom_queue_oldest_ready_seconds``, ``loom_tasks{backend,status}`` (rows kept per status),
  ``loom_workers{backend,state}`` (alive, stale), and over the last ``RECENT_SECONDS``:
  ``loom_tasks_finished_recent{backend,queue,status}`` and
  ``loom_task_duration_recent_seconds{backend,queue,quantile}``.
- The process that runs tasks: the counter ``loom_task_outcomes_total{queue,status}`` and the
  histogram ``loom_task_duration_seconds{queue}``, fed by ``task_finished``. ``install(port)``
  connects them and serves them on ``port`` (a worker started with a metrics port does this).

``metrics_view`` (``loom:metrics``) answers staff users, and anyone sending
``Authorization: Bearer <settings.LOOM_METRICS_TOKEN>`` when that setting is set — what a
Prometheus scrape job sends with ``authorization: {credentials: ...}``. Without
prometheus-client installed the endpoint answers 501 saying so.
"""

from __future__ import annotations

import datetime as dt
import hmac
import threading
from typing import Any

from django.conf import settings
from django.db.models import F, FloatField, Func
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

# Seconds of finished tasks that the "recent" gauges look at.
RECENT_SECONDS = 300
# Most finished rows (the latest) read to compute recent duration quantiles: 1,000 samples put
# ten above the 99th percentile, and reading 5,000 was a third of a scrape on PostgreSQL.
MAX_DURATION_ROWS = 1000
# Buckets (seconds) of the in-process duration histogram.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
QUANTILES = (0.5, 0.9, 0.99)

_process: dict[str, Any] = {}
_lock = threading.Lock()


def _prometheus():
    try:
        import prometheus_client
    except ImportError:
        raise ImportError("loom.metrics needs prometheus-client: pip install prometheus-client") from None
    return prometheus_client


def process_registry():
    """The registry with this process's task counters and histograms (created once)."""
    with _lock:
        if not _process:
            pc = _prometheus()
            registry = pc.CollectorRegistry(auto_describe=True)
            _process["registry"] = registry
            _process["outcomes"] = pc.Counter("loom_task_outcomes", "Tasks finished by this process, by outcome.",
                                              ["queue", "status"], registry=registry)
            _process["duration"] = pc.Histogram("loom_task_duration_seconds", "Run time of tasks finished by this process.",
                                                ["queue"], buckets=DURATION_BUCKETS, registry=registry)
        return _process["registry"]


def observe(task_result) -> None:
    """Count one finished task (a ``task_finished`` receiver; never raises)."""
    try:
        process_registry()
        queue = task_result.task.queue_name
        _process["outcomes"].labels(queue, str(task_result.status).lower()).inc()
        started = task_result.last_attempted_at or task_result.started_at
        if started and task_result.finished_at:
            _process["duration"].labels(queue).observe(max(0.0, (task_result.finished_at - started).total_seconds()))
    except Exception:
        pass


def _on_finished(sender, task_result, **kwargs) -> None:
    observe(task_result)


def install(port: int | None = None, addr: str = "127.0.0.1"):
    """Count tasks finished in this process; with ``port``, serve them at http://addr:port/."""
    from loom.compat import task_finished

    registry = process_registry()
    task_finished.connect(_on_finished, dispatch_uid="loom.metrics.finished")
    if port is not None:
        return _prometheus().start_http_server(port, addr=addr, registry=registry)
    return None


class TableCollector:
    """Gauges read from the task table at scrape time."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        from loom import queries

        now = self.now or timezone.now()
        depth = GaugeMetricFamily("loom_queue_depth", "Tasks waiting or running, by queue.", labels=["backend", "queue", "state"])
        oldest = GaugeMetricFamily("loom_queue_oldest_ready_seconds", "Age of the oldest task due to run, by queue.",
                                   labels=["backend", "queue"])
        rows = GaugeMetricFamily("loom_tasks", "Task rows kept, by status.", labels=["backend", "status"])
        workers = GaugeMetricFamily("loom_workers", "Registered workers by liveness.", labels=["backend", "state"])
        recent = GaugeMetricFamily("loom_tasks_finished_recent", f"Tasks finished in the last {RECENT_SECONDS}s.",
                                   labels=["backend", "queue", "status"])
        duration = GaugeMetricFamily("loom_task_duration_recent_seconds",
                                     f"Run time quantiles of tasks finished in the last {RECENT_SECONDS}s.",
                                     labels=["backend", "queue", "quantile"])
        for alias, backend in queries.database_backends().items():
            queues = queries.queue_rows(backend, now)
            for q in queues:
                depth.add_metric([alias, q.name, "ready"], q.ready)
                depth.add_metric([alias, q.name, "scheduled"], q.scheduled)
                depth.add_metric([alias, q.name, "running"], q.running)
                oldest.add_metric([alias, q.name], max(0.0, (now - q.oldest_due).total_seconds()) if q.oldest_due else 0.0)
            for status, n in queries.status_counts(backend, queues).items():
                rows.add_metric([alias, status.lower()], n)
            alive = [w.alive for w in queries.worker_rows(backend, now) if w.record is not None]
            workers.add_metric([alias, "alive"], sum(alive))
            workers.add_metric([alias, "stale"], len(alive) - sum(alive))
            self._recent(alias, backend, now, recent, duration)
        yield from (depth, oldest, rows, workers, recent, duration)

    def _recent(self, alias, backend, now, recent, duration) -> None:
        from django.db.models import Count

        from loom import queries
        from loom.models import FINAL_STATUSES

        since = now - dt.timedelta(seconds=RECENT_SECONDS)
        finished = queries.tasks_of(backend).filter(status__in=FINAL_STATUSES, finished_at__gte=since)
        for item in finished.values("queue_name", "status").annotate(n=Count("pk")).order_by():
            recent.add_metric([alias, item["queue_name"], item["status"].lower()], item["n"])
        by_queue: dict[str, list[float]] = {}
        for queue, seconds in (
            finished.exclude(started_at=None).order_by("-finished_at")
            .annotate(seconds=_RunSeconds()).values_list("queue_name", "seconds")[:MAX_DURATION_ROWS]
        ):
            by_queue.setdefault(queue, []).append(max(0.0, seconds or 0.0))
        for queue, values in by_queue.items():
            values.sort()
            for q in QUANTILES:
                duration.add_metric([alias, queue, str(q)], values[min(len(values) - 1, int(q * len(values)))])


class _RunSeconds(Func):
    """Seconds from the last attempt's start (or the first start) to the finish, computed by the
    database: converting three datetimes per row in Python took 100 ms of a scrape on SQLite."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM (%(expressions)s))"  # PostgreSQL: finished - began
    arg_joiner = " - "

    def __init__(self) -> None:
        super().__init__(F("finished_at"), Coalesce(F("last_attempted_at"), F("started_at")))

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(compiler, connection, template="(julianday(%(expressions)s)) * 86400.0",
                           arg_joiner=") - julianday(", **extra)

    def as_mysql(self, compiler, connection, **extra):
        began_first = self.copy()
        began_first.set_source_expressions(self.get_source_expressions()[::-1])
        return began_first.as_sql(compiler, connection, template="TIMESTAMPDIFF(MICROSECOND, %(expressions)s) / 1000000.0",
                                  arg_joiner=", ", **extra)


class _ProcessCollector:
    def collect(self):
        yield from process_registry().collect()


def render_metrics(now: dt.datetime | None = None) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    pc = _prometheus()
    registry = pc.CollectorRegistry(auto_describe=False)
    registry.register(TableCollector(now))
    registry.register(_ProcessCollector())
    return pc.generate_latest(registry), pc.CONTENT_TYPE_LATEST


def _authorized(request: HttpRequest) -> bool:
    from loom.dashboard.access import is_staff

    user = getattr(request, "user", None)
    if user is not None and is_staff(user):
        return True
    token = getattr(settings, "LOOM_METRICS_TOKEN", None)
    header = request.headers.get("Authorization", "")
    return bool(token) and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), str(token))


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("Sign in as staff, or send Authorization: Bearer <LOOM_METRICS_TOKEN>.\n",
                                status=401 if not getattr(request, "user", None) or not request.user.is_authenticated else 403,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="loom metrics"'
        return response
    try:
        body, content_type = render_metrics()
    except ImportError as exc:
        return HttpResponse(f"{exc}\n", status=501, content_type="text/plain")
    return HttpResponse(body, content_type=content_type)
