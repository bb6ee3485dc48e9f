"""Settings of the loom demo: ``startproject``'s SQLite database, one DatabaseBackend with a
periodic task, the dashboard at /loom/.

The database gets only the two OPTIONS that loom's system check (loom.W003) asks of a web
process on SQLite; the worker configures its own connections (and switches the file to WAL).
``LOOM_DEMO_DB`` moves the database file (the browser tests use a temporary one). Not for
production: DEBUG is on so that ``runserver`` serves the static files.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "loom-demo-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "loom",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "demo_site.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
WSGI_APPLICATION = "demo_site.wsgi.application"
ASGI_APPLICATION = "demo_site.asgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LOOM_DEMO_DB", str(BASE_DIR / "db.sqlite3")),
        # The web process's own transactions queue for the write lock instead of failing at once
        # with "database is locked" while the worker writes.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }
}

TASKS = {
    "default": {
        "BACKEND": "loom.backends.DatabaseBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {
            # Cron with a sixth field for seconds: every 10 seconds. Read in UTC by the worker's
            # scheduler; the Schedules page shows its last tick and its next run.
            "PERIODIC": {"demo-tick": {"task": "demo.tasks.tick", "cron": "* * * * * */10"}},
        },
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "/admin/login/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"loom": {"handlers": ["console"], "level": "INFO"}},
}
