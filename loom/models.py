"""The task table. The ORM owns the schema and the reads; ``loom.store`` owns every write.

One row per enqueued task, from READY to a final state. The claim query is served by
``ClaimIndex``: a partial index over READY rows where the database supports partial indexes
(PostgreSQL, SQLite) and a plain index led by ``status`` where it does not (MariaDB/MySQL).
"""

from __future__ import annotations

import os
import time
import uuid

from django.db import models
from django.db.models.functions import Concat

from loom.compat import TaskResultStatus

from loom import codec


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 v7): new rows land at the right edge of the primary key."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


class Status(models.TextChoices):
    """Django's four states plus loom's own final state for a task that was cancelled."""

    READY = TaskResultStatus.READY.value, TaskResultStatus.READY.label
    RUNNING = TaskResultStatus.RUNNING.value, TaskResultStatus.RUNNING.label
    SUCCESSFUL = TaskResultStatus.SUCCESSFUL.value, TaskResultStatus.SUCCESSFUL.label
    FAILED = TaskResultStatus.FAILED.value, TaskResultStatus.FAILED.label
    CANCELLED = "CANCELLED", "Cancelled"


FINAL_STATUSES = (Status.SUCCESSFUL, Status.FAILED, Status.CANCELLED)


class ClaimIndex(models.Index):
    """Serves the claim query; partial where the database can, led by status where it cannot."""

    def create_sql(self, model, schema_editor, using="", **kwargs):
        if self.condition is not None and not schema_editor.connection.features.supports_partial_indexes:
            fallback = models.Index(fields=["status", *self.fields], name=self.name)
            return fallback.create_sql(model, schema_editor, using=using, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)

    def remove_sql(self, model, schema_editor, **kwargs):
        if self.condition is not None and not schema_editor.connection.features.supports_partial_indexes:
            return models.Index(fields=["status", *self.fields], name=self.name).remove_sql(
                model, schema_editor, **kwargs
            )
        return super().remove_sql(model, schema_editor, **kwargs)


class JSONText(models.JSONField):
    """JSON stored as the exact text ``loom.codec`` wrote: a ``json`` column on PostgreSQL (kept
    verbatim, where ``jsonb`` would turn ``1e16`` into an integer and refuse ``\\u0000``), plain
    text on SQLite and MariaDB (whose JSON check refuses a lone surrogate's escape). Values
    round-trip exactly as Django's ImmediateBackend returns them, on every database. JSON lookups
    (``args__0``) are not supported on these columns."""

    def db_type(self, connection):
        return {"postgresql": "json", "mysql": "longtext"}.get(connection.vendor, "text")

    def db_check(self, connection):
        return None  # the codec wrote it; a database's JSON check would refuse some of it

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        if hasattr(value, "as_sql"):
            return value
        text = codec.dumps(value)
        if connection.vendor == "postgresql":
            from psycopg.types.json import Json

            return Json(text, dumps=str)
        return text

    def from_db_value(self, value, expression, connection):
        if isinstance(value, (str, bytes)):
            return codec.loads(value)
        return value  # None, or already decoded by the driver


class TaskRecordQuerySet(models.QuerySet):
    def ready(self):
        return self.filter(status=Status.READY)

    def running(self):
        return self.filter(status=Status.RUNNING)

    def finished(self):
        return self.filter(status__in=FINAL_STATUSES)

    def failed(self):
        return self.filter(status=Status.FAILED)


class TaskRecord(models.Model):
    """One enqueued task. Field names follow Django's ``TaskResult`` where the two overlap."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    task_path = models.CharField(max_length=255)
    backend = models.CharField(max_length=100, default="default")
    queue_name = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(default=0)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.READY)
    args = JSONText(default=list)
    kwargs = JSONText(default=dict)
    run_after = models.DateTimeField(null=True, blank=True)
    # When the row may next be claimed: run_after, enqueued_at, or the retry time.
    available_at = models.DateTimeField()
    enqueued_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    # Soft limit (seconds): the run is interrupted where its executor allows; hard limit: the
    # process running it is killed. Both null: no limit.
    timeout = models.FloatField(null=True, blank=True)
    hard_timeout = models.FloatField(null=True, blank=True)
    worker_ids = models.JSONField(default=list)
    errors = JSONText(default=list)
    return_value = JSONText(null=True, blank=True)
    # The worker holding the claim and until when; both empty unless RUNNING.
    claimed_by = models.CharField(max_length=100, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set by a cancel of a RUNNING task; the worker stops the run and records CANCELLED.
    cancel_requested = models.BooleanField(default=False)
    # Progress reported by the task itself (loom.progress); throttled writes.
    progress_current = models.FloatField(null=True, blank=True)
    progress_total = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=255, blank=True, default="")
    progress_at = models.DateTimeField(null=True, blank=True)
    # W3C trace context of the enqueue (loom.telemetry, when OpenTelemetry is on), so the run's
    # span joins the request's trace.
    trace_context = JSONText(null=True, blank=True)
    # Flow control (loom.task.Task options; docs/flow-control.md).
    unique_key = models.CharField(max_length=200, null=True, blank=True)
    unique_window = models.FloatField(null=True, blank=True)
    unique_replace = models.BooleanField(default=False, db_default=False)
    # When a finished task stops counting for unique_key (finished_at + unique_window).
    unique_until = models.DateTimeField(null=True, blank=True)
    # "backend|path|key" while the row holds its unique key: waiting, running (not for replace),
    # or finished within its window. A unique index on it is what makes enqueue unique: the
    # database refuses a second holder, whoever races (see Store.insert_unique).
    unique_slot = models.GeneratedField(
        expression=models.Case(
            models.When(
                models.Q(unique_key__isnull=False)
                & (models.Q(status="READY") | models.Q(status="RUNNING", unique_replace=False)
                   | models.Q(unique_until__isnull=False)),
                then=Concat("backend", models.Value("|"), "task_path", models.Value("|"), "unique_key"),
            ),
            default=None,
        ),
        output_field=models.CharField(max_length=560, null=True),
        db_persist=True,
    )
    concurrency_key = models.CharField(max_length=200, null=True, blank=True)
    concurrency_limit = models.PositiveIntegerField(null=True, blank=True)
    fair_key = models.CharField(max_length=200, null=True, blank=True)
    # The workflow step (WorkflowNode) this task runs, if any (loom.workflow).
    workflow_step = models.UUIDField(null=True, blank=True)
    # The task's option atomic (loom.task.Task): its body and its success commit together.
    atomic = models.BooleanField(default=False, db_default=False)

    objects = TaskRecordQuerySet.as_manager()

    class Meta:
        db_table = "loom_task"
        verbose_name = "task"
        indexes = [
            # Matches the claim's ORDER BY exactly, so a claim reads the first rows of the index
            # in order and stops at LIMIT, however long the queue (queue_name is a filter).
            # Only tasks without flow control: the claim of everything else takes its own path
            # (loom.store.flow) and its own index, so the common claim pays nothing for it.
            ClaimIndex(
                fields=["-priority", "available_at", "id"],
                name="loom_task_claim",
                condition=models.Q(status="READY", concurrency_key__isnull=True, fair_key__isnull=True),
            ),
            ClaimIndex(
                fields=["queue_name", "-priority", "available_at", "id"],
                name="loom_task_flow",
                condition=models.Q(status="READY") & (models.Q(concurrency_key__isnull=False)
                                                      | models.Q(fair_key__isnull=False)),
            ),
            models.Index(fields=["status", "lease_expires_at"], name="loom_task_lease"),
            models.Index(fields=["status", "finished_at"], name="loom_task_finished"),
        ]
        constraints = [models.UniqueConstraint(fields=["unique_slot"], name="loom_task_unique")]

    def __str__(self) -> str:
        return f"{self.task_path} [{self.status}] {self.id}"


class WorkerRecord(models.Model):
    """A worker process that registered itself: what tools show as "workers"."""

    id = models.CharField(primary_key=True, max_length=100)
    hostname = models.CharField(max_length=255)
    pid = models.IntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    tasks_done = models.PositiveBigIntegerField(default=0)

    class Meta:
        db_table = "loom_worker"
        verbose_name = "worker"

    def __str__(self) -> str:
        return self.id


class QueueState(models.Model):
    """What operators set on a queue at run time: paused, and limits that override
    OPTIONS["QUEUE_LIMITS"] (``limits``: {"concurrency": N | None, "rate": "N/m" | None}; a key
    that is absent takes the OPTIONS default, None means no limit). The rate limiter's state is
    ``RateStart``."""

    backend = models.CharField(max_length=100, default="default")
    name = models.CharField(max_length=100)
    paused = models.BooleanField(default=False)
    limits = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "loom_queue"
        verbose_name = "queue"
        constraints = [models.UniqueConstraint(fields=["backend", "name"], name="loom_queue_once")]

    def __str__(self) -> str:
        return f"{self.backend}: {self.name}"


class RateStart(models.Model):
    """One task start in a rate-limited queue, kept for one rate period: the flow claim counts
    the starts of the last period to admit at most N in any window (a sliding log), then drops
    the older ones, so the table holds at most N rows per queue."""

    backend = models.CharField(max_length=100)
    queue = models.CharField(max_length=100)
    started_at = models.DateTimeField()

    class Meta:
        db_table = "loom_rate_start"
        indexes = [models.Index(fields=["backend", "queue", "started_at"], name="loom_rate_start_window")]


class LeaderLease(models.Model):
    """One row per cluster-wide role (e.g. "maintenance"): who holds it and until when."""

    name = models.CharField(primary_key=True, max_length=50)
    holder = models.CharField(max_length=100)
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "loom_leader"
        verbose_name = "leader lease"


class PeriodicTick(models.Model):
    """Each tick of a periodic schedule that was enqueued; the unique key makes it exactly once."""

    schedule = models.CharField(max_length=200)
    tick_at = models.DateTimeField()
    task_id = models.CharField(max_length=36)

    class Meta:
        db_table = "loom_periodic_tick"
        constraints = [models.UniqueConstraint(fields=["schedule", "tick_at"], name="loom_tick_once")]


class Workflow(models.Model):
    """A workflow (loom.workflow): its steps are ``WorkflowNode`` rows; its state moves in the
    same transactions that record its steps' outcomes."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    backend = models.CharField(max_length=100, default="default")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    result = JSONText(null=True, blank=True)

    class Meta:
        db_table = "loom_workflow"

    def __str__(self) -> str:
        return f"workflow {self.id} [{self.status}]"


class WorkflowNode(models.Model):
    """One node of a workflow's tree: a call (one task) or a chain, group or chord of nodes.

    ``number`` is the node's place in the tree's pre-order, ``parent`` the parent's number,
    ``position`` its place among its siblings. A call's task exists from when the node starts
    (``task_id``); a group counts its members still to succeed in ``remaining``."""

    KINDS = ("call", "chain", "group", "chord")
    PENDING = "PENDING"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="nodes", db_constraint=False)
    number = models.PositiveIntegerField()
    parent = models.IntegerField(null=True, blank=True)
    position = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=5)
    task_path = models.CharField(max_length=200, blank=True, default="")
    options = JSONText(default=dict, blank=True)
    args = JSONText(default=list, blank=True)
    kwargs = JSONText(default=dict, blank=True)
    status = models.CharField(max_length=10, default="PENDING")
    task_id = models.UUIDField(null=True, blank=True, db_index=True)
    result = JSONText(null=True, blank=True)
    remaining = models.IntegerField(default=0)

    class Meta:
        db_table = "loom_workflow_node"
        constraints = [models.UniqueConstraint(fields=["workflow", "number"], name="loom_workflow_node_once")]
        indexes = [models.Index(fields=["workflow", "parent", "position"], name="loom_workflow_children"),
                   models.Index(fields=["status", "kind"], name="loom_workflow_node_status")]


class StepRecord(models.Model):
    """A durable step's result (``loom.step``): a run of the task that finds it skips the step."""

    task_id = models.UUIDField()
    name = models.CharField(max_length=200)
    result = JSONText(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "loom_step"
        constraints = [models.UniqueConstraint(fields=["task_id", "name"], name="loom_step_once")]
        indexes = [models.Index(fields=["created_at"], name="loom_step_created")]
