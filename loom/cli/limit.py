"""``loom limit QUEUE [--concurrency N|none] [--rate N/m|none] [--reset]``: change a queue's limits
for every worker at once, without a restart; with no option, print them.

``none`` lifts a limit; ``--reset`` forgets what was set here, so OPTIONS["QUEUE_LIMITS"] applies
again. The values live in the database (loom.queues). Exit codes: 0 done; 1 bad input (named).
"""

from __future__ import annotations

help = "Show or change a queue's concurrency and rate limits (N/s, N/m, N/h; none lifts one)."


def add_arguments(parser) -> None:
    parser.add_argument("queue", metavar="QUEUE")
    parser.add_argument("--concurrency", metavar="N|none", help="At most N tasks of the queue running at once.")
    parser.add_argument("--rate", metavar="N/s|N/m|N/h|none", help="At most N task starts in any second/minute/hour.")
    parser.add_argument("--reset", action="store_true", help="Back to OPTIONS['QUEUE_LIMITS'].")
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")


def _concurrency(value: str):
    from django.core.management.base import CommandError

    if value.lower() == "none":
        return None
    if not value.isdigit() or int(value) < 1:
        raise CommandError(f"--concurrency takes a whole number >= 1 or 'none', got {value!r}.")
    return int(value)


def run(command, options) -> None:
    from django.core.management.base import CommandError

    from loom import queues
    from loom.cli.status import backend_or_error

    backend_or_error(options["backend"])
    queue, backend = options["queue"], options["backend"]
    try:
        if options["reset"]:
            queues.reset_limits(queue, backend=backend)
        changes = {}
        if options["concurrency"] is not None:
            changes["concurrency"] = _concurrency(options["concurrency"])
        if options["rate"] is not None:
            changes["rate"] = None if options["rate"].lower() == "none" else options["rate"]
        if changes:
            queues.set_limits(queue, backend=backend, **changes)
        now = queues.limits(queue, backend=backend)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    concurrency = now["concurrency"] if now["concurrency"] is not None else "no limit"
    rate = now["rate"] or "no limit"
    command.stdout.write(f"Queue {queue}: concurrency {concurrency}, rate {rate}.")
