"""``loom cancel ID...``: cancel READY tasks now, and ask workers to stop RUNNING ones.

Exit codes: 0 every task was cancelled (or asked to stop); 1 bad input (not a task id, unknown
backend); 3 some tasks were not found or already finished (each is named).
"""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

help = "Cancel tasks by id (READY: at once; RUNNING: the worker stops it)."

# Exit code when some of the named tasks could not be acted on.
PARTIAL = 3


def add_arguments(parser) -> None:
    parser.add_argument("ids", nargs="+", metavar="ID", help="Task ids.")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")


def parse_ids(values: list[str]) -> list[str]:
    ids = []
    for value in values:
        try:
            ids.append(str(uuid.UUID(value)))
        except ValueError:
            raise CommandError(f"{value!r} is not a task id; task ids are UUIDs, as `loom status` "
                               "and the dashboard show them.") from None
    return ids


def act(command, options, action: str, done: str) -> None:
    """Run ``action`` on the named tasks and report per task; shared by retry and cancel."""
    from loom.actions import perform
    from loom.cli import counted
    from loom.cli.status import backend_or_error

    backend = backend_or_error(options["backend"])
    report = perform(backend, action, parse_ids(options["ids"]))
    line = f"{report.changed} of {counted(report.asked, 'task')} {done}"
    if report.stopping == 1:
        line += " (1 was running: it shows as Stopping until its worker stops it)"
    elif report.stopping:
        line += f" ({report.stopping} were running: they show as Stopping until their workers stop them)"
    command.stdout.write(line + ".")
    if report.refused:
        raise CommandError("\n".join(f"{task_id}: {why}" for task_id, why in report.refused.items()),
                           returncode=PARTIAL)


def run(command, options) -> None:
    act(command, options, "cancel", done="cancelled")
