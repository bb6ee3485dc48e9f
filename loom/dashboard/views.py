"""Dashboard pages: overview, workers, tasks, one task, schedules. Read-only; staff only.

Each page is a frame (``<page>.html``: title, navigation, filters) around one live region
(``regions/<page>.html``) whose context comes from a ``*_region`` function of this module. The
page renders the region once; ``loom.dashboard.live`` renders it again whenever the data behind
it changes and streams it to the open page, so a page and its updates cannot disagree. Every
page takes ``?backend=ALIAS`` when several ``DatabaseBackend`` aliases exist (default:
``"default"``). Writes are in ``loom.dashboard.actions``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from loom import queries
from loom.actions import applies
from loom.attempts import current_progress, history, last_error_line
from loom.dashboard.access import QUEUE_PERMISSION, allowed_actions, staff_required
from loom.models import Status, TaskRecord
from loom.phase import phase_of
from loom.sse import record_snapshot
from loom.templatetags.loom import progress_bar


def _base(request: HttpRequest, query: QueryDict, section: str) -> dict:
    backend = queries.pick_backend(query.get("backend"))
    backends = list(queries.database_backends())
    return {"section": section, "backend": backend, "backends": backends if len(backends) > 1 else [],
            "backend_query": f"?backend={backend.alias}" if len(backends) > 1 else ""}


def _page(request: HttpRequest, name: str, context: dict) -> HttpResponse:
    context["live_url"] = reverse("loom:live") + "?" + urlencode({"url": request.get_full_path()})
    context["region"] = f"loom/dashboard/regions/{name}.html"
    return render(request, f"loom/dashboard/{name}.html", context)


# -- overview -------------------------------------------------------------------------------------

def overview_region(request: HttpRequest, query: QueryDict) -> dict:
    context = _base(request, query, "overview")
    backend, now = context["backend"], timezone.now()
    queues = queries.queue_rows(backend, now)
    buckets = queries.throughput(backend, now)
    peak = max((b.total for b in buckets), default=0)
    workers = queries.worker_rows(backend, now)
    context.update(
        queues=queues,
        counted_at=next((q.counted_at for q in queues if q.counted_at), None),
        keys=queries.concurrency_keys(backend),
        can_pause=request.user.has_perm(QUEUE_PERMISSION),
        this_url=reverse("loom:overview") + context["backend_query"],
        ready=sum(q.ready for q in queues),
        scheduled=sum(q.scheduled for q in queues),
        running=sum(q.running for q in queues),
        failed_hour=sum(q.failed_hour for q in queues),
        finished_hour=sum(b.total for b in buckets),
        workers_alive=sum(1 for w in workers if w.alive),
        chart=_chart(buckets, peak),
        peak=peak,
    )
    return context


def _chart(buckets, peak: int) -> list[dict]:
    """Bar geometry for the inline SVG (viewBox 0 0 600 120): stacked ok/failed per minute."""
    height, width = 110.0, 600 / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        scale = height / peak if peak else 0
        ok_h, bad_h = b.successful * scale, (b.failed + b.cancelled) * scale
        bars.append({"x": round(i * width + 1, 2), "w": round(width - 2, 2), "key": f"{b.minute:%H%M}",
                     "ok_y": round(120 - ok_h, 2), "ok_h": round(ok_h, 2),
                     "bad_y": round(120 - ok_h - bad_h, 2), "bad_h": round(bad_h, 2),
                     "title": f"{timezone.localtime(b.minute):%H:%M}: {b.successful} ok, {b.failed} failed, {b.cancelled} cancelled"})
    return bars


@staff_required
def overview(request: HttpRequest) -> HttpResponse:
    return _page(request, "overview", overview_region(request, request.GET))


# -- workers --------------------------------------------------------------------------------------

def workers_region(request: HttpRequest, query: QueryDict) -> dict:
    context = _base(request, query, "workers")
    context["workers"] = queries.worker_rows(context["backend"])
    return context


@staff_required
def workers(request: HttpRequest) -> HttpResponse:
    return _page(request, "workers", workers_region(request, request.GET))


# -- tasks ----------------------------------------------------------------------------------------

def tasks_region(request: HttpRequest, query: QueryDict) -> dict:
    context = _base(request, query, "tasks")
    backend, now = context["backend"], timezone.now()
    flt = queries.TaskFilter.from_query(query)
    rows, has_next = queries.task_page(backend, flt)
    failed = [r.pk for r in rows if r.status == Status.FAILED]
    errors = dict(queries.tasks_of(backend).filter(pk__in=failed).values_list("pk", "errors")) if failed else {}
    params = {k: v for k, v in [("backend", query.get("backend", "")), ("status", flt.status),
                                ("queue", flt.queue), ("task", flt.task), ("q", flt.q)] if v}
    context.update(
        rows=[{"task": r, "phase": phase_of(r, now), "error": last_error_line(errors.get(r.pk)),
               "progress": current_progress(r)} for r in rows],
        filter=flt, has_next=has_next, counts=queries.status_counts(backend),
        statuses=Status.choices, queues=sorted(backend.queues or {r.queue_name for r in rows}),
        prev_query=urlencode({**params, "page": flt.page - 1}) if flt.page > 1 else "",
        next_query=urlencode({**params, "page": flt.page + 1}) if has_next else "",
        this_url=f"{reverse('loom:tasks')}?{urlencode({**params, 'page': flt.page})}",
        actions=allowed_actions(request.user),
    )
    return context


@staff_required
def tasks(request: HttpRequest) -> HttpResponse:
    return _page(request, "tasks", tasks_region(request, request.GET))


# -- one task -------------------------------------------------------------------------------------

def task_region(request: HttpRequest, query: QueryDict, task_id: uuid.UUID) -> dict:
    context = _base(request, query, "tasks")
    backend = context["backend"]
    try:
        record = queries.tasks_of(backend).get(pk=task_id)
    except TaskRecord.DoesNotExist:
        raise Http404("No such task: it was never enqueued on this backend, or it was deleted.") from None
    attempts = history(record)
    ended = [a for a in attempts if a.number is not None and a.duration is not None]
    allowed = allowed_actions(request.user)
    context.update(
        task=record, phase=phase_of(record), attempts=attempts,
        bar=progress_bar(record_snapshot(record), label="This attempt"),
        last_duration=ended[-1].duration if ended else None,
        workers=list(dict.fromkeys(w for w in record.worker_ids or [] if w)),
        actions=[a for a in ("retry", "cancel", "delete")
                 if a in allowed and applies(a, record.status, record.cancel_requested)],
        this_url=reverse("loom:task", args=[record.pk]) + context["backend_query"],
        workflow=_workflow_of(record, backend),
    )
    return context


def _workflow_of(record: TaskRecord, backend) -> Any:
    """The workflow this task is a step of, with every step and where it stands (or None)."""
    if record.workflow_step is None:
        return None
    from loom.models import WorkflowNode
    from loom.workflow import get_workflow

    found = WorkflowNode.objects.using(backend.store.alias).filter(pk=record.workflow_step).values_list(
        "workflow_id", flat=True).first()
    return None if found is None else get_workflow(str(found), using=backend.store.alias)


@staff_required
def task_detail(request: HttpRequest, task_id: uuid.UUID) -> HttpResponse:
    return _page(request, "task_detail", task_region(request, request.GET, task_id))


# -- schedules ------------------------------------------------------------------------------------

def schedules_region(request: HttpRequest, query: QueryDict) -> dict:
    context = _base(request, query, "schedules")
    context["schedules"] = queries.schedule_rows(context["backend"])
    return context


@staff_required
def schedules(request: HttpRequest) -> HttpResponse:
    return _page(request, "schedules", schedules_region(request, request.GET))
