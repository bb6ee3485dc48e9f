"""System checks: loom's settings are validated by ``manage.py check``, never at import time."""

from django.core import checks

# Set by `manage.py loom worker`: checks about the web process's settings do not apply there.
in_worker = False


@checks.register()
def check_tasks_app(app_configs=None, **kwargs):
    """On Django 5.2 the backport's app must be installed: it wires Django's task signals'
    receivers and runs each backend's own checks."""
    from django.apps import apps

    from loom.compat import BACKPORT, BACKPORT_APP

    if BACKPORT and not apps.is_installed(BACKPORT_APP):
        return [
            checks.Error(
                f"Django's Tasks API comes from the django-tasks backport on this Django, but "
                f"{BACKPORT_APP!r} is not in INSTALLED_APPS.",
                hint=f"Add {BACKPORT_APP!r} to INSTALLED_APPS (next to 'loom').",
                id="loom.E130",
            )
        ]
    return []


@checks.register(checks.Tags.database)
def check_database_vendor(app_configs=None, databases=None, **kwargs):
    """Each loom backend's database must be one loom has SQL for."""
    from django.db import connections

    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends
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


@checks.register()
def check_sqlite_transactions(app_configs=None, **kwargs):
    """SQLite with DEFERRED transactions (Django's default) in the web process: a transaction that
    reads and then writes fails at once with "database is locked" while a worker writes. The
    worker configures its own connections (loom.databases); only the user can configure the web's."""
    from django.db import connections

    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends

    if in_worker:
        return []
    messages = []
    seen = set()
    for backend in task_backends.all():
        if not isinstance(backend, DatabaseBackend):
            continue
        alias = backend.config.database
        if alias in seen or alias not in connections.settings:
            continue
        seen.add(alias)
        settings = connections.settings[alias]
        mode = (settings.get("OPTIONS") or {}).get("transaction_mode")
        if settings["ENGINE"].endswith("sqlite3") and str(mode).upper() not in ("IMMEDIATE", "EXCLUSIVE"):
            messages.append(checks.Warning(
                f"Database {alias!r} is SQLite with DEFERRED transactions: in this process, a transaction "
                "that reads and then writes fails at once with 'database is locked' whenever a loom "
                "worker (or anything else) is writing.",
                hint=f"Add \"OPTIONS\": {{\"transaction_mode\": \"IMMEDIATE\", \"timeout\": 20}} to "
                     f"DATABASES[{alias!r}]. loom's worker already runs its own connections that way.",
                id="loom.W003",
            ))
    return messages


@checks.register(checks.Tags.database)  # with the vendor check: migrate and check --database
def check_listen_database(app_configs=None, databases=None, **kwargs):
    """OPTIONS['LISTEN_DATABASE'] and transaction poolers (see loom.pooler)."""
    from loom.backends.database import DatabaseBackend
    from loom.compat import task_backends
    from loom.pooler import check

    messages = []
    for backend in task_backends.all():
        if isinstance(backend, DatabaseBackend):
            messages += check(backend.alias, backend.config)
    return messages
