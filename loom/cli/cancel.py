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


def act(command, options, action: str, allowed: set[str], done: str) -> None:
    """Run ``action`` on the named tasks and report per task; shared by retry, cancel."""
    from loom.cli.status import backend_or_error
    from loom.dashboard.actions import perform
    from loom.dashboard.queries import tasks_of

    backend = backend_or_error(options["backend"])
    ids = parse_ids(options["ids"])
    before = dict(tasks_of(backend).filter(pk__in=ids).values_list("pk", "status"))
    before = {str(k): v for k, v in before.items()}
    targets = [i for i in ids if before.get(i) in allowed]
    changed = perform(backend, action, targets) if targets else 0
    problems = []
    for task_id in ids:
        if task_id not in before:
            problems.append(f"{task_id}: no such task")
        elif before[task_id] not in allowed:
            problems.append(f"{task_id}: is {before[task_id]}, cannot {action} (needs {' or '.join(sorted(allowed))})")
    command.stdout.write(f"{changed} of {len(ids)} task(s) {done}.")
    if problems:
        raise CommandError("\n".join(problems), returncode=PARTIAL)


def run(command, options) -> None:
    act(command, options, "cancel", allowed={"READY", "RUNNING"}, done="cancelled")
