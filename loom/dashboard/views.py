"""Dashboard pages: overview, workers, tasks, task detail, schedules. Read-only, staff only.

Every view takes ``?backend=ALIAS`` to pick among several ``DatabaseBackend`` aliases (default:
``"default"``). Writes are in ``loom.dashboard.actions``.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from loom import queries
from loom.dashboard.access import allowed_actions, staff_required
from loom.models import FINAL_STATUSES, Status, TaskRecord


def _context(request: HttpRequest, section: str, **extra) -> dict:
    backend = queries.pick_backend(request.GET.get("backend"))
    backends = list(queries.database_backends())
    return {"section": section, "backend": backend, "backends": backends if len(backends) > 1 else [],
            "backend_query": f"?backend={backend.alias}" if len(backends) > 1 else "", **extra}


@staff_required
def overview(request: HttpRequest) -> HttpResponse:
    context = _context(request, "overview")
    backend, now = context["backend"], timezone.now()
    queues = queries.queue_rows(backend, now)
    buckets = queries.throughput(backend, now)
    peak = max((b.total for b in buckets), default=0)
    workers = queries.worker_rows(backend, now)
    context.update(
        queues=queues,
        ready=sum(q.ready for q in queues),
        scheduled=sum(q.scheduled for q in queues),
        running=sum(q.running for q in queues),
        failed_hour=sum(q.failed_hour for q in queues),
        finished_hour=sum(b.total for b in buckets),
        workers_alive=sum(1 for w in workers if w.alive),
        chart=_chart(buckets, peak),
        peak=peak,
        refresh=True,
    )
    return render(request, "loom/dashboard/overview.html", context)


def _chart(buckets, peak: int) -> list[dict]:
    """Bar geometry for the inline SVG (viewBox 0 0 600 120): stacked ok/failed per minute."""
    height, width = 110.0, 600 / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        scale = height / peak if peak else 0
        ok_h, bad_h = b.successful * scale, (b.failed + b.cancelled) * scale
        bars.append({"x": round(i * width + 1, 2), "w": round(width - 2, 2),
                     "ok_y": round(120 - ok_h, 2), "ok_h": round(ok_h, 2),
                     "bad_y": round(120 - ok_h - bad_h, 2), "bad_h": round(bad_h, 2),
                     "title": f"{timezone.localtime(b.minute):%H:%M}: {b.successful} ok, {b.failed} failed, {b.cancelled} cancelled"})
    return bars


@staff_required
def workers(request: HttpRequest) -> HttpResponse:
    context = _context(request, "workers")
    context.update(workers=queries.worker_rows(context["backend"]), refresh=True)
    return render(request, "loom/dashboard/workers.html", context)


@staff_required
def tasks(request: HttpRequest) -> HttpResponse:
    context = _context(request, "tasks")
    backend = context["backend"]
    flt = queries.TaskFilter.from_query(request.GET)
    rows, has_next = queries.task_page(backend, flt)
    params = {k: v for k, v in [("backend", request.GET.get("backend", "")), ("status", flt.status),
                                ("queue", flt.queue), ("task", flt.task), ("q", flt.q)] if v}
    context.update(
        rows=rows, filter=flt, has_next=has_next, counts=queries.status_counts(backend),
        statuses=Status.choices, queues=sorted(backend.queues or {r.queue_name for r in rows}),
        prev_query=urlencode({**params, "page": flt.page - 1}) if flt.page > 1 else "",
        next_query=urlencode({**params, "page": flt.page + 1}) if has_next else "",
        this_url=request.get_full_path(), actions=allowed_actions(request.user),
    )
    return render(request, "loom/dashboard/tasks.html", context)


@staff_required
def task_detail(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    context = _context(request, "tasks")
    backend = context["backend"]
    try:
        record = queries.tasks_of(backend).get(pk=task_id)
    except TaskRecord.DoesNotExist:
        raise Http404("No such task.") from None
    allowed = allowed_actions(request.user)
    possible = {
        "retry": record.status in (Status.FAILED, Status.CANCELLED),
        "cancel": record.status in (Status.READY, Status.RUNNING) and not record.cancel_requested,
        "delete": record.status != Status.RUNNING,
    }
    duration = None
    if record.started_at and record.finished_at:
        duration = (record.finished_at - record.started_at).total_seconds()
    context.update(
        task=record, final=record.status in FINAL_STATUSES,
        args_json=json.dumps(record.args, indent=2), kwargs_json=json.dumps(record.kwargs, indent=2),
        return_json=json.dumps(record.return_value, indent=2) if record.return_value is not None else "",
        errors=list(reversed(record.errors)), duration=duration,
        actions=[a for a in ("retry", "cancel", "delete") if possible[a] and a in allowed],
        this_url=request.get_full_path(), refresh=record.status not in FINAL_STATUSES,
    )
    return render(request, "loom/dashboard/task_detail.html", context)


@staff_required
def schedules(request: HttpRequest) -> HttpResponse:
    context = _context(request, "schedules")
    context.update(schedules=queries.schedule_rows(context["backend"]))
    return render(request, "loom/dashboard/schedules.html", context)
