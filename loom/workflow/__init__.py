"""Workflows: chains, groups and chords of tasks, stored in the database with the tasks.

    from loom.workflow import call, chain, group, chord, get_workflow

    wf = chain(call(fetch, url), call(parse), call(store)).enqueue()
    g = group(call(resize, 1), call(resize, 2)).enqueue()
    c = chord(group(call(count, "a"), call(count, "b")), call(total)).enqueue()
    get_workflow(wf.id).status        # READY | RUNNING | SUCCESSFUL | FAILED | CANCELLED

- ``call(task, *args, **kwargs)``: one task (any Django ``Task``, also from ``task.using(...)``);
- ``chain(a, b, c)``: one after the other; each later step gets the previous step's return
  value as its first argument;
- ``group(a, b, ...)``: all at once; its result is the list of its members' results, in order;
  inside a chain, every member gets the previous step's value;
- ``chord(group, callback)``: the group, then the callback with the list of its results.

They nest (a chain step may be a group or a chord). The next step is enqueued in the transaction
that records the previous step's success (``loom.workflow.engine``), so no crash loses a step or
makes one twice; a step that fails (after its retries) fails the workflow and the steps after it
never run (CANCELLED). ``enqueue()`` inside ``transaction.atomic()`` is atomic with the caller's
data, like a task's. Guarantees and examples: docs/workflows.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from loom.compat import InvalidTask
from loom.models import Status, Workflow, WorkflowNode, uuid7
from loom.workflow import engine

__all__ = ["Call", "Chain", "Chord", "Group", "StepInfo", "WorkflowRun", "call", "cancel_workflow", "chain",
           "chord", "get_workflow", "group"]


class Node:
    """A piece of a workflow, not yet stored."""

    def enqueue(self) -> WorkflowRun:
        """Store the workflow and start it, in the caller's transaction if there is one."""
        calls = list(self._calls())
        backend = calls[0].task.get_backend() if calls else None
        from loom.backends.database import DatabaseBackend

        if not isinstance(backend, DatabaseBackend):
            raise InvalidTask("A workflow needs at least one call, and its tasks must use a loom DatabaseBackend "
                              "(TASKS[...]['BACKEND'] = 'loom.backends.DatabaseBackend').")
        alias = backend.store.alias
        for c in calls:
            other = c.task.get_backend()
            if not isinstance(other, DatabaseBackend) or other.store.alias != alias:
                raise InvalidTask(f"Every step of a workflow must use a loom DatabaseBackend on the same database; "
                                  f"{c.task.module_path} uses {c.task.backend!r}.")
        now = timezone.now()
        rows: list[WorkflowNode] = []
        self._flatten(rows, None, 0, backend, {})
        with transaction.atomic(using=alias):
            workflow = engine.create(alias, backend.alias, rows, now)
            engine.start(alias, rows[0], engine.NO_INPUT, now)
        # As it stands now, without reading back the rows just written (a group may be large).
        started = set(WorkflowNode.objects.using(alias).filter(
            workflow_id=workflow.pk, kind="call", status=Status.RUNNING).values_list("number", flat=True))
        steps = [StepInfo(id=str(n.task_id), task_path=n.task_path, enqueued=n.number in started,
                          status=Status.READY if n.number in started else engine.PENDING)
                 for n in rows if n.kind == "call"]
        top = [n for n in rows if n.parent == 0] if rows[0].kind != "call" else [rows[0]]
        return WorkflowRun(id=str(workflow.pk), status=workflow.status, result=None, results=[None] * len(top),
                           tasks=steps, using=alias)

    def _calls(self) -> Sequence[Call]:
        raise NotImplementedError

    def _flatten(self, rows: list[WorkflowNode], parent: int | None, position: int, backend: Any,
                 checked: dict[int, Any]) -> None:
        raise NotImplementedError


class Call(Node):
    def __init__(self, task: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        from loom.compat import Task

        if not isinstance(task, Task):
            raise InvalidTask(f"call() takes a task (a function decorated with @task), got {task!r}.")
        if getattr(task, "unique_key", None) is not None:
            raise InvalidTask("A workflow step cannot have a unique_key: the workflow already runs each step "
                              "once. Drop unique_key from this step.")
        self.task, self.args, self.kwargs = task, list(args), dict(kwargs)

    def _calls(self) -> Sequence[Call]:
        return [self]

    def _flatten(self, rows: list[WorkflowNode], parent: int | None, position: int, backend: Any,
                 checked: dict[int, Any]) -> None:
        step_backend: Any = self.task.get_backend()
        args, kwargs = step_backend._encode_arguments(self.args, self.kwargs)
        spec = checked.get(id(self.task))
        if spec is None:  # once per task object: a group of 100,000 calls of one task checks it once
            step_backend.validate_task(self.task)
            spec = checked[id(self.task)] = engine.task_spec(self.task)
        rows.append(WorkflowNode(id=uuid7(), number=len(rows), parent=parent, position=position, kind="call",
                                 task_path=self.task.module_path, options=spec,
                                 args=args, kwargs=kwargs, status=engine.PENDING, task_id=uuid7()))


class _Many(Node):
    kind = ""

    def __init__(self, *steps: Node) -> None:
        for step in steps:
            if not isinstance(step, Node):
                raise InvalidTask(f"{self.kind}() takes call(...), chain(...), group(...) or chord(...) steps, "
                                  f"got {step!r}: wrap a task as call(task, *args).")
        self.steps = list(steps)

    def _calls(self) -> Sequence[Call]:
        return [c for step in self.steps for c in step._calls()]

    def _flatten(self, rows: list[WorkflowNode], parent: int | None, position: int, backend: Any,
                 checked: dict[int, Any]) -> None:
        number = len(rows)
        rows.append(WorkflowNode(id=uuid7(), number=number, parent=parent, position=position, kind=self.kind,
                                 status=engine.PENDING))
        for i, step in enumerate(self.steps):
            step._flatten(rows, number, i, backend, checked)


class Chain(_Many):
    kind = "chain"


class Group(_Many):
    kind = "group"


class Chord(_Many):
    kind = "chord"

    def __init__(self, header: Group, body: Node) -> None:
        if not isinstance(header, Group):
            raise InvalidTask(f"chord() takes a group(...) first, got {header!r}.")
        super().__init__(header, body)


def call(task: Any, *args: Any, **kwargs: Any) -> Call:
    return Call(task, args, kwargs)


def chain(*steps: Node) -> Chain:
    return Chain(*steps)


def group(*members: Node) -> Group:
    return Group(*members)


def chord(header: Group, callback: Node) -> Chord:
    return Chord(header, callback)


@dataclass(frozen=True)
class StepInfo:
    """One call of a workflow, in the order written: its task's id and where it stands
    (PENDING before it starts; a task's status after; CANCELLED if it never will)."""

    id: str
    task_path: str
    status: str
    return_value: Any = None
    enqueued: bool = False  # its task exists (a step cancelled before it started has none)


@dataclass(frozen=True)
class WorkflowRun:
    """A workflow as stored: ``result`` is the whole workflow's (a chain's last step's, a group's
    list, a chord's callback's), ``results`` the top-level steps' in order (None until each ends)."""

    id: str
    status: str
    result: Any
    results: list[Any]
    tasks: list[StepInfo] = field(default_factory=list)
    using: str = "default"

    def refresh(self) -> WorkflowRun:
        return get_workflow(self.id, using=self.using)

    def cancel(self) -> WorkflowRun:
        cancel_workflow(self.id, using=self.using)
        return self.refresh()


def _alias(using: str | None) -> str:
    if using is not None:
        return using
    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends

    backend = task_backends["default"]
    return backend.store.alias if isinstance(backend, DatabaseBackend) else "default"


def get_workflow(workflow_id: str, using: str | None = None) -> WorkflowRun:
    """The workflow's state now (``Workflow.DoesNotExist`` if there is none with that id)."""
    from loom.models import TaskRecord

    alias = _alias(using)
    workflow = Workflow.objects.using(alias).get(pk=workflow_id)
    nodes = list(WorkflowNode.objects.using(alias).filter(workflow_id=workflow.pk).order_by("number"))
    calls = [n for n in nodes if n.kind == "call"]
    tasks = {str(t["id"]): t for t in TaskRecord.objects.using(alias).filter(
        pk__in=[n.task_id for n in calls if n.status != engine.PENDING]).values("id", "status", "return_value")}
    steps = []
    for n in calls:
        row = tasks.get(str(n.task_id))
        steps.append(StepInfo(id=str(n.task_id), task_path=n.task_path, status=row["status"] if row else n.status,
                              return_value=row["return_value"] if row else None, enqueued=row is not None))
    root = nodes[0]
    top = [n for n in nodes if n.parent == root.number] if root.kind != "call" else [root]
    return WorkflowRun(id=str(workflow.pk), status=workflow.status, result=workflow.result,
                       results=[n.result for n in top], tasks=steps, using=alias)


def cancel_workflow(workflow_id: str, using: str | None = None) -> None:
    """Cancel a running workflow: steps not started never run, waiting tasks are cancelled,
    running ones are asked to stop (their workers record them CANCELLED)."""
    alias = _alias(using)
    with transaction.atomic(using=alias):
        engine.end(alias, workflow_id, Status.CANCELLED, timezone.now())
