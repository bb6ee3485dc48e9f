"""Scheduler: enqueues periodic tasks declared in OPTIONS["PERIODIC"], each tick exactly once.

    "PERIODIC": {"nightly-report": {"task": "reports.tasks.nightly", "cron": "0 3 * * *",
                                    "args": [], "kwargs": {}}}

On the maintenance leader, every second, each schedule's latest tick at or before now is
enqueued unless it already was: the tick row (unique on schedule + time) and the task are
inserted in one transaction, so even two leaders at once (a lease handover) enqueue a tick once.
Ticks missed while no leader ran are not replayed one by one: the latest runs once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.utils.module_loading import import_string

from loom.compat import Task
from loom.store import Store

logger = logging.getLogger("loom.worker")

# Seconds between two looks at the schedules.
DEFAULT_INTERVAL = 1.0


class Scheduler:
    name = "scheduler"

    def __init__(self, store: Store, backend, clock: Callable[[], datetime], interval: float = DEFAULT_INTERVAL) -> None:
        self.store = store
        self.backend = backend
        self.schedules = backend.config.periodic
        self.clock = clock
        self.interval = interval
        self.enqueued = 0

    def run_once(self) -> float:
        if not self.schedules:
            return 3600.0
        # Imported here, not at start-up: croniter's import runs `file` on the interpreter
        # (platform.architecture()), 30-40 ms of every worker's start, schedules or not.
        from croniter import croniter

        now = self.clock()
        for name, spec in self.schedules.items():
            tick = croniter(spec["cron"], now).get_prev(datetime)
            try:
                task = import_string(spec["task"])
                if not isinstance(task, Task):
                    raise TypeError(f"{spec['task']!r} is not a django.tasks.Task")
            except (ImportError, TypeError) as exc:
                logger.error("loom periodic schedule %r cannot run: %s", name, exc)
                continue

            def enqueue(task=task, spec=spec) -> str:
                return self.backend.enqueue(task, spec.get("args", []), spec.get("kwargs", {})).id

            if self.store.enqueue_tick(name, tick, enqueue):
                self.enqueued += 1
                logger.info("loom periodic %r: enqueued the tick of %s", name, tick.isoformat())
        return self.interval
