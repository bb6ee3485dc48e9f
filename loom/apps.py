"""App config: registers loom's system checks; nothing runs at import or ready() time."""

from django.apps import AppConfig


class LoomConfig(AppConfig):
    name = "loom"
    verbose_name = "Loom tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the checks)
