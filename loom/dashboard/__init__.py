"""The loom dashboard: server-rendered pages for staff, included with
``path("loom/", include("loom.urls"))``.

- ``views``: overview (queue depths, running, failed in the last hour, throughput chart),
  workers, tasks (filter and search), one task (its attempts as a history), periodic schedules.
  Read-only. Every task is described in ``loom.phase``'s words, the same in every list and page.
- ``live``: one server-sent event stream per open page that sends its region again whenever
  the data behind it changes; ``static/loom/dashboard.js`` patches it in place.
- ``actions``: retry, cancel and delete, POST only, CSRF-protected, and allowed by Django
  permissions (``loom.change_taskrecord`` to retry or cancel, ``loom.delete_taskrecord`` to
  delete; superusers have both). What they do is ``loom.actions``, shared with the admin and CLI.
- ``access``: who may see it (active staff; anonymous users are sent to the login page,
  others get 403). The reads are ``loom.queries``.

It refuses to be a second admin: no editing of rows. It needs ``django.contrib.auth``,
``AuthenticationMiddleware`` and ``APP_DIRS`` templates; ``django.contrib.messages`` is used when
installed. Nothing outside the web layer imports this package.
"""
