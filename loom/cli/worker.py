"""``loom worker``: claim and run tasks until stopped (see loom.worker)."""

from __future__ import annotations

from django.core.management.base import CommandError

help = "Claim and run tasks until stopped (SIGTERM/SIGINT: graceful; twice: fast)."


def add_arguments(parser) -> None:
    parser.add_argument("--backend", default="default", help="TASKS alias (default: default).")
    parser.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                        help="Queue to serve; repeat for several (default: all of QUEUES).")
    parser.add_argument("--threads", type=int, default=8, help="Sync tasks run at once (default 8).")
    parser.add_argument("--async-limit", type=int, default=100,
                        help="async def tasks run at once (default 100).")
    parser.add_argument("--burst", action="store_true",
                        help="Run everything due, then exit (for tests and cron).")
    parser.add_argument("--grace", type=float, default=30.0,
                        help="Seconds running tasks get to finish after SIGTERM/SIGINT (default 30).")


def run(command, options) -> None:
    from loom.worker import Worker

    try:
        worker = Worker(
            backend=options["backend"],
            queues=options["queues"],
            threads=options["threads"],
            async_limit=options["async_limit"],
            burst=options["burst"],
            grace=options["grace"],
        )
    except (TypeError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    worker.install_signal_handlers()
    if options["verbosity"] >= 1:
        command.stdout.write(
            f"loom worker {worker.id}: queues {', '.join(worker.queues or ['*'])}, {worker.threads} threads"
        )
        command.stdout.flush()
    worker.run()
    if options["verbosity"] >= 1:
        command.stdout.write(f"loom worker {worker.id}: stopped after {worker.finished} tasks")
