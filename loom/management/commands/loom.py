"""``manage.py loom <subcommand>``: a thin dispatcher over the modules in ``loom.cli``."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser

from loom.cli import subcommands


class Command(BaseCommand):
    help = "loom: worker and task administration. `manage.py loom <subcommand> --help` for each."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, parser_class=CommandParser,
                                    metavar="{" + ",".join(sorted(subcommands())) + "}")
        for name, module in sorted(subcommands().items()):
            module.add_arguments(sub.add_parser(name, help=module.help, description=module.help))

    def execute(self, *args, **options):
        if options.get("subcommand") == "worker":
            from loom import checks

            checks.in_worker = True  # the worker configures its own connections (see loom.W003)
            # A worker starts in a fraction of a second, a quarter of it Django's system checks
            # (a real project's URLconf and models: more). They belong to deploys and
            # `manage.py check`, as with Celery's worker; loom's own settings are validated when
            # the backend is built.
            options["skip_checks"] = True
        return super().execute(*args, **options)

    def handle(self, *args, **options) -> None:
        subcommands()[options["subcommand"]].run(self, options)
