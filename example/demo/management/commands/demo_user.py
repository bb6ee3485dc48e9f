"""``manage.py demo_user``: create (or reset) the demo's staff login and print it."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "demo"
PASSWORD = "demo-loom"


class Command(BaseCommand):
    help = "Create or reset the demo staff user (prints the credentials)."

    def handle(self, *args, **options):
        user, _ = get_user_model().objects.get_or_create(username=USERNAME)
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(PASSWORD)
        user.save()
        self.stdout.write(f"demo staff login: {USERNAME} / {PASSWORD}")
