"""Pruner: deletes finished results older than OPTIONS["RETENTION"] seconds (default 7 days);
on PostgreSQL by dropping archive tables (``loom.store.archive``), at most one slice later.

Nothing else in loom deletes a task (the archiver moves rows, whole). Also forgets workers,
periodic ticks, durable steps and finished workflows older than the retention. Runs on the
maintenance leader only, every ``interval`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from loom.conf import Options
from loom.store import Store

logger = logging.getLogger("loom.worker")

# Seconds between two prune passes.
DEFAULT_INTERVAL = 3600.0


class Pruner:
    name = "pruner"

    def __init__(self, store: Store, config: Options, clock: Callable[[], datetime],
                 interval: float = DEFAULT_INTERVAL) -> None:
        self.store = store
        self.retention = config.retention
        self.clock = clock
        self.interval = interval

    def run_once(self) -> float:
        cutoff = self.clock() - timedelta(seconds=self.retention)
        tasks = self.store.prune(cutoff, exact=False)
        self.store.prune_workers(cutoff)
        self.store.prune_ticks(cutoff)
        self.store.prune_workflows(cutoff)
        if tasks:
            logger.info("loom pruned %d finished tasks older than %s", tasks, cutoff)
        return self.interval
