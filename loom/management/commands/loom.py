"""``manage.py loom``: a thin CLI over loom's objects. ``loom worker`` runs a worker."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "loom: run a worker (more subcommands: see docs/cli.md)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=CommandParser)
        worker = sub.add_parser("worker", help="Claim and run tasks until stopped.")
        worker.add_argument("--backend", default="default", help="TASKS alias (default: default).")
        worker.add_argument("--queue", action="append", dest="queues", metavar="NAME",
                            help="Queue to serve; repeat for several (default: all of QUEUES).")
        worker.add_argument("--threads", type=int, default=8, help="Sync tasks run at once (default 8).")
        worker.add_argument("--async-limit", type=int, default=100,
                            help="async def tasks run at once (default 100).")
        worker.add_argument("--burst", action="store_true",
                            help="Run everything due, then exit (for tests and cron).")
        worker.add_argument("--grace", type=float, default=30.0,
                            help="Seconds running tasks get to finish after SIGTERM/SIGINT (default 30).")

    def handle(self, *args, **options) -> None:
        if options["subcommand"] == "worker":
            self.worker(options)

    def worker(self, options) -> None:
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
            self.stdout.write(f"loom worker {worker.id}: queues {', '.join(worker.queues or ['*'])}, "
                              f"{worker.threads} threads")
            self.stdout.flush()
        worker.run()
        if options["verbosity"] >= 1:
            self.stdout.write(f"loom worker {worker.id}: stopped after {worker.finished} tasks")
