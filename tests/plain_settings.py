"""Settings as a new user has them: ``startproject``'s SQLite database, with no OPTIONS (DEFERRED
transactions, a rollback journal, a 5 s busy timeout), plus loom and the suite's tasks.

Tests that must hold on those settings run processes with ``DJANGO_SETTINGS_MODULE`` set to this
module and ``LOOM_PLAIN_DB`` naming the database file.
"""

import os

import django

SECRET_KEY = "loom-plain-settings-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.plain_urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "loom",
    "tests.app",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # Django 5.2: the Tasks API is the django-tasks backport
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
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
STATIC_URL = "static/"
# Exactly what startproject writes, with the file moved where the test wants it.
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("LOOM_PLAIN_DB", "plain.sqlite3")}}
TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend", "QUEUES": ["default", "reports", "other"]}}
