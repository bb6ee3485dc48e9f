"""The dashboard: who may see and act, what each page shows, and that actions change the rows."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import include, path, reverse
from django.utils import timezone

from loom.models import PeriodicTick, TaskRecord
from loom.testing import run_tasks
from tests.app import progress_tasks as pt
from tests.app import tasks

urlpatterns = [path("loom/", include("loom.urls")), path("admin/", __import__("django.contrib.admin").contrib.admin.site.urls)]
pytestmark = [pytest.mark.usefixtures("memory_events"), pytest.mark.urls(__name__), pytest.mark.django_db]

ID = "01920000-0000-7000-8000-000000000000"
PAGES = ["loom:overview", "loom:workers", "loom:tasks", "loom:schedules"]


@pytest.fixture
def failed():
    result = tasks.fail.enqueue("dashboard boom")
    run_tasks()
    return result


@pytest.fixture
def admin(django_user_model):
    user = django_user_model.objects.create_superuser("boss", "boss@example.com", None)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def staff_readonly(django_user_model):
    user = django_user_model.objects.create_user("viewer", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def member(django_user_model):
    user = django_user_model.objects.create_user("member")
    client = Client()
    client.force_login(user)
    return client


def every_url(task_id: str) -> list[tuple[str, str]]:
    urls = [("get", reverse(name)) for name in PAGES]
    urls.append(("get", reverse("loom:task", args=[task_id])))
    urls += [("post", reverse("loom:task-action", args=[task_id, a])) for a in ("retry", "cancel", "delete")]
    urls.append(("post", reverse("loom:bulk-action")))
    urls += [("post", reverse("loom:queue-action", args=["default", a])) for a in ("pause", "resume")]
    urls.append(("get", reverse("loom:live") + "?url=/loom/"))
    return urls


# -- access ---------------------------------------------------------------------------------------

def test_anonymous_users_are_sent_to_the_login_page_everywhere(client, failed):
    for method, url in every_url(failed.id):
        response = getattr(client, method)(url, {"action": "retry", "ids": [failed.id]} if method == "post" else None)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/?next="), url
    assert TaskRecord.objects.get(pk=failed.id).status == "FAILED"  # no action went through


def test_signed_in_non_staff_get_403_everywhere(member, failed):
    for method, url in every_url(failed.id):
        response = getattr(member, method)(url, {"action": "delete", "ids": [failed.id]} if method == "post" else None)
        assert response.status_code == 403, url
    assert TaskRecord.objects.filter(pk=failed.id).exists()


def test_staff_without_permissions_can_look_but_not_act(staff_readonly, failed):
    for name in PAGES:
        assert staff_readonly.get(reverse(name)).status_code == 200
    page = staff_readonly.get(reverse("loom:task", args=[failed.id])).content.decode()
    assert "dashboard boom" in page and ">Retry<" not in page  # no buttons it cannot use
    for action in ("retry", "cancel", "delete"):
        assert staff_readonly.post(reverse("loom:task-action", args=[failed.id, action])).status_code == 403
    assert TaskRecord.objects.get(pk=failed.id).status == "FAILED"


def test_permission_is_per_action(django_user_model, failed):
    user = django_user_model.objects.create_user("retrier", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="change_taskrecord"))
    client = Client()
    client.force_login(user)
    assert client.post(reverse("loom:task-action", args=[failed.id, "delete"])).status_code == 403
    assert client.post(reverse("loom:task-action", args=[failed.id, "retry"])).status_code == 302
    assert TaskRecord.objects.get(pk=failed.id).status == "READY"


def test_actions_without_csrf_token_fail(django_user_model, failed):
    user = django_user_model.objects.create_superuser("csrf", "c@example.com", None)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    url = reverse("loom:task-action", args=[failed.id, "retry"])
    assert client.post(url).status_code == 403
    assert client.post(reverse("loom:bulk-action"), {"action": "retry", "ids": [failed.id]}).status_code == 403
    assert TaskRecord.objects.get(pk=failed.id).status == "FAILED"
    page = client.get(reverse("loom:task", args=[failed.id])).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    assert client.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    assert TaskRecord.objects.get(pk=failed.id).status == "READY"


def test_actions_refuse_get(admin, failed):
    assert admin.get(reverse("loom:task-action", args=[failed.id, "retry"])).status_code == 405
    assert admin.post(reverse("loom:task-action", args=[failed.id, "explode"])).status_code == 403


# -- actions --------------------------------------------------------------------------------------

def test_retry_cancel_delete_one_task(admin, failed):
    response = admin.post(reverse("loom:task-action", args=[failed.id, "retry"]), follow=True)
    assert "queued to run again" in response.content.decode()
    assert TaskRecord.objects.get(pk=failed.id).status == "READY"
    admin.post(reverse("loom:task-action", args=[failed.id, "cancel"]))
    assert TaskRecord.objects.get(pk=failed.id).status == "CANCELLED"
    response = admin.post(reverse("loom:task-action", args=[failed.id, "delete"]))
    assert response["Location"] == reverse("loom:tasks")
    assert not TaskRecord.objects.filter(pk=failed.id).exists()


def test_action_in_the_wrong_state_says_so(admin):
    ready = tasks.add.enqueue(1, 2)
    response = admin.post(reverse("loom:task-action", args=[ready.id, "retry"]), follow=True)
    assert "was not changed: it is READY, cannot retry (needs CANCELLED or FAILED)" in response.content.decode()
    assert TaskRecord.objects.get(pk=ready.id).status == "READY"


def test_bulk_action_and_safe_redirect(admin):
    ids = [tasks.add.enqueue(i, i).id for i in range(3)]
    response = admin.post(reverse("loom:bulk-action"), {"action": "cancel", "ids": ids + ["junk"],
                                                         "next": "https://evil.example/"})
    assert response["Location"] == reverse("loom:tasks")  # an off-site next is ignored
    assert set(TaskRecord.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"CANCELLED"}
    response = admin.post(reverse("loom:bulk-action"), {"action": "delete", "ids": ids, "next": "/loom/tasks/?status=CANCELLED"})
    assert response["Location"] == "/loom/tasks/?status=CANCELLED"
    assert not TaskRecord.objects.filter(pk__in=ids).exists()
    response = admin.post(reverse("loom:bulk-action"), {"action": "retry"}, follow=True)
    assert "Select at least one task" in response.content.decode()


def test_cancelling_a_running_task_asks_its_worker(admin):
    running = pt.count.enqueue(1)
    TaskRecord.objects.filter(pk=running.id).update(status="RUNNING", claimed_by="w1")
    admin.post(reverse("loom:task-action", args=[running.id, "cancel"]))
    row = TaskRecord.objects.get(pk=running.id)
    assert row.status == "RUNNING" and row.cancel_requested
    admin.post(reverse("loom:task-action", args=[running.id, "delete"]))
    assert TaskRecord.objects.filter(pk=running.id).exists()  # never deleted under its worker


# -- pages ----------------------------------------------------------------------------------------

def test_overview_shows_queues_counts_and_the_chart(admin, failed):
    tasks.add.enqueue(1, 1)
    tasks.report.enqueue(3)
    page = admin.get(reverse("loom:overview")).content.decode()
    assert re.search(r'data-label="Queue"><a [^>]+>reports</a>', page)
    assert re.search(r'ld-stat__value">1</span><span class="ld-stat__label">Failed, last hour', page)
    assert page.count('class="ld-chart__bad"') == 1 and "1 finished in the last hour" in page


def test_queues_pause_and_resume_from_the_overview_with_their_limits(admin, staff_readonly, settings):
    from loom import queues

    queues.set_limits("reports", concurrency=2, rate="30/m")
    page = admin.get(reverse("loom:overview")).content.decode()
    row = re.search(r'data-key="q-reports">(.*?)</tr>', page, re.S)[1]
    assert "≤ 2 at once" in row and "≤ 30/m" in row and ">Pause<" in row and "data-paused" not in row
    assert ">Pause<" not in staff_readonly.get(reverse("loom:overview")).content.decode()
    assert staff_readonly.post(reverse("loom:queue-action", args=["reports", "pause"])).status_code == 403
    assert not queues.is_paused("reports")

    response = admin.post(reverse("loom:queue-action", args=["reports", "pause"]), follow=True)
    assert "Queue reports paused" in response.content.decode() and queues.is_paused("reports")
    row = re.search(r'data-key="q-reports">(.*?)</tr>', response.content.decode(), re.S)[1]
    assert "data-paused" in row and ">Resume<" in row
    admin.post(reverse("loom:queue-action", args=["reports", "resume"]))
    assert not queues.is_paused("reports")
    assert admin.post(reverse("loom:queue-action", args=["reports", "explode"])).status_code == 403
    response = admin.post(reverse("loom:queue-action", args=["nosuch", "pause"]), follow=True)
    assert "is not in TASKS" in response.content.decode()


def test_keys_show_on_the_overview_and_the_task_page(admin):
    from loom.compat import SUPPORTS_TASK_OPTIONS

    if not SUPPORTS_TASK_OPTIONS:
        pytest.skip("per-task options need Django 6.1 or 5.2's backport")
    keyed = tasks.add.using(concurrency_key="tenant-7", concurrency_limit=3, fair_key="tenant-7",
                            unique_key="sum-7")
    result = keyed.enqueue(3, 4)
    page = admin.get(reverse("loom:overview")).content.decode()
    row = re.search(r'data-key="k-tenant-7">(.*?)</tr>', page, re.S)[1]
    assert re.findall(r'ld-num">(\d+|—)<', row) == ["0", "3", "1"]  # running, limit, waiting
    detail = admin.get(reverse("loom:task", args=[result.id])).content.decode()
    assert "tenant-7 (at most 3 at once)" in detail and "sum-7" in detail and "data-fair-key" in detail


def test_task_list_filters_and_searches(admin, failed):
    ok = tasks.add.enqueue(2, 2)
    page = admin.get(reverse("loom:tasks"), {"status": "FAILED"}).content.decode()
    assert failed.id in page and ok.id not in page
    page = admin.get(reverse("loom:tasks"), {"task": "add"}).content.decode()
    assert ok.id in page and failed.id not in page
    page = admin.get(reverse("loom:tasks"), {"q": ok.id}).content.decode()
    assert ok.id in page and failed.id not in page
    page = admin.get(reverse("loom:tasks"), {"q": "nonsense"}).content.decode()
    assert "is not a task id" in page and "No tasks match" in page
    page = admin.get(reverse("loom:tasks"), {"queue": "reports"}).content.decode()
    assert "No tasks match" in page


def test_task_list_pages_without_counting(admin):
    from loom.queries import PAGE_SIZE

    tasks.add.using(queue_name="other").get_backend().enqueue_many(tasks.add, [((i, i), {}) for i in range(PAGE_SIZE + 2)])
    first = admin.get(reverse("loom:tasks")).content.decode()
    assert "Older →" in first and "← Newer" not in first
    second = admin.get(reverse("loom:tasks"), {"page": 2}).content.decode()
    assert second.count('name="ids"') == 2 and "← Newer" in second and "Older →" not in second


def test_task_detail_shows_arguments_attempts_and_the_error(admin, failed):
    page = admin.get(reverse("loom:task", args=[failed.id])).content.decode()
    assert "tests.app.tasks.fail" in page and '[&quot;dashboard boom&quot;]' in page  # short JSON: one line
    assert "After 1 attempt: ValueError: dashboard boom." in page  # class and message, in the header
    assert re.search(r'<summary class="ld-mono" title="builtins.ValueError">ValueError: dashboard boom</summary>', page)
    assert "<details class=\"ld-error\">" in page and "Traceback (most recent call last)" in page  # folded
    assert 'data-attempts>1 of 1<' in page and ">Retry<" in page and ">Delete<" in page and ">Cancel<" not in page
    assert admin.get(reverse("loom:task", args=[ID])).status_code == 404
    assert admin.get("/loom/tasks/not-a-uuid/").status_code == 404


def test_task_detail_of_a_running_task_shows_this_attempts_bar(admin):
    running = pt.count.enqueue(4)
    now = timezone.now()
    TaskRecord.objects.filter(pk=running.id).update(status="RUNNING", attempts=2, max_attempts=3, claimed_by="w2",
                                                    worker_ids=["w1", "w2"], last_attempted_at=now, started_at=now,
                                                    progress_current=1, progress_total=4, progress_at=now)
    page = admin.get(reverse("loom:task", args=[running.id])).content.decode()
    assert 'data-loom-live="/loom/live/?url=' in page and "data-loom-events" not in page  # the region stream drives it
    assert 'data-loom-field="percent">25%<' in page and 'data-loom-field="status">running<' in page
    assert "Attempt 2 of 3 on w2." in page
    assert 'data-workers>w1, w2<' in page
    TaskRecord.objects.filter(pk=running.id).update(progress_at=now - dt.timedelta(seconds=1))
    page = admin.get(reverse("loom:task", args=[running.id])).content.decode()
    assert 'data-loom-field="percent"><' in page  # that report came from attempt 1


def test_lists_and_pages_use_the_same_words(admin, failed):
    stopping, cancelled = pt.count.enqueue(1), tasks.add.enqueue(1, 1)
    TaskRecord.objects.filter(pk=stopping.id).update(status="RUNNING", attempts=1, claimed_by="w1", cancel_requested=True)
    TaskRecord.objects.filter(pk=cancelled.id).update(status="CANCELLED", cancel_requested=True, attempts=1)
    listed = admin.get(reverse("loom:tasks")).content.decode()
    for task_id, label in [(stopping.id, "Stopping"), (cancelled.id, "Cancelled"), (failed.id, "Failed")]:
        row = re.search(rf'data-task-row="{task_id}".*?</tr>', listed, re.S)[0]
        assert f"data-phase>{label}<" in row, (label, row)
        page = admin.get(reverse("loom:task", args=[task_id])).content.decode()
        assert re.search(rf'data-task-status="[A-Z]+">{label}<', page), label
    assert "cancelling" not in listed and "cancel requested" not in admin.get(reverse("loom:task", args=[cancelled.id])).content.decode()
    assert "ValueError: dashboard boom" in re.search(rf'data-task-row="{failed.id}".*?</tr>', listed, re.S)[0]


def test_workers_page_shows_liveness_and_current_tasks(admin):
    from loom.compat import task_backends

    store = task_backends["default"].store
    now = timezone.now()
    store.register_worker("host-1-alive", queues=["default"], concurrency={"threads": 4}, now=now)
    store.register_worker("host-2-gone", queues=[], concurrency={}, now=now - dt.timedelta(hours=1))
    store.worker_beat("host-2-gone", now - dt.timedelta(hours=1), 7)
    running = pt.count.enqueue(1)
    TaskRecord.objects.filter(pk=running.id).update(status="RUNNING", claimed_by="host-1-alive")
    page = admin.get(reverse("loom:workers")).content.decode()
    assert page.index("host-1-alive") < page.index("host-2-gone")  # alive first
    assert "no heartbeat" in page and "tests.app.progress_tasks.count" in page
    store.worker_stopped("host-1-alive", now, 3)
    assert ">stopped<" in admin.get(reverse("loom:workers")).content.decode()


def test_schedules_page_reads_periodic_options_with_last_tick(admin, settings):
    settings.TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend", "QUEUES": ["default", "reports", "other"],
                                  "OPTIONS": {"PERIODIC": {"nightly": {"task": "tests.app.tasks.noop", "cron": "0 3 * * *"}}}}}
    PeriodicTick.objects.create(schedule="nightly", tick_at=timezone.now(), task_id=ID)
    page = admin.get(reverse("loom:schedules")).content.decode()
    assert "nightly" in page and "0 3 * * *" in page and f"/loom/tasks/{ID}/" in page
    next_run = re.search(r'data-label="Next run">([^<]+)<', page)[1]
    assert next_run.endswith("03:00:00")
    settings.TASKS = {"default": {"BACKEND": "loom.backends.DatabaseBackend", "QUEUES": ["default"]}}
    assert "No periodic schedules" in admin.get(reverse("loom:schedules")).content.decode()
