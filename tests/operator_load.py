"""Operator actions in a loop, as a web process and ``manage.py`` run them, for a test to watch.

Run with ``tests.plain_settings`` while a worker writes to the same SQLite file: each round
enqueues tasks due in an hour, cancels them on the dashboard, retries half with ``loom retry``
and deletes the rest with the admin's action and its delete page, then checks the rows. Prints one JSON line:
rounds done and every error met (an exception, a response that is not a redirect, a row in the
wrong state).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import time


def main(seconds: float) -> dict:
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from loom.models import TaskRecord
    from tests.app import tasks

    user = User.objects.create_superuser("operator", "operator@example.com", None)
    client = Client()
    client.force_login(user)
    rounds, errors = 0, []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            later = tasks.add.using(run_after=timezone.now() + dt.timedelta(hours=1))
            ids = [later.enqueue(rounds, i).id for i in range(6)]
            response = client.post("/loom/tasks/bulk/", {"action": "cancel", "ids": ids})
            if response.status_code != 302:
                errors.append(f"dashboard cancel answered {response.status_code}")
            call_command("loom", "retry", *ids[:3], stdout=io.StringIO())
            response = client.post("/admin/loom/taskrecord/",
                                   {"action": "delete_selected", "_selected_action": ids[3:5]})
            if response.status_code != 302:
                errors.append(f"admin delete action answered {response.status_code}")
            response = client.post(f"/admin/loom/taskrecord/{ids[5]}/delete/", {"post": "yes"})
            if response.status_code != 302:
                errors.append(f"admin delete page answered {response.status_code}")
            states = dict(TaskRecord.objects.filter(pk__in=ids).values_list("pk", "status"))
            if len(states) != 3 or not set(states.values()) <= {"READY", "RUNNING", "SUCCESSFUL"}:
                errors.append(f"round {rounds}: rows left {sorted(states.values())}")
        except Exception as exc:  # every error is the finding: report it, keep going
            errors.append(f"{type(exc).__name__}: {exc}")
        rounds += 1
    return {"rounds": rounds, "errors": errors}


if __name__ == "__main__":
    print(json.dumps(main(float(sys.argv[1]))))
