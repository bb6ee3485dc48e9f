"""Durable steps: ``loom.step(name, fn, *args, **kwargs)`` inside a running task.

The first run of a step calls ``fn`` and stores its JSON result (``loom_step``, one INSERT, one
commit) before returning it; any later run of the same task (a retry, or a rescue after its
worker died) gets the stored result back without calling ``fn``. So a task of ten steps killed
after the sixth resumes at the seventh. The result comes back as JSON gives it (a tuple as a
list), the same on the first run as on later ones.

The one window no database can close: the process dies after ``fn`` had an effect outside the
database (an e-mail sent, a card charged) and before the record commits; that step runs again.
Make such steps idempotent on the other side (an idempotency key). Inside an atomic task the
records commit with the task's transaction, so a rolled-back run keeps none of them.

Names are per task: the same name twice in one task returns the first result. Outside a task
(a test calling the function directly) ``fn`` simply runs. Records go when the Pruner prunes
finished tasks of that age (OPTIONS["RETENTION"]).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from django.db import connections
from django.utils import timezone

from loom import codec

T = TypeVar("T")

# Steps already recorded for the task running in this context: loaded once per run.
_recorded: contextvars.ContextVar[tuple[str, dict[str, Any]] | None] = contextvars.ContextVar(
    "loom_steps", default=None)


def _alias(backend: str) -> str:
    from loom.compat import task_backends

    store = getattr(task_backends[backend], "store", None)
    return store.alias if store is not None else "default"


def _record(alias: str, task_id: str, name: str, value: Any) -> bool:
    """One INSERT, committed on its own (or with the caller's transaction); False if the step
    was recorded already. Raw SQL: the ORM's create() would add a savepoint round trip."""
    from loom.models import StepRecord

    connection = connections[alias]
    field = StepRecord._meta.get_field("task_id")
    params = [field.get_db_prep_value(task_id, connection), name, codec.dumps(value),
              connection.ops.adapt_datetimefield_value(timezone.now())]
    verb, tail = (("INSERT IGNORE", "") if connection.vendor == "mysql"
                  else ("INSERT", " ON CONFLICT (task_id, name) DO NOTHING"))
    with connection.cursor() as cursor:
        cursor.execute(f"{verb} INTO loom_step (task_id, name, result, created_at) VALUES (%s, %s, %s, %s){tail}",
                       params)
        return cursor.rowcount == 1


def step(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Any:
    """Run ``fn(*args, **kwargs)`` once per task, durably: see the module docstring."""
    from loom.models import StepRecord
    from loom.progress import _current_task, report

    if not isinstance(name, str) or not name or len(name) > 200:
        raise ValueError(f"A step name is a non-empty string of at most 200 characters, got {name!r}.")
    current = _current_task()
    if current is None:
        return fn(*args, **kwargs)
    task_id, backend = current
    alias = _alias(backend)
    known = _recorded.get()
    if known is None or known[0] != task_id:
        stored = StepRecord.objects.using(alias).filter(task_id=task_id).values_list("name", "result")
        known = (task_id, dict(stored))
        _recorded.set(known)
    steps = known[1]
    if name in steps:
        return steps[name]
    value = fn(*args, **kwargs)
    try:
        encoded, _ = codec.normalize(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"Step {name!r} returned a value that cannot be stored as JSON ({exc}); "
                        "return JSON-serialisable values (e.g. a model's pk, not the model).") from None
    if not _record(alias, task_id, name, encoded):  # recorded meanwhile (two runs at once): the first counts
        encoded = StepRecord.objects.using(alias).filter(task_id=task_id, name=name).values_list(
            "result", flat=True)[0]
    steps[name] = encoded
    report(len(steps), None, f"step {name} done", task_id=task_id, backend=backend)
    return encoded
