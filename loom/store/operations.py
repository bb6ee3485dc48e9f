"""Operator actions on tasks (dashboard, CLI, admin): retry, cancel, delete, purge, prune.

A mixin of ``Store``, kept in its own module so the queue's hot path stays readable in
``store/__init__.py``. These are rare, human-sized writes, so they use the ORM rather than
named SQL; like every write to the task table they go through ``Store``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction


class OperatorActions:
    """Needs ``alias``, ``vendor`` and ``connection`` from ``Store``."""

    alias: str

    def _notify(self, queues: Iterable[str]) -> None:
        if self.vendor == "postgresql":
            with self.connection.cursor() as cursor:
                for queue in sorted(set(queues)):
                    cursor.execute("SELECT pg_notify('loom', %s)", [queue])

    def retry(self, ids: Iterable[str], now: dt.datetime) -> int:
        """Put FAILED or CANCELLED tasks back to READY now, allowing them one more attempt."""
        from django.db.models import Case, F, PositiveIntegerField, Value, When

        from loom.models import TaskRecord

        with transaction.atomic(using=self.alias):
            qs = TaskRecord.objects.using(self.alias).filter(
                pk__in=list(ids), status__in=["FAILED", "CANCELLED"]
            )
            queues = list(qs.values_list("queue_name", flat=True))
            changed = qs.update(
                status="READY", available_at=now, finished_at=None, cancel_requested=False,
                max_attempts=Case(When(max_attempts__lte=F("attempts"),
                                       then=F("attempts") + Value(1, output_field=PositiveIntegerField())),
                                  default=F("max_attempts"), output_field=PositiveIntegerField()),
            )
            self._notify(queues)
        return changed

    def cancel(self, ids: Iterable[str], now: dt.datetime) -> int:
        """Cancel READY tasks at once (they never run) and ask workers to stop RUNNING ones."""
        from loom.models import TaskRecord

        ids = list(ids)
        error = {"exception_class_path": "loom.exceptions.TaskCancelled",
                 "traceback": "loom.exceptions.TaskCancelled: cancelled by an operator before it ran.\n"}
        with transaction.atomic(using=self.alias):
            tasks = TaskRecord.objects.using(self.alias).filter(pk__in=ids)
            ready = 0
            for record in tasks.filter(status="READY").select_for_update():
                record.status, record.finished_at = "CANCELLED", now
                record.errors = [*record.errors, error]
                record.save(update_fields=["status", "finished_at", "errors"])
                ready += 1
            running = tasks.filter(status="RUNNING").update(cancel_requested=True)
        return ready + running

    def delete(self, ids: Iterable[str]) -> int:
        """Delete tasks that are not running (a running task's worker would lose its row)."""
        from loom.models import TaskRecord

        return TaskRecord.objects.using(self.alias).filter(pk__in=list(ids)).exclude(
            status="RUNNING").delete()[0]

    def purge(self, queue: str) -> int:
        """Delete every READY task of a queue."""
        from loom.models import TaskRecord

        return TaskRecord.objects.using(self.alias).ready().filter(queue_name=queue).delete()[0]

    def prune(self, finished_before: dt.datetime) -> int:
        """Delete finished tasks older than a cut-off (results are kept until then)."""
        from loom.models import TaskRecord

        return TaskRecord.objects.using(self.alias).finished().filter(
            finished_at__lt=finished_before).delete()[0]

