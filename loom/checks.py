"""System checks: loom's settings are validated by ``manage.py check``, never at import time."""

from django.core import checks


@checks.register(checks.Tags.database)
def check_database_vendor(app_configs=None, databases=None, **kwargs):
    """Each loom backend's database must be one loom has SQL for."""
    from django.db import connections
    from django.tasks import task_backends

    from loom.backends.database import DatabaseBackend
    from loom.store import VENDOR_DIRS

    messages = []
    for backend in task_backends.all():
        if not isinstance(backend, DatabaseBackend):
            continue
        alias = backend.config.database
        if alias in connections.settings and connections[alias].vendor not in VENDOR_DIRS:
            messages.append(
                checks.Error(
                    f"Database {alias!r} ({connections[alias].vendor}) is not supported by loom.",
                    hint="Use PostgreSQL, SQLite or MySQL/MariaDB for OPTIONS['DATABASE'].",
                    id="loom.E002",
                )
            )
    return messages
