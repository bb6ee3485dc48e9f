"""Archiver: moves finished tasks out of ``loom_task`` into archive tables (PostgreSQL only).

Why and how: ``loom.store.archive``. Runs on the maintenance leader every ``interval`` seconds,
for at most ``budget`` seconds a pass; when a pass ends with rows still to move (a backlog after an
upgrade, or a burst) the next one starts at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.db import DatabaseError

from loom import databases
from loom.conf import Options
from loom.store import Store
from loom.store.archive import ARCHIVE_AFTER, slice_seconds

logger = logging.getLogger("loom.worker")

# Seconds between two passes.
DEFAULT_INTERVAL = 10.0
# Seconds of moving per pass: the leader's other services wait meanwhile.
DEFAULT_BUDGET = 2.0


# PostgreSQL's SQLSTATE for "permission denied": the database user may not CREATE tables (on
# PostgreSQL 15 and later only the database's owner may in the public schema, unless granted).
INSUFFICIENT_PRIVILEGE = "42501"
# Seconds before trying again after a permission error (an operator may grant it meanwhile).
DENIED_RETRY = 3600.0
NO_PRIVILEGE = ("loom cannot create archive tables: the database user (%s) may not create tables here. "
                "Finished tasks stay in loom_task and the pruner deletes them in batches instead of "
                "dropping tables. To archive, GRANT CREATE ON SCHEMA to that user (or run the worker "
                "as the schema's owner). Trying again in %.0f s.")


class Archiver:
    name = "archiver"

    def __init__(self, store: Store, config: Options, clock: Callable[[], datetime],
                 interval: float = DEFAULT_INTERVAL, budget: float = DEFAULT_BUDGET,
                 after: float = ARCHIVE_AFTER) -> None:
        self.store = store
        self.seconds = slice_seconds(config.retention)
        self.clock = clock
        self.interval = interval
        self.budget = budget
        self.after = after

    def run_once(self) -> float:
        if not self.store.archives:
            return 3600.0
        began = self.clock()
        try:
            moved = self.store.archive(began - timedelta(seconds=self.after), self.seconds, budget=self.budget)
        except DatabaseError as exc:  # a lock timeout, a lost connection: finished rows can wait
            if getattr(exc.__cause__, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
                logger.warning(NO_PRIVILEGE, getattr(self.store.connection, "settings_dict", {}).get("USER") or "it",
                               DENIED_RETRY)
                return DENIED_RETRY
            logger.warning("loom could not archive finished tasks now (%s); trying again in %.0f s",
                           str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                           self.interval)
            databases.close_broken()
            return self.interval
        if moved:
            logger.debug("loom archived %d finished tasks", moved)
        spent = (self.clock() - began).total_seconds()
        return 0.0 if spent >= self.budget else self.interval
