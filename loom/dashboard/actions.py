"""Dashboard actions: retry, cancel and delete tasks, one at a time or a selection.

POST only and CSRF-protected even where the CSRF middleware is missing (``csrf_protect``); the
user must be active staff with the action's permission (``access.ACTION_PERMISSIONS``). What each action
does, and its writes and events, live in ``loom.actions`` (shared with the admin and the CLI).
The response redirects to ``next`` when it is a safe local URL, else to the task or the list.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from loom import queries
from loom.actions import Report, perform
from loom.dashboard.access import require_action, staff_required

# Most tasks one bulk action may touch.
MAX_SELECTION = 500


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


DONE = {"retry": "queued to run again", "cancel": "cancelled", "delete": "deleted"}


def describe(report: Report, what: str) -> str:
    """One sentence for the notice after an action: what changed, and what did not and why."""
    text = f"{what} {DONE[report.action]}."
    if report.stopping:
        text = (f"{what} {DONE[report.action]}; {report.stopping} running "
                f"{'task stops' if report.stopping == 1 else 'tasks stop'} when {'its' if report.stopping == 1 else 'their'} worker sees it.")
    return text


@staff_required
@require_POST
@csrf_protect
def task_action(request: HttpRequest, task_id: uuid.UUID, action: str) -> HttpResponseRedirect:
    require_action(request.user, action)
    backend = queries.pick_backend(request.POST.get("backend") or request.GET.get("backend"))
    report = perform(backend, action, [str(task_id)])
    if report.changed:
        if report.stopping:
            _notify(request, f"Task {task_id}: stop requested; its worker stops it and records it as cancelled.", True)
        else:
            _notify(request, f"Task {task_id} {DONE[action]}.", True)
    else:
        _notify(request, f"Task {task_id} was not changed: it {report.refused.get(str(task_id), 'changed meanwhile')}.", False)
    fallback = reverse("loom:tasks") if action == "delete" and report.changed else reverse("loom:task", args=[task_id])
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
    report = perform(backend, action, ids)
    what = f"{report.changed} of {len(ids)} selected {'task' if len(ids) == 1 else 'tasks'}"
    _notify(request, describe(report, what), report.changed == len(ids))
    return _next(request, reverse("loom:tasks"))


@staff_required
@require_POST
@csrf_protect
def queue_action(request: HttpRequest, queue: str, action: str) -> HttpResponseRedirect:
    """Pause or resume a queue for every worker (``loom.queues``)."""
    from django.core.exceptions import PermissionDenied

    from loom import queues
    from loom.dashboard.access import QUEUE_PERMISSION

    if action not in ("pause", "resume"):
        raise PermissionDenied(f"Unknown queue action {action!r}: use pause or resume.")
    if not request.user.has_perm(QUEUE_PERMISSION):
        raise PermissionDenied(f"You need the {QUEUE_PERMISSION} permission to {action} queues.")
    backend = queries.pick_backend(request.POST.get("backend"))
    try:
        (queues.pause if action == "pause" else queues.resume)(queue, backend=backend.alias)
    except ValueError as exc:
        _notify(request, str(exc), False)
    else:
        _notify(request, f"Queue {queue} {'paused: no worker starts its tasks' if action == 'pause' else 'resumed'}.",
                True)
    return _next(request, reverse("loom:overview"))
