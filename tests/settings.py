"""Settings for loom's own suite. ``LOOM_TEST_DB`` picks the database: sqlite, postgresql, mysql.

Worker subprocesses started by tests use these settings too; ``LOOM_TEST_DB_NAME`` points them at
the test database that pytest-django created.
"""

import os
import tempfile

import django

DB = os.environ.get("LOOM_TEST_DB", "sqlite")
SECRET_KEY = "loom-tests-not-secret"
USE_TZ = True
TIME_ZONE = "UTC"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.admin",
    "loom",
    "tests.app",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # Django 5.2: the Tasks API is the django-tasks backport
MIDDLEWARE = [
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
STATIC_URL = "/static/"

_test_name = os.environ.get("LOOM_TEST_DB_NAME")
if DB == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _test_name or "test",
            "USER": "postgres",
            "HOST": os.environ.get("LOOM_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("LOOM_PG_PORT", "5432"),
            "TEST": {"NAME": _test_name or f"test_loom_{os.getpid()}"},
        }
    }
elif DB == "mysql":
    # The driver: mysqlclient (Django's recommendation) or PyMySQL; `make test` runs Django 6.1 on
    # the first and 6.0 and 5.2 on the second.
    MYSQL_DRIVER = os.environ.get("LOOM_MYSQL_DRIVER", "mysqlclient")
    if MYSQL_DRIVER == "pymysql":
        import pymysql

        # Django checks mysqlclient's version; PyMySQL speaks the same DB-API (see docs/design.md).
        pymysql.version_info = (2, 2, 7, "final", 0)
        pymysql.install_as_MySQLdb()
    elif MYSQL_DRIVER != "mysqlclient":
        raise ValueError(f"LOOM_MYSQL_DRIVER is {MYSQL_DRIVER!r}; use mysqlclient or pymysql.")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "NAME": _test_name or "test",
            "USER": "root",
            "PASSWORD": "",
            "HOST": os.environ.get("LOOM_MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("LOOM_MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4", "isolation_level": "read committed"},
            "TEST": {"NAME": _test_name or f"test_loom_{os.getpid()}", "CHARSET": "utf8mb4"},
        }
    }
else:
    # As `startproject` writes it: no OPTIONS (DEFERRED transactions, 5 s busy timeout). The
    # worker tunes its own connections (loom.databases); the suite runs on the users' settings.
    _path = _test_name or os.path.join(tempfile.gettempdir(), f"loom-test-{os.getpid()}.sqlite3")
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _path,
            "TEST": {"NAME": _path},
        }
    }

# A test that needs connections kept between tasks (CONN_MAX_AGE) sets this for its workers.
if os.environ.get("LOOM_TEST_CONN_MAX_AGE"):
    _age = os.environ["LOOM_TEST_CONN_MAX_AGE"]
    DATABASES["default"]["CONN_MAX_AGE"] = None if _age == "none" else float(_age)

TASKS = {
    "default": {
        "BACKEND": "loom.backends.DatabaseBackend",
        "QUEUES": ["default", "reports", "other"],
        # Tests that kill workers shorten the lease so rescues happen within the test.
        "OPTIONS": {
            "LEASE_SECONDS": float(os.environ.get("LOOM_TEST_LEASE_SECONDS", "30")),
            "LOST_RETRIES": int(os.environ.get("LOOM_TEST_LOST_RETRIES", "5")),
        },
    },
}

# Events stay in-process in the suite, so no publisher connection outlives a test database.
LOOM_EVENTS = {"BACKEND": "memory"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"loom": {"handlers": ["console"], "level": "WARNING"}},
}
