"""App config: registers loom's system checks and connects its signal receivers (task lifecycle
events, progress context). Nothing touches the database at import or ready() time."""

from django.apps import AppConfig


class LoomConfig(AppConfig):
    name = "loom"
    verbose_name = "Loom tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from . import checks, events, progress  # noqa: F401  (registers checks and receivers)
        from .databases import json_as_text

        connection_created.connect(json_as_text, dispatch_uid="loom.json_as_text")
