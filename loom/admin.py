"""Django admin for loom's tables: read-only views with filters, and actions that go through Store.

The queue table is written only by ``loom.store.Store``, so rows cannot be added or edited here,
and the stock "delete selected" is replaced by one that keeps RUNNING tasks (their worker
would lose its row). Retry and cancel need ``loom.change_taskrecord``; delete needs
``loom.delete_taskrecord``. For live progress and charts, use the dashboard (``loom.urls``).
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from loom.models import LeaderLease, PeriodicTick, TaskRecord, WorkerRecord


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by loom itself: visible, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _store_for(queryset: QuerySet):
    from loom.store import Store

    return Store(queryset.db)


@admin.action(description="Retry selected failed or cancelled tasks", permissions=["retry"])
def retry_tasks(modeladmin, request, queryset):
    changed = _store_for(queryset).retry([str(pk) for pk in queryset.values_list("pk", flat=True)], timezone.now())
    modeladmin.message_user(request, f"{changed} task(s) queued to run again.", messages.SUCCESS)


@admin.action(description="Cancel selected tasks", permissions=["retry"])
def cancel_tasks(modeladmin, request, queryset):
    from loom.events.tasks import publish_cancelled

    ready = list(queryset.filter(status="READY").only("id", "task_path", "queue_name"))
    changed = _store_for(queryset).cancel([str(pk) for pk in queryset.values_list("pk", flat=True)], timezone.now())
    publish_cancelled(ready)
    modeladmin.message_user(request, f"{changed} task(s) cancelled or asked to stop.", messages.SUCCESS)


# Named like the stock action so that it replaces it: the stock one would delete RUNNING rows
# behind their worker's back.
@admin.action(description="Delete selected tasks that are not running", permissions=["delete"])
def delete_selected(modeladmin, request, queryset):
    ids = [str(pk) for pk in queryset.values_list("pk", flat=True)]
    deleted = _store_for(queryset).delete(ids)
    level = messages.SUCCESS if deleted == len(ids) else messages.WARNING
    modeladmin.message_user(request, f"Deleted {deleted} of {len(ids)} task(s); running tasks are kept.", level)


@admin.register(TaskRecord)
class TaskRecordAdmin(ReadOnlyAdmin):
    list_display = ["id", "task_path", "status", "queue_name", "priority", "attempts_shown",
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

    def delete_model(self, request: HttpRequest, obj: TaskRecord) -> None:
        from loom.store import Store

        Store(obj._state.db).delete([str(obj.pk)])

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        _store_for(queryset).delete([str(pk) for pk in queryset.values_list("pk", flat=True)])

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        try:
            return queryset.filter(pk=uuid.UUID(term)), False  # an id finds exactly that task
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

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
