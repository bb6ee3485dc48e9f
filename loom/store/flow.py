"""Flow control in the database: queue state (pause, limits) and the claim of flow-controlled work.

A mixin of ``Store``. Tasks with a concurrency key or a fair key, and every task of a queue with a
concurrency or rate limit, are claimed here (``claim_flow``), never by the plain claim, which thus
stays one statement over an index that holds none of them. The guarantees come from the database:

- **One flow claim at a time per backend**: the claim runs in one transaction that first locks
  the backend's row in ``loom_queue`` (named ``*``; on SQLite the write lock does the same). Every
  count it reads is therefore current and stays so until it commits: how many tasks of a key or
  a queue are RUNNING (counted from the rows themselves, never a counter that could drift), and
  how many tasks of a rate-limited queue started in the last period (``loom_rate_start``).
- **Limits**: a task is admitted while its key has fewer than its ``concurrency_limit`` running,
  its queue fewer than the queue's concurrency, and its queue fewer than N starts in the last
  rate period (a sliding window: never more than N in any window of the period, counted with a
  small margin, ``rate_window``, so that it also holds for the moments the tasks' code starts).
  Waiting tasks stay READY and spend no attempt.
- **Fair share**: candidates come ordered by priority, then by their rank within their
  (queue, priority, fair key) group, so each claim takes the first waiting task of every key
  before the second of any: a key with a long backlog delays another by at most one turn.
- **Pause** and limits live in ``loom_queue`` (``set_queue``), OPTIONS["QUEUE_LIMITS"] giving
  the defaults; workers read them every ``loom.worker.fetcher.FLOW_REFRESH`` seconds.

What it costs: one serialised transaction of a few statements per flow claim (it claims up to a
batch), against the plain claim's one statement; the plain claim costs nothing more.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import transaction

from loom.conf import parse_rate
from loom.records import CLAIM_COLUMNS, ClaimedTask
from loom.store.rows import _uuid

# The name of the row in loom_queue that every flow claim of a backend locks first.
LOCK_ROW = "*"
# Candidates read per claim, as a multiple of the room: some wait behind a full key or queue.
OVERFETCH = 4
# A rate window is counted longer than its period: a tenth of it, but at least RATE_MARGIN_MIN and
# at most RATE_MARGIN_MAX seconds. A task's code starts a little after its claim (a worker that
# just started, a thread that was busy), and N claims per period would then let a window of start
# times catch N + a few. The price: "10/s" admits 8 per second, "100/m" about 97 per minute.
# Keyed candidates are ranked for several claims at once: at most this many, kept this many seconds.
KEYED_READ = 500
KEYED_TTL = 0.5
RATE_MARGIN = 0.1
RATE_MARGIN_MIN = 0.25
RATE_MARGIN_MAX = 2.0


def rate_window(period: float) -> float:
    return period + min(max(period * RATE_MARGIN, RATE_MARGIN_MIN), RATE_MARGIN_MAX)


@dataclass(frozen=True)
class QueueLimits:
    concurrency: int | None = None
    rate: tuple[int, float] | None = None  # (N, seconds): at most N starts in any window

    @property
    def any(self) -> bool:
        return self.concurrency is not None or self.rate is not None


@dataclass(frozen=True)
class FlowSnapshot:
    """What a worker needs to know to claim: read by ``flow_snapshot`` every FLOW_REFRESH."""

    paused: frozenset[str] = frozenset()
    limits: Mapping[str, QueueLimits] = field(default_factory=dict)
    flow_waiting: bool = False  # tasks with a concurrency or fair key wait in these queues


def effective_limits(defaults: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Any]) -> QueueLimits:
    """OPTIONS' limits of a queue, with what operators set on top (a key set to None: no limit)."""
    merged = {**defaults, **overrides}
    rate = merged.get("rate")
    return QueueLimits(concurrency=merged.get("concurrency"), rate=parse_rate(rate) if rate else None)


class FlowControl:
    """A part of ``Store``, which provides what is declared here."""

    if TYPE_CHECKING:
        alias: str
        _keyed_cache: dict[Any, tuple[float, list[tuple]]]

        @property
        def vendor(self) -> str: ...
        @property
        def connection(self) -> Any: ...
        def _dt(self, value: dt.datetime | None) -> Any: ...
        def _id(self, value: str) -> Any: ...
        def _in_list(self, ids: Sequence[Any], params: dict[str, Any], prefix: str = "id") -> str: ...
        def _queue_filter(self, queues: Sequence[str] | None, params: dict[str, Any]) -> str: ...

    # -- queue state --------------------------------------------------------------------------

    def set_queue(self, backend: str, name: str, *, paused: bool | None = None,
                  limits: Mapping[str, Any] | None = None) -> None:
        """Pause or resume a queue, or replace its limit overrides, for every worker at once."""
        from loom.models import QueueState

        with transaction.atomic(using=self.alias):
            self._ensure_rows(backend, [name])
            changes: dict[str, Any] = {}
            if paused is not None:
                changes["paused"] = paused
            if limits is not None:
                changes["limits"] = dict(limits)
            if changes:
                QueueState.objects.using(self.alias).filter(backend=backend, name=name).update(**changes)

    def queue_states(self, backend: str) -> dict[str, Any]:
        """``loom_queue`` rows of a backend by queue name (the lock row left out)."""
        from loom.models import QueueState

        return {q.name: q for q in QueueState.objects.using(self.alias).filter(backend=backend).exclude(name=LOCK_ROW)}

    def flow_snapshot(self, backend: str, queues: Sequence[str] | None,
                      defaults: Mapping[str, Mapping[str, Any]]) -> FlowSnapshot:
        """Paused queues, effective limits, and whether flow-controlled tasks wait, for a worker."""
        states = self.queue_states(backend)
        names = set(defaults) | set(states)
        limits = {}
        for name in names:
            if queues and name not in queues:
                continue
            state = states.get(name)
            effective = effective_limits(defaults.get(name, {}), state.limits if state else {})
            if effective.any:
                limits[name] = effective
        paused = frozenset(name for name, state in states.items() if state.paused)
        params: dict = {}
        queue_filter = self._queue_filter(queues, params) if queues else ""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM loom_task WHERE status = 'READY' "
                           f"AND (concurrency_key IS NOT NULL OR fair_key IS NOT NULL) {queue_filter} LIMIT 1", params)
            waiting = cursor.fetchone() is not None
        return FlowSnapshot(paused=paused, limits=limits, flow_waiting=waiting)

    def _ensure_rows(self, backend: str, names: Iterable[str]) -> None:
        """Create the loom_queue rows (and lock rows) that do not exist yet, in one statement."""
        names = sorted(set(names))
        if not names:
            return
        params: list = []
        rows = []
        for name in names:
            rows.append("(%s, %s, FALSE, %s, CURRENT_TIMESTAMP)")
            params += [backend, name, "{}"]
        verb = "INSERT IGNORE" if self.vendor == "mysql" else "INSERT"
        tail = "" if self.vendor == "mysql" else " ON CONFLICT (backend, name) DO NOTHING"
        with self.connection.cursor() as cursor:
            cursor.execute(f"{verb} INTO loom_queue (backend, name, paused, limits, updated_at) "
                           f"VALUES {', '.join(rows)}{tail}", params)

    # -- the flow claim -----------------------------------------------------------------------

    def claim_flow(self, worker_id: str, backend: str, queues: Sequence[str] | None, limits: Mapping[str, QueueLimits],
                   room: int, now: dt.datetime, lease_until: dt.datetime,
                   exclude: Iterable[str] = (), keyed: bool = True) -> list[ClaimedTask]:
        """Claim up to ``room`` flow-controlled tasks (see the module docstring) in one transaction.
        ``keyed``: tasks with a concurrency or fair key may wait (``FlowSnapshot.flow_waiting``)."""
        if room <= 0:
            return []
        exclude = set(exclude)
        mine = [q for q in (queues or []) if q not in exclude]
        limited = sorted(q for q in limits if q not in exclude and (not queues or q in queues))
        with transaction.atomic(using=self.alias), self.connection.cursor() as cursor:
            self._ensure_rows(backend, [LOCK_ROW, *(q for q in limited if limits[q].rate)])
            lock = "" if self.vendor == "sqlite" else " FOR UPDATE"
            cursor.execute(f"SELECT name FROM loom_queue WHERE backend = %s AND name = %s{lock}", [backend, LOCK_ROW])
            budgets = self._queue_budgets(cursor, backend, limited, limits, now)
            open_queues = [q for q in limited if budgets[q] > 0]
            closed = exclude | {q for q in limited if budgets[q] <= 0}
            chosen = self._admit(cursor, backend, mine, open_queues, closed, room, now, not queues, keyed, budgets)
            if not chosen and keyed and self._keyed_cache:
                self._keyed_cache.clear()  # perhaps stale: read the keyed backlog afresh, once
                chosen = self._admit(cursor, backend, mine, open_queues, closed, room, now, not queues, keyed,
                                     budgets)
            if not chosen:
                return []
            claimed = self._claim_ids(cursor, worker_id, [c["id"] for c in chosen], now, lease_until)
            self._forget_candidates({c["id"] for c in chosen})
            started = [c["queue_name"] for c in chosen if c["queue_name"] in limits and limits[c["queue_name"]].rate]
            self._log_starts(cursor, backend, started, limits, now)
        return claimed

    def _admit(self, cursor: Any, backend: str, mine: list[str], open_queues: list[str], closed: set[str],
               room: int, now: dt.datetime, any_queue: bool, keyed: bool,
               budgets: dict[str, int]) -> list[dict[str, Any]]:
        """The candidates this claim takes: in rank order, while their queue and key have room."""
        candidates = self._candidates(cursor, backend, mine, open_queues, closed, room * OVERFETCH, now,
                                      any_queue=any_queue, keyed=keyed)
        if not candidates:
            return []
        budgets = dict(budgets)
        keys = sorted({c["concurrency_key"] for c in candidates if c["concurrency_key"]})
        running = self._running_by(cursor, "concurrency_key", keys)
        chosen: list[dict[str, Any]] = []
        for c in candidates:
            queue, key = c["queue_name"], c["concurrency_key"]
            if queue in budgets and budgets[queue] <= 0:
                continue
            if key is not None and running.get(key, 0) >= (c["concurrency_limit"] or 1):
                continue
            chosen.append(c)
            if queue in budgets:
                budgets[queue] -= 1
            if key is not None:
                running[key] = running.get(key, 0) + 1
            if len(chosen) == room:
                break
        return chosen

    def _queue_budgets(self, cursor: Any, backend: str, limited: list[str], limits: Mapping[str, QueueLimits],
                       now: dt.datetime) -> dict[str, int]:
        """How many more tasks each limited queue may start now."""
        budgets: dict[str, float] = {q: float("inf") for q in limited}
        running = self._running_by(cursor, "queue_name", [q for q in limited if limits[q].concurrency])
        for q in limited:
            limit = limits[q]
            if limit.concurrency is not None:
                budgets[q] = min(budgets[q], limit.concurrency - running.get(q, 0))
            if limit.rate is not None:
                count, period = limit.rate
                since = now - dt.timedelta(seconds=rate_window(period))
                cursor.execute("SELECT count(*) FROM loom_rate_start WHERE backend = %s AND queue = %s "
                               "AND started_at > %s", [backend, q, self._dt(since)])
                budgets[q] = min(budgets[q], count - cursor.fetchone()[0])
        return {q: int(b) if b != float("inf") else 1 << 30 for q, b in budgets.items()}

    def _running_by(self, cursor: Any, column: str, values: list[str]) -> dict[str, int]:
        if not values:
            return {}
        params: dict = {}
        cursor.execute(f"SELECT {column}, count(*) FROM loom_task WHERE status = 'RUNNING' "
                       f"AND {column} IN ({self._in_list(values, params, 'r')}) GROUP BY {column}", params)
        return {value: count for value, count in cursor.fetchall()}

    def _candidates(self, cursor: Any, backend: str, mine: list[str], open_queues: list[str], exclude: set[str],
                    limit: int, now: dt.datetime, any_queue: bool, keyed: bool) -> list[dict[str, Any]]:
        """Due READY tasks this claim may take, ranked for fair share: the tasks of an open limited
        queue, and flow-controlled tasks (with a key) of the queues this worker serves.

        Two reads, merged by (priority, rank in its fair group, age): tasks without keys come off
        the plain claim's index, ``limit`` of them, whatever the backlog; tasks with keys (only
        when some wait: ``keyed``) are ranked by window functions, which sort every due keyed
        task, so that cost grows with that backlog (docs/flow-control.md gives figures)."""
        now_param = self._dt(now)
        found: list[tuple] = []  # (-priority, rank, available_at, id, queue, key, limit)
        if open_queues:
            params: dict = {"now": now_param, "limit": limit}
            hint = " INDEXED BY loom_task_claim" if self.vendor == "sqlite" else ""
            cursor.execute(
                f"SELECT id, queue_name, priority, available_at FROM loom_task{hint} WHERE status = 'READY' "
                f"AND concurrency_key IS NULL AND fair_key IS NULL AND available_at <= %(now)s "
                f"AND queue_name IN ({self._in_list(open_queues, params, 'o')}) "
                f"ORDER BY priority DESC, available_at, id LIMIT %(limit)s", params)
            found += [(-priority, rank, at, _uuid(task_id), queue, None, None)
                      for rank, (task_id, queue, priority, at) in enumerate(cursor.fetchall(), 1)]
        if keyed:
            found += self._keyed_candidates(cursor, mine, open_queues, exclude, limit, now_param, any_queue)
        found.sort(key=lambda c: c[:4])
        return [{"id": c[3], "queue_name": c[4],
                 "concurrency_key": c[5], "concurrency_limit": c[6]} for c in found[:limit]]

    def _keyed_candidates(self, cursor: Any, mine: list[str], open_queues: list[str], exclude: set[str],
                          limit: int, now: Any, any_queue: bool) -> list[tuple]:
        """Keyed candidates with a free slot in their key, from a list read at most KEYED_TTL ago.

        Ranking the keyed backlog sorts all of it (window functions), so it is read for several
        claims at once: up to KEYED_READ tasks, at most ``concurrency_limit`` per key, kept for
        KEYED_TTL seconds less what was claimed from it. Each claim filters it by the keys'
        RUNNING counts read now, and claims by id only rows still READY, so a stale list costs
        a missed turn, never a wrong admission; an empty turn reads afresh (``claim_flow``)."""
        params: dict = {"now": now, "limit": max(limit, KEYED_READ)}
        others = [q for q in mine if q not in open_queues and q not in exclude]
        if any_queue:  # a worker of every queue: keyed tasks of any queue not paused or full
            skip = sorted(exclude)
            where = f"queue_name NOT IN ({self._in_list(skip, params, 'x')})" if skip else "1 = 1"
        elif others or open_queues:
            where = f"queue_name IN ({self._in_list([*open_queues, *others], params, 'q')})"
        else:
            return []
        signature = (where, tuple(sorted((k, str(v)) for k, v in params.items() if k != "now")))
        cached = self._keyed_cache.get(signature)
        if cached is None or cached[0] <= time.monotonic():
            cursor.execute(
                "SELECT c.priority, c.fair_rank, c.available_at, c.id, c.queue_name, c.concurrency_key, "
                "c.concurrency_limit FROM (SELECT id, queue_name, priority, available_at, concurrency_key, "
                "concurrency_limit, row_number() OVER (PARTITION BY queue_name, priority, fair_key "
                "ORDER BY available_at, id) AS fair_rank, "
                "row_number() OVER (PARTITION BY concurrency_key ORDER BY priority DESC, available_at, id) AS key_rank "
                "FROM loom_task WHERE status = 'READY' AND (concurrency_key IS NOT NULL OR fair_key IS NOT NULL) "
                f"AND available_at <= %(now)s AND {where}) AS c "
                "WHERE c.concurrency_key IS NULL OR c.key_rank <= COALESCE(c.concurrency_limit, 1) "
                "ORDER BY c.priority DESC, c.fair_rank, c.available_at, c.id LIMIT %(limit)s", params)
            rows = [(-priority, rank, at, _uuid(task_id), queue, key, key_limit)
                    for priority, rank, at, task_id, queue, key, key_limit in cursor.fetchall()]
            self._keyed_cache.clear()
            self._keyed_cache[signature] = cached = (time.monotonic() + KEYED_TTL, rows)
        rows = cached[1]
        keys = sorted({row[5] for row in rows if row[5] is not None})
        busy = self._running_by(cursor, "concurrency_key", keys)
        offered: dict[str, int] = {}
        result = []
        for row in sorted(rows, key=lambda r: (r[0], r[2], r[3])):  # each key's own order
            key = row[5]
            if key is not None:
                if offered.get(key, 0) >= (row[6] or 1) - busy.get(key, 0):
                    continue
                offered[key] = offered.get(key, 0) + 1
            result.append(row)
        return result

    def _forget_candidates(self, ids: set[str]) -> None:
        for signature, (expires, rows) in list(self._keyed_cache.items()):
            self._keyed_cache[signature] = (expires, [row for row in rows if row[3] not in ids])

    def _claim_ids(self, cursor: Any, worker_id: str, ids: list[str], now: dt.datetime,
                   lease_until: dt.datetime) -> list[ClaimedTask]:
        from loom.store import load
        from loom.store.rows import rows_as_dicts

        params: dict = {"worker": worker_id, "now": self._dt(now), "lease": self._dt(lease_until)}
        sql = load(self.vendor, "claim_ids").text.format(ids=self._in_list([self._id(i) for i in ids], params),
                                                         columns=", ".join(CLAIM_COLUMNS))
        cursor.execute(sql, params)
        if self.vendor == "mysql":
            cursor.execute(f"SELECT {', '.join(CLAIM_COLUMNS)} FROM loom_task WHERE id IN "
                           f"({self._in_list([self._id(i) for i in ids], params, 'm')}) AND claimed_by = %(worker)s "
                           "AND status = 'RUNNING'", params)
        claimed = [ClaimedTask(**values) for values in rows_as_dicts(self.connection, cursor.fetchall())]
        order = {task_id: n for n, task_id in enumerate(ids)}
        claimed.sort(key=lambda c: order.get(c.id, 0))
        return claimed

    def _log_starts(self, cursor: Any, backend: str, queues: list[str], limits: Mapping[str, QueueLimits],
                    now: dt.datetime) -> None:
        """Record each start in a rate-limited queue; forget starts older than the queue's period."""
        if not queues:
            return
        params: list = []
        for queue in queues:
            params += [backend, queue, self._dt(now)]
        cursor.execute("INSERT INTO loom_rate_start (backend, queue, started_at) VALUES "
                       + ", ".join(["(%s, %s, %s)"] * len(queues)), params)
        for queue in sorted(set(queues)):
            rate = limits[queue].rate
            assert rate is not None
            period = rate[1]
            cursor.execute("DELETE FROM loom_rate_start WHERE backend = %s AND queue = %s AND started_at <= %s",
                           [backend, queue, self._dt(now - dt.timedelta(seconds=rate_window(period)))])
