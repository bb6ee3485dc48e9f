"""``loom status``: queues, workers and task counts of a backend; ``--watch`` refreshes.

Exit codes: 0 printed; 1 the backend is not a loom DatabaseBackend or its database is unreachable.
"""

from __future__ import annotations

import json
import time

from django.core.management.base import CommandError
from django.db import DatabaseError
from django.utils import timezone

help = "Show queue depths, running and failed tasks, and workers (--watch to refresh)."


def add_arguments(parser) -> None:
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--watch", nargs="?", type=float, const=2.0, default=None, metavar="SECONDS",
                        help="Refresh every SECONDS (default 2) until Ctrl-C.")
    parser.add_argument("--times", type=int, default=None, metavar="N", help="With --watch: stop after N refreshes.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of tables.")


def backend_or_error(alias: str):
    from loom.backends.database import DatabaseBackend
    from loom.compat import InvalidTaskBackend, task_backends

    try:
        backend = task_backends[alias]
    except InvalidTaskBackend:
        raise CommandError(f"No TASKS backend {alias!r}; pass --backend with one of: "
                           f"{', '.join(sorted(b.alias for b in task_backends.all()))}.") from None
    if not isinstance(backend, DatabaseBackend):
        raise CommandError(f"TASKS[{alias!r}] is {type(backend).__name__}, not loom's DatabaseBackend; "
                           "loom commands manage DatabaseBackend tasks only.")
    return backend


def snapshot(backend) -> dict:
    from loom import queries
    from loom import queues as queue_state

    now = timezone.now()
    queues = queries.queue_rows(backend, now)
    flow = {q.name: q for q in queue_state.overview(backend.alias)}
    workers = queries.worker_rows(backend, now)
    return {
        "backend": backend.alias,
        "at": now.isoformat(),
        "queues": [{"name": q.name, "ready": q.ready, "scheduled": q.scheduled, "running": q.running,
                    "failed_last_hour": q.failed_hour,
                    "oldest_due_seconds": round((now - q.oldest_due).total_seconds(), 1) if q.oldest_due else None,
                    "paused": bool(flow.get(q.name) and flow[q.name].paused),
                    "concurrency": flow[q.name].concurrency if q.name in flow else None,
                    "rate": flow[q.name].rate if q.name in flow else None}
                   for q in queues],
        "tasks": {k.lower(): v for k, v in queries.status_counts(backend, queues).items()},
        "workers": [{"id": w.id, "alive": w.alive, "state": w.state,
                     "heartbeat_age_seconds": round(w.heartbeat_age, 1) if w.heartbeat_age is not None else None,
                     "queues": list(w.record.queues) if w.record else [], "running": len(w.running)}
                    for w in workers],
    }


# Worker states in the order the summary line names them.
WORKER_STATES = ("alive", "stopped", "no heartbeat")


def ago(seconds: float, suffix: str = " ago") -> str:
    """A short age: ``0.4s ago``, ``12s ago``, ``3m 20s ago``, ``2h 5m ago``, ``3d 4h ago``."""
    if seconds < 10:
        text = f"{max(seconds, 0):.1f}s"
    elif seconds < 60:
        text = f"{seconds:.0f}s"
    else:
        whole = int(seconds)
        for size, unit, small, small_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
            if whole >= size:
                text = f"{whole // size}{unit} {whole % size // small}{small_unit}"
                break
    return text + suffix


def render(data: dict) -> str:
    lines = [f"loom · backend {data['backend']} · {data['at'][:19].replace('T', ' ')} UTC", ""]
    header = f"{'QUEUE':<20} {'READY':>7} {'SCHEDULED':>9} {'RUNNING':>7} {'FAILED 1h':>9}  OLDEST DUE"
    lines.append(header)
    for q in data["queues"]:
        oldest = ago(q["oldest_due_seconds"], suffix="") if q["oldest_due_seconds"] is not None else "-"
        flow = [text for text in ("PAUSED" if q.get("paused") else "",
                                  f"concurrency {q['concurrency']}" if q.get("concurrency") else "",
                                  f"rate {q['rate']}" if q.get("rate") else "") if text]
        lines.append(f"{q['name'][:20]:<20} {q['ready']:>7} {q['scheduled']:>9} {q['running']:>7} "
                     f"{q['failed_last_hour']:>9}  {oldest}" + (f"  [{', '.join(flow)}]" if flow else ""))
    if not data["queues"]:
        lines.append("(no queues)")
    lines.append("")
    lines.append("TASKS    " + "  ".join(f"{k} {v}" for k, v in data["tasks"].items()))
    states = [w["state"] for w in data["workers"]]
    lines.append("WORKERS  " + ", ".join(f"{states.count(state)} {state}" for state in WORKER_STATES
                                         if state == "alive" or state in states))
    for w in data["workers"]:
        if w["heartbeat_age_seconds"] is None:
            age = "unregistered"
        else:  # a stopping worker beats one last time, so its last heartbeat is when it stopped
            age = f"{'stopped' if w['state'] == 'stopped' else 'heartbeat'} {ago(w['heartbeat_age_seconds'])}"
        lines.append(f"  {w['id'][:40]:<40} {w['state']:<12}  {age}  "
                     f"queues {','.join(w['queues']) or '*'}  running {w['running']}")
    return "\n".join(lines)


def run(command, options) -> None:
    backend = backend_or_error(options["backend"])
    watch, times = options["watch"], options["times"]
    if watch is not None and watch <= 0:
        raise CommandError(f"--watch needs a number of seconds > 0, got {watch}.")
    shown = 0
    try:
        while True:
            try:
                data = snapshot(backend)
            except DatabaseError as exc:
                raise CommandError(f"Cannot read the task table on database {backend.store.alias!r}: {exc}") from None
            if options["json"]:
                command.stdout.write(json.dumps(data))
            else:
                if watch is not None and command.stdout.isatty():
                    command.stdout.write("\033[H\033[2J", ending="")
                command.stdout.write(render(data))
            command.stdout.flush()
            shown += 1
            if watch is None or (times is not None and shown >= times):
                return
            time.sleep(watch)  # a CLI refresh interval, not synchronisation
    except KeyboardInterrupt:
        return
