"""Rescuer: ends the attempt of tasks whose lease expired (their worker died or was cut off).

Each goes back to READY with the attempt counted and a ``WorkerLost`` error recorded, or to
FAILED once it used all its attempts. Runs on the maintenance leader only, every
``interval`` seconds (a supervisor rescues its own dead children at once; this catches the
rest: a lost machine, a killed supervisor). Each pass also moves on the workflows whose step
ended outside a worker's Completer (``loom.workflow.engine.reconcile``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from loom.store import Store

logger = logging.getLogger("loom.worker")

# Seconds between two rescue passes.
DEFAULT_INTERVAL = 5.0
LEASE_EXPIRED = ("The task's lease expired while it ran: its worker stopped renewing it "
                 "(killed, crashed, or cut off from the database).")


class Rescuer:
    name = "rescuer"

    def __init__(self, store: Store, clock: Callable[[], datetime], interval: float = DEFAULT_INTERVAL,
                 extra_attempts: int = 0) -> None:
        self.store = store
        self.extra_attempts = extra_attempts
        self.clock = clock
        self.interval = interval
        self.rescued = 0

    def run_once(self) -> float:
        ids = self.store.rescue(self.clock(), expired=True, error_class="loom.exceptions.WorkerLost",
                                error_text=f"loom.exceptions.WorkerLost: {LEASE_EXPIRED}\n",
                                extra_attempts=self.extra_attempts)
        if ids:
            logger.warning("loom rescued %d tasks whose lease expired", len(ids))
        self.rescued += len(ids)
        from loom.workflow import engine

        engine.reconcile(self.store.alias)  # steps that ended here, or by an operator's hand
        return self.interval
