"""Queues at run time: pause and resume them, limit them, and see how they stand.

    from loom import queues

    queues.pause("emails")                       # no worker anywhere claims from it within a second
    queues.resume("emails")
    queues.is_paused("emails")
    queues.set_limits("emails", concurrency=2, rate="50/m")   # None: no limit; omit: keep
    queues.reset_limits("emails")                # back to OPTIONS["QUEUE_LIMITS"]
    queues.overview()                            # [QueueInfo(name, paused, concurrency, rate, ...)]

The state lives in the database (``loom_queue``), so it holds for every worker process and host
and survives restarts; OPTIONS["QUEUE_LIMITS"] gives the defaults that ``set_limits`` overrides.
Running tasks of a paused queue finish; enqueue keeps accepting tasks. The dashboard and
``manage.py loom pause | resume | limit | status`` use these functions. What each limit
guarantees: docs/flow-control.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loom.conf import check_limits

__all__ = ["QueueInfo", "is_paused", "limits", "overview", "pause", "reset_limits", "resume", "set_limits"]

# "Leave this limit as it is" in set_limits (None means "no limit").
KEEP: Any = object()


@dataclass(frozen=True)
class QueueInfo:
    name: str
    paused: bool
    concurrency: int | None  # None: no limit
    rate: str | None  # "100/m", None: no limit
    overridden: bool  # the limits come from an operator, not OPTIONS


def _backend(backend: str) -> Any:
    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends

    found = task_backends[backend]
    if not isinstance(found, DatabaseBackend):
        raise TypeError(f"TASKS[{backend!r}] is not a loom DatabaseBackend; queue state needs one.")
    return found


def _known(backend: Any, queue: str) -> None:
    if backend.queues and queue not in backend.queues:
        raise ValueError(f"Queue {queue!r} is not in TASKS[{backend.alias!r}]['QUEUES'] "
                         f"({', '.join(sorted(backend.queues))}).")


def pause(queue: str, backend: str = "default") -> None:
    """Stop every worker from claiming tasks of ``queue`` (within a second); running ones finish."""
    found = _backend(backend)
    _known(found, queue)
    found.store.set_queue(found.alias, queue, paused=True)


def resume(queue: str, backend: str = "default") -> None:
    found = _backend(backend)
    _known(found, queue)
    found.store.set_queue(found.alias, queue, paused=False)


def is_paused(queue: str, backend: str = "default") -> bool:
    found = _backend(backend)
    state = found.store.queue_states(found.alias).get(queue)
    return bool(state and state.paused)


def set_limits(queue: str, *, concurrency: int | None = KEEP, rate: str | None = KEEP,
               backend: str = "default") -> None:
    """Override a queue's limits for every worker (None: no limit; not given: unchanged)."""
    found = _backend(backend)
    _known(found, queue)
    state = found.store.queue_states(found.alias).get(queue)
    overrides = dict(state.limits) if state else {}
    if concurrency is not KEEP:
        overrides["concurrency"] = concurrency
    if rate is not KEEP:
        overrides["rate"] = rate
    check_limits(overrides, f"the limits of queue {queue!r}")
    found.store.set_queue(found.alias, queue, limits=overrides)


def reset_limits(queue: str, backend: str = "default") -> None:
    """Forget what operators set: OPTIONS["QUEUE_LIMITS"] applies again."""
    found = _backend(backend)
    _known(found, queue)
    found.store.set_queue(found.alias, queue, limits={})


def limits(queue: str, backend: str = "default") -> dict[str, Any]:
    """The limits in force: {"concurrency": N | None, "rate": "N/m" | None}."""
    info = next((q for q in overview(backend) if q.name == queue), None)
    return {"concurrency": info.concurrency if info else None, "rate": info.rate if info else None}


def overview(backend: str = "default") -> list[QueueInfo]:
    """Every queue of the backend, and any other with state or limits: paused, limits in force.
    (How many tasks wait and run: ``loom.queries.queue_rows``.)"""
    found = _backend(backend)
    states = found.store.queue_states(found.alias)
    names = sorted(set(found.queues or ()) | set(states) | set(found.config.queue_limits))
    result = []
    for name in names:
        state = states.get(name)
        merged = {"concurrency": None, "rate": None, **found.config.queue_limits.get(name, {}),
                  **(state.limits if state else {})}
        result.append(QueueInfo(name=name, paused=bool(state and state.paused), concurrency=merged["concurrency"],
                                rate=merged["rate"], overridden=bool(state and state.limits)))
    return result
