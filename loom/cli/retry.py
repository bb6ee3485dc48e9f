"""``loom retry ID...``: put FAILED or CANCELLED tasks back to READY (one more attempt each).

Exit codes: 0 every task was retried; 1 bad input (not a task id, unknown backend);
3 some tasks were not found or are not FAILED/CANCELLED (each is named).
"""

from __future__ import annotations

help = "Retry failed or cancelled tasks by id (--failed retries every failed task of a queue)."


def add_arguments(parser) -> None:
    parser.add_argument("ids", nargs="*", metavar="ID", help="Task ids.")
    parser.add_argument("--failed", action="store_true", help="Retry every FAILED task (with --queue: of that queue).")
    parser.add_argument("--queue", help="With --failed: only this queue.")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")


def run(command, options) -> None:
    from django.core.management.base import CommandError

    from loom.cli.cancel import act

    if options["failed"]:
        from loom.cli.status import backend_or_error
        from loom.queries import tasks_of

        backend = backend_or_error(options["backend"])
        qs = tasks_of(backend).failed()
        if options["queue"]:
            qs = qs.filter(queue_name=options["queue"])
        options["ids"] = [*options["ids"], *(str(i) for i in qs.values_list("pk", flat=True))]
        if not options["ids"]:
            command.stdout.write("No failed tasks to retry.")
            return
    elif options["queue"]:
        raise CommandError("--queue only works with --failed; to retry tasks by id, list their ids.")
    act(command, options, "retry", done="retried")
