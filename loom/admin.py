"""Django admin for loom's tables: read-only views with filters, and loom's operator actions.

The queue table is written only by ``loom.store.Store``, so rows cannot be added or edited here,
and the stock "delete selected" is replaced by one that keeps RUNNING tasks (their worker
would lose its row). Retry and cancel need ``loom.change_taskrecord``; delete needs
``loom.delete_taskrecord``. The actions are ``loom.actions``, as on the dashboard and the CLI.
For live progress, attempts and charts, use the dashboard (``loom.urls``).
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from loom.models import LeaderLease, PeriodicTick, TaskRecord, WorkerRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by loom itself: visible, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _perform(queryset: QuerySet, action: str):
    """Run a loom action on the selected tasks, grouped by their backend; return the reports."""
    from loom import queries
    from loom.actions import Report, perform

    backends = {a: b for a, b in queries.database_backends().items() if b.store.alias == queryset.db}
    ids: dict[str, list[str]] = {}
    for pk, alias in queryset.values_list("pk", "backend"):
        ids.setdefault(alias, []).append(str(pk))
    reports = []
    for alias, chosen in sorted(ids.items()):
        if alias in backends:
            reports.append(perform(backends[alias], action, chosen))
        else:
            why = f"belongs to backend {alias!r}, which TASKS does not configure on this database"
            reports.append(Report(action, len(chosen), 0, refused=dict.fromkeys(chosen, why)))
    return reports


def _act(modeladmin, request, queryset, action: str) -> None:
    """Run a loom action on the selection and say what changed, and what did not and why."""
    reports = _perform(queryset, action)
    asked, changed = sum(r.asked for r in reports), sum(r.changed for r in reports)
    stopping = sum(r.stopping for r in reports)
    refused = {pk: why for r in reports for pk, why in r.refused.items()}
    text = f"{changed} of {asked} task{'' if asked == 1 else 's'} {DONE[action]}."
    if stopping:
        text += (f" {stopping} running: Stopping until "
                 f"{'its worker stops it' if stopping == 1 else 'their workers stop them'}.")
    if refused:
        shown = "; ".join(f"{pk} {why}" for pk, why in list(refused.items())[:5])
        text += f" Not changed: {shown}{' …' if len(refused) > 5 else '.'}"
    modeladmin.message_user(request, text, messages.WARNING if refused else messages.SUCCESS)


DONE = {"retry": "queued to run again", "cancel": "cancelled", "delete": "deleted"}


@admin.action(description="Retry selected failed or cancelled tasks", permissions=["retry"])
def retry_tasks(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, "retry")


@admin.action(description="Cancel selected tasks", permissions=["retry"])
def cancel_tasks(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, "cancel")


# Named like the stock action so that it replaces it: the stock one would delete RUNNING rows
# behind their worker's back.
@admin.action(description="Delete selected tasks that are not running", permissions=["delete"])
def delete_selected(modeladmin, request, queryset):
    _act(modeladmin, request, queryset, "delete")


@admin.register(TaskRecord)
class TaskRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "task_path", "phase_shown", "queue_name", "priority", "attempts_shown",
                    "enqueued_at", "finished_at", "progress_shown"]
    list_filter = ["status", "queue_name", "backend", "task_path", "cancel_requested"]
    search_fields = ["task_path"]
    ordering = ["-enqueued_at"]
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) of a large queue table on every page
    actions = [retry_tasks, cancel_tasks, delete_selected]
    fieldsets = [
        (None, {"fields": ["id", "task_path", "status", "backend", "queue_name", "priority", "cancel_requested"]}),
        ("Arguments and result", {"fields": ["args", "kwargs", "return_value", "errors"]}),
        ("Timing", {"fields": ["enqueued_at", "run_after", "available_at", "started_at", "last_attempted_at",
                               "finished_at", "attempts", "max_attempts"]}),
        ("Worker", {"fields": ["worker_ids", "claimed_by", "lease_expires_at"]}),
        ("Progress", {"fields": ["progress_current", "progress_total", "progress_message", "progress_at"]}),
    ]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("loom.change_taskrecord")

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.status == "RUNNING":
            return False
        return super().has_delete_permission(request, obj)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None):
        # Django wraps this view in one transaction that reads, then writes (its log entry, then
        # the row). On SQLite with default settings such a transaction fails at once with
        # "database is locked" while a worker writes; each write here is one statement instead.
        return self._delete_view(request, object_id, extra_context)  # type: ignore[attr-defined]

    def delete_model(self, request: HttpRequest, obj: TaskRecord) -> None:
        _perform(TaskRecord.objects.using(obj._state.db).filter(pk=obj.pk), "delete")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        _perform(queryset, "delete")

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False  # an id finds exactly that task
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="status", ordering="status")
    def phase_shown(self, obj: TaskRecord) -> str:
        """The words the dashboard uses ("Waiting to retry", "Stopping"), so the two never disagree."""
        from loom.phase import phase_of

        return phase_of(obj).label

    @admin.display(description="attempts")
    def attempts_shown(self, obj: TaskRecord) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="progress")
    def progress_shown(self, obj: TaskRecord) -> str:
        if obj.progress_current is None:
            return "—"
        if obj.progress_total:
            return f"{obj.progress_current:g}/{obj.progress_total:g} ({int(100 * obj.progress_current / obj.progress_total)}%)"
        return f"{obj.progress_current:g}"


@admin.register(WorkerRecord)
class WorkerRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "hostname", "pid", "queues", "heartbeat_at", "stopped_at", "tasks_done"]
    list_filter = ["hostname", ("stopped_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "hostname"]
    ordering = ["-heartbeat_at"]


@admin.register(LeaderLease)
class LeaderLeaseAdmin(ReadOnlyAdmin):
    list_display = ["name", "holder", "expires_at"]


@admin.register(PeriodicTick)
class PeriodicTickAdmin(ReadOnlyAdmin):
    list_display = ["schedule", "tick_at", "task_id"]
    list_filter = ["schedule"]
    ordering = ["-tick_at"]
