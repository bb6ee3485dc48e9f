"""Dashboard actions: retry, cancel and delete tasks, one at a time or a selection.

POST only and CSRF-protected even where the CSRF middleware is missing (``csrf_protect``); the
user must be active staff with the action's permission (``access.ACTION_PERMISSIONS``). Writes go
through ``Store`` (retry: FAILED/CANCELLED → READY; cancel: READY → CANCELLED at once, RUNNING →
asks the worker; delete: anything not RUNNING). Cancelled READY tasks get a ``cancelled`` event.
The response redirects to ``next`` when it is a safe local URL, else to the task or the list.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from loom.dashboard import queries
from loom.dashboard.access import require_action, staff_required
from loom.models import Status

# Most tasks one bulk action may touch.
MAX_SELECTION = 500


def perform(backend, action: str, ids: list[str]) -> int:
    """Run one action on ``ids`` through the backend's Store; return how many rows changed."""
    from loom.events.tasks import publish_cancelled

    store, now = backend.store, timezone.now()
    if action == "retry":
        return store.retry(ids, now)
    if action == "cancel":
        ready = list(queries.tasks_of(backend).filter(pk__in=ids, status=Status.READY).only("id", "task_path", "queue_name"))
        changed = store.cancel(ids, now)
        publish_cancelled(ready)
        return changed
    if action == "delete":
        return store.delete(ids)
    raise ValueError(f"Unknown action {action!r}; expected retry, cancel or delete.")


def _notify(request: HttpRequest, text: str, ok: bool) -> None:
    try:
        (messages.success if ok else messages.warning)(request, text)
    except messages.MessageFailure:
        pass  # django.contrib.messages is not installed: the page itself shows the new state


def _next(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                   require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


DONE = {"retry": "queued to run again", "cancel": "cancelled (running tasks stop when their worker sees it)",
        "delete": "deleted"}


@staff_required
@require_POST
@csrf_protect
def task_action(request: HttpRequest, task_id: uuid.UUID, action: str) -> HttpResponseRedirect:
    require_action(request.user, action)
    backend = queries.pick_backend(request.POST.get("backend") or request.GET.get("backend"))
    changed = perform(backend, action, [str(task_id)])
    if changed:
        _notify(request, f"Task {task_id} {DONE[action]}.", True)
    else:
        _notify(request, f"Task {task_id} was not changed: it is not in a state that allows {action}.", False)
    fallback = reverse("loom:tasks") if action == "delete" and changed else reverse("loom:task", args=[task_id])
    return _next(request, fallback)


@staff_required
@require_POST
@csrf_protect
def bulk_action(request: HttpRequest) -> HttpResponseRedirect:
    action = request.POST.get("action", "")
    require_action(request.user, action)
    backend = queries.pick_backend(request.POST.get("backend"))
    ids = []
    for value in request.POST.getlist("ids")[:MAX_SELECTION]:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    if not ids:
        _notify(request, "Select at least one task first.", False)
        return _next(request, reverse("loom:tasks"))
    changed = perform(backend, action, ids)
    _notify(request, f"{changed} of {len(ids)} selected tasks {DONE[action]}.", changed == len(ids))
    return _next(request, reverse("loom:tasks"))
