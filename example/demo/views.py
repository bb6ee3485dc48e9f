"""Demo pages: start tasks with a button, watch them live, read their results.

``start`` answers JSON for the page's script (and redirects for a plain form post); ``result``
reads ``get_result`` plus ``loom.progress.get_progress`` and the task's attempts
(``loom.attempts.history``), which the page shows when a bar ends: the return value, or the
error as class and message, each attempt's outcome and the wait before it, and a link to the
task on the dashboard.
"""

from __future__ import annotations

import importlib.util
import uuid

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.views.decorators.http import require_POST

from demo import tasks
from loom import progress, sse
from loom.attempts import error_line, history
from loom.models import PeriodicTick, TaskRecord

SYMBOLS = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI", "STARK", "WAYNE", "WONKA"]
# kind -> (label, task, how to enqueue it)
STARTERS = {
    "report": ("Report (CPU)", tasks.generate_report, lambda: tasks.generate_report.enqueue("Quarterly report")),
    "prices": ("Prices (async I/O)", tasks.fetch_prices, lambda: tasks.fetch_prices.enqueue(SYMBOLS)),
    "fail": ("Failing task", tasks.always_fails, lambda: tasks.always_fails.enqueue()),
    "flaky": ("Flaky task (retries)", tasks.flaky, lambda: tasks.flaky.enqueue()),
}
PATHS = {task.module_path: (label, task) for label, task, _ in STARTERS.values()}


def _dashboard_url(task_id: str) -> str:
    return reverse("loom:task", args=[task_id])


def index(request: HttpRequest) -> HttpResponse:
    recent = TaskRecord.objects.filter(task_path__in=list(PATHS)).order_by("-enqueued_at")[:8]
    tick = PeriodicTick.objects.filter(schedule="demo-tick").order_by("-tick_at").first()
    return render(request, "demo/index.html", {
        "recent": [(str(r.id), PATHS[r.task_path][0], _dashboard_url(str(r.id))) for r in recent],
        "last_tick": tick,
        "has_parallel": importlib.util.find_spec("demo.parallel") is not None,
    })


@require_POST
def start(request: HttpRequest, kind: str) -> HttpResponse:
    if kind not in STARTERS:
        raise Http404(f"Unknown demo task {kind!r}; use one of {', '.join(STARTERS)}.")
    label, _, enqueue = STARTERS[kind]
    result = enqueue()
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"id": result.id, "label": label, "events_url": sse.stream_url(result),
                             "status_url": sse.status_url(result), "dashboard_url": _dashboard_url(result.id)})
    return redirect("index")


def result(request: HttpRequest, task_id: uuid.UUID) -> JsonResponse:
    record = TaskRecord.objects.filter(pk=task_id).first()
    if record is None or record.task_path not in PATHS:
        raise Http404("No such demo task.")
    try:
        outcome = PATHS[record.task_path][1].get_result(str(task_id))
    except TaskResultDoesNotExist:
        raise Http404("No such demo task.") from None
    shown = progress.get_progress(outcome)
    attempts = [{"number": a.number, "outcome": a.outcome, "error": a.error, "waited": a.waited}
                for a in history(record) if a.number is not None]
    return JsonResponse({
        "id": outcome.id, "status": record.status, "final": record.status in ("SUCCESSFUL", "FAILED", "CANCELLED"),
        "progress": shown.as_dict() if shown else None,
        "return_value": outcome.return_value if outcome.status == "SUCCESSFUL" else None,
        "error": error_line(record.errors[-1]) if record.errors and record.status != "SUCCESSFUL" else None,
        "attempts": attempts, "dashboard_url": _dashboard_url(outcome.id),
    })
