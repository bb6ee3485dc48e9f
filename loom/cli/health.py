"""``loom health``: exit 0 when tasks are being consumed, 1 otherwise, and say why.

Without options it asks the database, as any machine of the site can: the task database
answers, at least one worker has sent a heartbeat within ``LEASE_SECONDS``, and no due task has
waited longer than ``--max-wait`` seconds (a worker that beats but no longer claims shows up
here). ``--port`` asks one worker's own endpoint instead (``loom worker --health-port``; ``--live``
for ``/livez``), for an exec probe in the worker's container.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

from django.core.management.base import CommandError
from django.utils import timezone

help = "Exit 0 if tasks are being consumed (database, live workers, no task waiting too long), else 1."

# Seconds a due task may wait before the site counts as not consuming.
DEFAULT_MAX_WAIT = 300.0


def add_arguments(parser: Any) -> None:
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--max-wait", type=float, default=DEFAULT_MAX_WAIT, metavar="SECONDS",
                        help=f"Fail when a due task has waited longer than this (default {DEFAULT_MAX_WAIT:g}).")
    parser.add_argument("--port", type=int, default=None, help="Ask the worker serving --health-port PORT instead.")
    parser.add_argument("--host", default="127.0.0.1", help="With --port: the worker's address (default 127.0.0.1).")
    parser.add_argument("--live", action="store_true", help="With --port: ask /livez instead of /readyz.")
    parser.add_argument("--timeout", type=float, default=5.0, help="With --port: seconds to wait (default 5).")


def run(command: Any, options: dict[str, Any]) -> None:
    if options["port"] is not None:
        ok, lines = _ask_worker(options)
    else:
        ok, lines = _ask_database(options)
    for line in lines:
        command.stdout.write(line)
    if not ok:
        raise CommandError("not healthy: " + "; ".join(line for line in lines if line.startswith("problem")),
                           returncode=1)


def _ask_worker(options: dict[str, Any]) -> tuple[bool, list[str]]:
    url = f"http://{options['host']}:{options['port']}/{'livez' if options['live'] else 'readyz'}"
    try:
        with urllib.request.urlopen(url, timeout=options["timeout"]) as response:
            return True, [f"ok: {url} answered {response.status}: {response.read().decode()}"]
    except urllib.error.HTTPError as exc:
        report = exc.read().decode()
        problems = json.loads(report).get("problems", []) if report.startswith("{") else []
        lines = [f"problem: {url} answered {exc.code}: {p}" for p in problems]
        return False, lines or [f"problem: {url} answered {exc.code}"]
    except OSError as exc:
        return False, [f"problem: {url} does not answer ({exc}); is the worker running with --health-port?"]


def _ask_database(options: dict[str, Any]) -> tuple[bool, list[str]]:
    from loom.cli.status import backend_or_error
    from loom.health import database_problem

    backend = backend_or_error(options["backend"])
    alias = backend.store.alias
    problem = database_problem(alias)
    if problem:
        return False, [f"problem: {problem}"]
    from loom.models import TaskRecord, WorkerRecord

    lines = [f"ok: database {alias!r} answers"]
    now = timezone.now()
    beat_since = now - timedelta(seconds=backend.config.lease_seconds)
    workers = WorkerRecord.objects.using(alias).filter(stopped_at__isnull=True, heartbeat_at__gte=beat_since).count()
    if workers:
        lines.append(f"ok: {workers} worker(s) sent a heartbeat in the last {backend.config.lease_seconds:g}s")
    else:
        lines.append(f"problem: no worker has sent a heartbeat in the last {backend.config.lease_seconds:g}s "
                     "(start `manage.py loom worker`)")
    oldest = (TaskRecord.objects.using(alias).filter(status="READY", backend=backend.alias, available_at__lte=now)
              .order_by("available_at").values_list("available_at", flat=True).first())
    waited = (now - oldest).total_seconds() if oldest else 0.0
    if waited > options["max_wait"]:
        lines.append(f"problem: a due task has waited {waited:.0f}s (more than --max-wait {options['max_wait']:g}s): "
                     "workers are not consuming this queue")
    else:
        lines.append(f"ok: the oldest due task waited {waited:.1f}s (at most {options['max_wait']:g}s)")
    return not any(line.startswith("problem") for line in lines), lines
