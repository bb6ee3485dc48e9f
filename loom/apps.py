"""App config: registers loom's system checks and connects its signal receivers (task lifecycle
events, progress context). Nothing touches the database at import or ready() time."""

from django.apps import AppConfig


class LoomConfig(AppConfig):
    name = "loom"
    verbose_name = "Loom tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, events, progress  # noqa: F401  (registers checks and receivers)
