"""Demo pages: start tasks with a button, watch them live, read their results.

``start`` answers JSON for the page's script (and redirects for a plain form post); ``result``
reads ``get_result`` plus ``loom.progress.get_progress``, which the page shows when a bar ends.
"""

from __future__ import annotations

import importlib.util
import uuid

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.tasks.exceptions import TaskResultDoesNotExist
from django.views.decorators.http import require_POST

from demo import tasks
from loom import progress, sse
from loom.models import TaskRecord

STARTERS = {
    "report": ("Report (CPU)", lambda: tasks.generate_report.enqueue("Quarterly report")),
    "prices": ("Prices (async I/O)", lambda: tasks.fetch_prices.enqueue(["ACME", "GLOBEX", "INITECH", "UMBRELLA",
                                                                        "HOOLI", "STARK", "WAYNE", "WONKA"])),
    "fail": ("Failing task", lambda: tasks.always_fails.enqueue()),
}
PATHS = {f"{t.module_path}": label for t, label in [(tasks.generate_report, "Report (CPU)"),
                                                      (tasks.fetch_prices, "Prices (async I/O)"),
                                                      (tasks.always_fails, "Failing task")]}


def index(request: HttpRequest) -> HttpResponse:
    recent = TaskRecord.objects.filter(task_path__in=list(PATHS)).order_by("-enqueued_at")[:8]
    return render(request, "demo/index.html", {
        "recent": [(str(r.id), PATHS[r.task_path]) for r in recent],
        "has_parallel": importlib.util.find_spec("demo.parallel") is not None,
    })


@require_POST
def start(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in STARTERS:
        raise Http404(f"Unknown demo task {kind!r}; use one of {', '.join(STARTERS)}.")
    label, enqueue = STARTERS[kind]
    result = enqueue()
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"id": result.id, "label": label, "events_url": sse.stream_url(result),
                             "status_url": sse.status_url(result)})
    return redirect("index")


def result(request: HttpRequest, task_id: uuid.UUID) -> JsonResponse:
    record = TaskRecord.objects.filter(pk=task_id).only("task_path").first()
    if record is None or record.task_path not in PATHS:
        raise Http404("No such demo task.")
    task = {t.module_path: t for t in (tasks.generate_report, tasks.fetch_prices, tasks.always_fails)}[record.task_path]
    try:
        outcome = task.get_result(str(task_id))
    except TaskResultDoesNotExist:
        raise Http404("No such demo task.") from None
    shown = progress.get_progress(outcome)
    body = {"id": outcome.id, "status": outcome.status, "progress": shown.as_dict() if shown else None,
            "return_value": outcome.return_value if outcome.status == "SUCCESSFUL" else None,
            "error": outcome.errors[-1].exception_class_path if outcome.errors else None}
    return JsonResponse(body)
