"""The loom dashboard: server-rendered pages for staff, included with
``path("loom/", include("loom.urls"))``.

- ``views``: overview (queue depths, running, failed in the last hour, throughput chart),
  workers, tasks (filter and search), task detail, periodic schedules. Read-only.
- ``actions``: retry, cancel and delete, POST only, CSRF-protected, and allowed by Django
  permissions (``loom.change_taskrecord`` to retry or cancel, ``loom.delete_taskrecord`` to
  delete; superusers have both). Every write goes through ``loom.store.Store``.
- ``access``: who may see it (active staff; anonymous users are sent to the login page,
  others get 403). ``queries``: the reads behind the pages.

It refuses to be a second admin: no editing of rows. It needs ``django.contrib.auth``,
``AuthenticationMiddleware`` and ``APP_DIRS`` templates; ``django.contrib.messages`` is used when
installed.
"""
