"""How a workflow moves: start a node, finish a node, end a workflow. Always inside a transaction.

Every function here runs in the caller's transaction on one database alias: ``enqueue`` (the
user's), the Completer's when it writes a step's outcome, the task thread's for an atomic step,
or the Rescuer's when it reconciles. That is the whole correctness argument: the next step is
created in the transaction that records the previous step's success, so a crash anywhere either
keeps both or neither. A group counts its members still to succeed with one ``UPDATE ... SET
remaining = remaining - 1``; the database serialises those on the group's row, and the member
whose update reaches zero (there is exactly one) starts what follows.

A call node's task id is chosen when the node is created, so starting a group of 100,000 calls is
one bulk INSERT of tasks and one UPDATE of the nodes, not a write per member.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from loom import codec
from loom.models import Status, Workflow, WorkflowNode

RUNNING, PENDING = Status.RUNNING.value, WorkflowNode.PENDING
FINAL = (Status.SUCCESSFUL.value, Status.FAILED.value, Status.CANCELLED.value)
# "No input": the first step of a workflow gets no extra argument.
NO_INPUT: Any = object()


def task_spec(task: Any) -> dict[str, Any]:
    """What rebuilds a step's Task when it starts (possibly in a worker, much later): Django's
    overrides and loom's options, as JSON (exception classes as dotted paths)."""
    from loom.task import OPTIONS

    spec: dict[str, Any] = {"priority": task.priority, "queue_name": task.queue_name, "backend": task.backend}
    for name in OPTIONS:
        if hasattr(task, name):
            value = getattr(task, name)
            if name == "retry_on":
                value = [f"{c.__module__}.{c.__qualname__}" for c in value]
            spec[name] = value
    return spec


def task_from(path: str, spec: dict[str, Any]) -> Any:
    task = import_string(path)
    options = dict(spec)
    if "retry_on" in options:
        options["retry_on"] = tuple(import_string(p) for p in options["retry_on"])
    django_only = {k: options.pop(k) for k in ("priority", "queue_name", "backend") if k in options}
    from loom.task import Task

    if isinstance(task, Task):
        changes = {k: v for k, v in options.items() if getattr(task, k) != v}
        return task.using(**django_only, **changes)
    return task.using(**django_only)


def _nodes(alias: str) -> Any:
    return WorkflowNode.objects.using(alias)


def _children(alias: str, node: WorkflowNode) -> list[WorkflowNode]:
    return list(_nodes(alias).filter(workflow_id=node.workflow_id, parent=node.number).order_by("position"))


def start(alias: str, node: WorkflowNode, value: Any = NO_INPUT, now: dt.datetime | None = None) -> None:
    """Start ``node``: enqueue its task(s). ``value``: what the previous step returned, passed
    as the first argument of each call started (a chord's callback: the group's results)."""
    now = now or timezone.now()
    if node.kind == "call":
        _start_calls(alias, [node], value, now)
        return
    children = _children(alias, node)
    if node.kind == "group":
        _nodes(alias).filter(pk=node.pk).update(status=RUNNING, remaining=len(children))
        if not children:
            finish(alias, node, Status.SUCCESSFUL, "[]", now)
            return
        calls = [c for c in children if c.kind == "call"]
        _start_calls(alias, calls, value, now)
        for child in children:
            if child.kind != "call":
                start(alias, child, value, now)
        return
    _nodes(alias).filter(pk=node.pk).update(status=RUNNING)
    if not children:  # an empty chain returns what it was given
        finish(alias, node, Status.SUCCESSFUL, codec.dumps(None if value is NO_INPUT else value), now)
        return
    start(alias, children[0], value, now)  # a chain's first step, or a chord's group


def _start_calls(alias: str, calls: Sequence[WorkflowNode], value: Any, now: dt.datetime) -> None:
    """Enqueue the calls' tasks, with the ids their nodes hold, in one INSERT per task kind."""
    from loom.store import Store

    if not calls:
        return
    by_task: dict[tuple[str, str], list[WorkflowNode]] = {}
    for node in calls:
        by_task.setdefault((node.task_path, codec.dumps(node.options)), []).append(node)
    records = []
    for (path, _), nodes in by_task.items():
        task = task_from(path, nodes[0].options)
        backend = task.get_backend()
        first = [] if value is NO_INPUT else [value]
        built = backend._build(task, [([*first, *n.args], n.kwargs) for n in nodes], now)
        records += [replace(record, id=n.task_id, workflow_step=n.id) for record, n in zip(built, nodes, strict=True)]
    Store(alias).insert(records)
    _nodes(alias).filter(pk__in=[n.pk for n in calls]).update(status=RUNNING)


def finish(alias: str, node: WorkflowNode, status: str, result_json: str | None,
           now: dt.datetime | None = None) -> None:
    """``node`` ended (its task, or all of its members): record it and move the workflow on."""
    now = now or timezone.now()
    if not _nodes(alias).filter(pk=node.pk, status=RUNNING).update(status=status, result=_raw(result_json)):
        return  # already finished (or never started): nothing moves twice
    if status != Status.SUCCESSFUL:
        end(alias, node.workflow_id, Status.FAILED if status == Status.FAILED else Status.CANCELLED, now)
        return
    if node.parent is None:
        Workflow.objects.using(alias).filter(pk=node.workflow_id, status=RUNNING).update(
            status=Status.SUCCESSFUL, finished_at=now, result=_raw(result_json))
        return
    parent = _nodes(alias).get(workflow_id=node.workflow_id, number=node.parent)
    if parent.status != RUNNING:
        return
    result = codec.loads(result_json) if result_json is not None else None
    if parent.kind == "chain":
        following = _nodes(alias).filter(workflow_id=node.workflow_id, parent=parent.number,
                                         position=node.position + 1).first()
        if following is None:
            finish(alias, parent, Status.SUCCESSFUL, result_json, now)
        else:
            start(alias, following, result, now)
    elif parent.kind == "group":
        _nodes(alias).filter(pk=parent.pk).update(remaining=F("remaining") - 1)
        if _nodes(alias).filter(pk=parent.pk).values_list("remaining", flat=True)[0] == 0:
            results = list(_nodes(alias).filter(workflow_id=node.workflow_id, parent=parent.number)
                           .order_by("position").values_list("result", flat=True))
            finish(alias, parent, Status.SUCCESSFUL, codec.dumps(results), now)
    elif node.position == 0:  # a chord's group is done: its callback gets the results
        body = _nodes(alias).get(workflow_id=node.workflow_id, parent=parent.number, position=1)
        start(alias, body, result, now)
    else:
        finish(alias, parent, Status.SUCCESSFUL, result_json, now)


def _raw(result_json: str | None) -> Any:
    """A JSONText value from JSON text already encoded (saved verbatim)."""
    return None if result_json is None else codec.loads(result_json)


def end(alias: str, workflow_id: Any, status: str, now: dt.datetime) -> None:
    """End a workflow FAILED or CANCELLED: steps not started never will (CANCELLED), waiting
    tasks are cancelled, running ones are asked to stop."""
    from loom.store import Store

    if not Workflow.objects.using(alias).filter(pk=workflow_id, status=RUNNING).update(status=status, finished_at=now):
        return
    nodes = _nodes(alias).filter(workflow_id=workflow_id)
    nodes.filter(status=PENDING).update(status=Status.CANCELLED)
    nodes.filter(status=RUNNING).exclude(kind="call").update(status=status)
    running = list(nodes.filter(status=RUNNING, kind="call").values_list("task_id", flat=True))
    if running:
        Store(alias).cancel([str(t) for t in running], now)


def advance(alias: str, step_id: str, status: str, result_json: str | None) -> None:
    """A step's task ended with ``status`` (its final outcome was just written in this
    transaction): move its workflow on."""
    node = _nodes(alias).filter(pk=step_id).first()
    if node is not None and status in FINAL:
        finish(alias, node, status, result_json if status == Status.SUCCESSFUL else None)


def complete_step(store: Any, worker_id: str, outcome: Any) -> None:
    """Write a step's outcome and move its workflow on, in one transaction (the Completer's and
    ``loom.testing.run_tasks``' way for steps): the next step exists exactly when this one is
    recorded as done."""
    from django.db import transaction

    with transaction.atomic(using=store.alias):
        if store.complete_many(worker_id, [outcome]) == 1:
            advance(store.alias, outcome.workflow_step, outcome.status, outcome.return_value_json)


def reconcile(alias: str, limit: int = 500) -> int:
    """Move on workflows whose step ended outside the Completer: a task rescued to FAILED after
    its worker died too often, or cancelled by an operator. Run by the Rescuer."""
    from django.db import transaction

    from loom.models import TaskRecord

    stuck = list(_nodes(alias).filter(status=RUNNING, kind="call").filter(
        task_id__in=TaskRecord.objects.using(alias).filter(
            status__in=FINAL, workflow_step__isnull=False).values("id")).values_list("pk", "task_id")[:limit])
    for node_id, task_id in stuck:
        row = TaskRecord.objects.using(alias).filter(pk=task_id).values("status", "return_value").first()
        if row is None:
            continue
        with transaction.atomic(using=alias):
            node = _nodes(alias).select_for_update().filter(pk=node_id, status=RUNNING).first()
            if node is not None:
                value = row["return_value"]
                finish(alias, node, row["status"], None if row["status"] != Status.SUCCESSFUL else codec.dumps(value))
    return len(stuck)


def create(alias: str, backend: str, nodes: Iterable[WorkflowNode], now: dt.datetime) -> Workflow:
    workflow = Workflow.objects.using(alias).create(backend=backend, status=RUNNING, created_at=now)
    rows = []
    for node in nodes:
        node.workflow_id = workflow.pk
        rows.append(node)
    WorkflowNode.objects.using(alias).bulk_create(rows, batch_size=2000)
    return workflow
