"""Backend options: one frozen dataclass built from ``TASKS[alias]["OPTIONS"]``.

Every option has a documented default here and nowhere else. Options are validated by the system
check in ``loom.checks`` (``manage.py check``) and again when a backend is built, so a typo is a
clear error instead of a silently ignored key.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

# Database alias that holds the task table; enqueue is atomic with this alias's transactions.
DEFAULT_DATABASE = "default"
# PostgreSQL alias a worker LISTENs on; None: DATABASE itself, unless that one goes through a
# transaction pooler (DISABLE_SERVER_SIDE_CURSORS), where the worker polls (see loom.pooler).
DEFAULT_LISTEN_DATABASE = None
# Seconds a claimed task stays leased to its worker without a heartbeat before it may be rescued.
DEFAULT_LEASE_SECONDS = 30.0
# How many times a task runs before a failure is final (1 = no retries, Django's default).
DEFAULT_MAX_ATTEMPTS = 1
# Seconds an idle worker waits between looks at the table when no wake-up signal arrives.
DEFAULT_POLL_INTERVAL = 1.0
# Most rows claimed by one statement.
DEFAULT_BATCH_SIZE = 100
# Default soft time limit per run in seconds (None: none); tasks override with @task(timeout=...).
DEFAULT_TIMEOUT = None
# Extra runs a task gets when its worker dies under it (SIGKILL, OOM, crash), beyond max_attempts:
# losing a worker is rarely the task's fault, but a task that kills every worker must end.
DEFAULT_LOST_RETRIES = 5
# Seconds past the soft limit after which the process running the task is killed.
DEFAULT_HARD_TIMEOUT_GRACE = 10.0
# Seconds between two progress writes of one task (reports in between are coalesced); None takes
# loom.progress.DEFAULT_INTERVAL (0.5).
DEFAULT_PROGRESS_INTERVAL = None
# Seconds a finished task's result is kept before the pruner deletes it (7 days).
DEFAULT_RETENTION = 7 * 24 * 3600.0
# Seconds the completer waits to gather outcomes into one write.
DEFAULT_COMPLETE_DELAY = 0.002
# SQLite: switch the database file to WAL when a worker starts (readers stop waiting for writers).
DEFAULT_SQLITE_WAL = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    database: str = DEFAULT_DATABASE
    listen_database: str | None = DEFAULT_LISTEN_DATABASE
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    poll_interval: float = DEFAULT_POLL_INTERVAL
    batch_size: int = DEFAULT_BATCH_SIZE
    complete_delay: float = DEFAULT_COMPLETE_DELAY
    timeout: float | None = DEFAULT_TIMEOUT
    hard_timeout_grace: float = DEFAULT_HARD_TIMEOUT_GRACE
    lost_retries: int = DEFAULT_LOST_RETRIES
    retention: float = DEFAULT_RETENTION
    progress_interval: float | None = DEFAULT_PROGRESS_INTERVAL
    sqlite_wal: bool = DEFAULT_SQLITE_WAL
    # Worker layout: {"processes": N, "threads": N, "executors": {"queue": {"processes": N} | {"threads": N}}}
    worker: dict = field(default_factory=dict)
    # Periodic tasks: {"name": {"task": "dotted.path", "cron": "*/5 * * * *", "args": [], "kwargs": {}}}
    periodic: dict = field(default_factory=dict)
    # Per-queue limits, defaults that `manage.py loom limit` overrides at run time:
    # {"emails": {"concurrency": 5, "rate": "100/m"}} (docs/flow-control.md).
    queue_limits: dict = field(default_factory=dict)

    @classmethod
    def from_settings(cls, options: Mapping[str, Any]) -> "Options":
        """Build from the upper-case OPTIONS mapping; raise ValueError naming a bad key."""
        known = {f.name.upper(): f.name for f in fields(cls)}
        values = {}
        for key, value in dict(options).items():
            if key not in known:
                raise ValueError(
                    f"Unknown loom OPTIONS key {key!r}; expected one of {', '.join(sorted(known))}."
                )
            values[known[key]] = value
        opts = cls(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        if not isinstance(self.database, str) or not self.database:
            raise ValueError("OPTIONS['DATABASE'] must be a database alias (a non-empty string).")
        if self.listen_database is not None and (not isinstance(self.listen_database, str) or not self.listen_database):
            raise ValueError("OPTIONS['LISTEN_DATABASE'] must be a database alias (a non-empty string) or None.")
        if self.timeout is not None and (not isinstance(self.timeout, (int, float)) or self.timeout <= 0):
            raise ValueError(f"OPTIONS['TIMEOUT'] must be a number of seconds > 0 or None, got {self.timeout!r}.")
        if self.progress_interval is not None and (
                not isinstance(self.progress_interval, (int, float)) or self.progress_interval < 0):
            raise ValueError(f"OPTIONS['PROGRESS_INTERVAL'] must be a number >= 0, got {self.progress_interval!r}.")
        if not isinstance(self.sqlite_wal, bool):
            raise ValueError(f"OPTIONS['SQLITE_WAL'] must be True or False, got {self.sqlite_wal!r}.")
        if not isinstance(self.queue_limits, dict):
            raise ValueError("OPTIONS['QUEUE_LIMITS'] must be a dict: {'queue': {'concurrency': 5, 'rate': '100/m'}}.")
        for queue, spec in self.queue_limits.items():
            check_limits(spec, f"OPTIONS['QUEUE_LIMITS'][{queue!r}]")
        if not isinstance(self.worker, dict) or not isinstance(self.periodic, dict):
            raise ValueError("OPTIONS['WORKER'] and OPTIONS['PERIODIC'] must be dicts.")
        for name, spec in self.periodic.items():
            if not isinstance(spec, dict) or not {"task", "cron"} <= set(spec):
                raise ValueError(f"OPTIONS['PERIODIC'][{name!r}] needs 'task' (dotted path) and 'cron'.")
            from croniter import croniter

            if not croniter.is_valid(spec["cron"]):
                raise ValueError(f"OPTIONS['PERIODIC'][{name!r}]['cron'] is not a valid cron expression: "
                                 f"{spec['cron']!r}.")
        for name in ("lease_seconds", "poll_interval", "complete_delay", "hard_timeout_grace", "retention"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"OPTIONS[{name.upper()!r}] must be a number >= 0, got {value!r}.")
        for name in ("max_attempts", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"OPTIONS[{name.upper()!r}] must be an integer >= 1, got {value!r}.")
        if self.lease_seconds < 1:
            raise ValueError("OPTIONS['LEASE_SECONDS'] must be at least 1 second.")


# Seconds in each rate unit ("N/s", "N/m", "N/h").
RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str) -> tuple[int, float]:
    """``"100/m"`` -> (100, 60.0): at most 100 task starts in any 60 seconds."""
    count, _, unit = str(rate).strip().partition("/")
    if not count.strip().isdigit() or int(count) < 1 or unit.strip() not in RATE_UNITS:
        raise ValueError(f"A rate is N/s, N/m or N/h with N >= 1 (e.g. '100/m'), got {rate!r}.")
    return int(count), RATE_UNITS[unit.strip()]


def check_limits(spec: Any, where: str) -> None:
    """A queue's limits: {"concurrency": N >= 1 or None, "rate": "N/m" or None}; ValueError naming them."""
    if not isinstance(spec, dict) or not set(spec) <= {"concurrency", "rate"}:
        raise ValueError(f"{where} must be a dict with 'concurrency' and/or 'rate', got {spec!r}.")
    concurrency = spec.get("concurrency")
    if concurrency is not None and (not isinstance(concurrency, int) or isinstance(concurrency, bool)
                                    or concurrency < 1):
        raise ValueError(f"{where}['concurrency'] must be a whole number >= 1 or None, got {concurrency!r}.")
    if spec.get("rate") is not None:
        try:
            parse_rate(spec["rate"])
        except ValueError as exc:
            raise ValueError(f"{where}['rate']: {exc}") from None
