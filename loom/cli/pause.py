"""``loom pause QUEUE...``: no worker anywhere claims tasks of these queues (within a second).

Running tasks finish; enqueue still accepts tasks; ``loom resume`` undoes it. The state lives in
the database (loom.queues). Exit codes: 0 done; 1 an unknown queue or backend (named).
"""

from __future__ import annotations

help = "Pause queues: workers stop claiming their tasks (running ones finish); resume undoes it."


def add_arguments(parser) -> None:
    parser.add_argument("queues", nargs="+", metavar="QUEUE")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")


def run(command, options, paused: bool = True) -> None:
    from django.core.management.base import CommandError

    from loom import queues
    from loom.cli.status import backend_or_error

    backend_or_error(options["backend"])
    for queue in options["queues"]:
        try:
            (queues.pause if paused else queues.resume)(queue, backend=options["backend"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        command.stdout.write(f"Queue {queue}: {'paused' if paused else 'resumed'}.")
