"""``loom purge --queue NAME``: delete every READY task of a queue (running tasks are untouched).

Exit codes: 0 purged (or, with --dry-run, counted); 1 bad input (unknown backend or queue).
"""

from __future__ import annotations

from django.core.management.base import CommandError

help = "Delete every READY task of one queue (--dry-run counts them)."


def add_arguments(parser) -> None:
    parser.add_argument("--queue", required=True, help="Queue to empty.")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--dry-run", action="store_true", help="Only count what would be deleted.")


def run(command, options) -> None:
    from loom.cli import counted
    from loom.cli.status import backend_or_error
    from loom.queries import tasks_of

    backend = backend_or_error(options["backend"])
    queue = options["queue"]
    waiting = tasks_of(backend).ready().filter(queue_name=queue)
    if backend.queues and queue not in backend.queues and not waiting.exists():
        raise CommandError(f"Queue {queue!r} is not in TASKS[{backend.alias!r}]['QUEUES'] "
                           f"({', '.join(sorted(backend.queues))}) and holds no tasks.")
    if options["dry_run"]:
        command.stdout.write(f"{counted(waiting.count(), 'READY task')} in queue {queue!r} would be deleted.")
        return
    deleted = backend.store.purge(queue)
    command.stdout.write(f"Deleted {counted(deleted, 'READY task')} from queue {queue!r}.")
