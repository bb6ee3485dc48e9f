"""``loom prune --older-than 7d``: delete finished tasks (and their results) older than a cut-off.

Durations: a number and a unit, ``s`` ``m`` ``h`` ``d`` ``w`` (``90m``, ``12h``, ``7d``).
Exit codes: 0 pruned (or counted with --dry-run); 1 bad input (duration, backend).
"""

from __future__ import annotations

import datetime as dt
import re

from django.core.management.base import CommandError
from django.utils import timezone

help = "Delete finished tasks older than a duration, e.g. --older-than 7d."

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise CommandError(f"--older-than {text!r} is not a duration; use a number and a unit "
                           "(s, m, h, d, w), e.g. 30m, 12h or 7d.")
    return dt.timedelta(seconds=float(match[1]) * UNITS[match[2]])


def add_arguments(parser) -> None:
    parser.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 12h, 7d, 2w.")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")


def run(command, options) -> None:
    from loom.cli import counted
    from loom.cli.status import backend_or_error
    from loom.queries import tasks_of

    backend = backend_or_error(options["backend"])
    cutoff = timezone.now() - parse_duration(options["older_than"])
    if options["dry_run"]:
        n = tasks_of(backend).finished().filter(finished_at__lt=cutoff).count()
        command.stdout.write(f"{counted(n, 'finished task')} older than {options['older_than']} would be deleted.")
        return
    deleted = backend.store.prune(cutoff)
    command.stdout.write(f"Deleted {counted(deleted, 'finished task')} older than {options['older_than']}.")
