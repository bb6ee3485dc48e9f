"""Django admin for loom's tables: read-only rows, useful filters, actions that go through Store."""

from __future__ import annotations

import pytest
from django.contrib import admin as django_admin
from django.test import Client
from django.urls import path

from loom.models import LeaderLease, PeriodicTick, TaskRecord, WorkerRecord
from loom.testing import run_tasks
from tests.app import tasks

urlpatterns = [path("admin/", django_admin.site.urls)]
pytestmark = [pytest.mark.usefixtures("memory_events"), pytest.mark.urls(__name__), pytest.mark.django_db]

CHANGELIST = "/admin/loom/taskrecord/"


@pytest.fixture
def boss(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.com", None))
    return client


@pytest.fixture
def failed():
    result = tasks.fail.enqueue("admin boom")
    run_tasks()
    return result


def act(client, action: str, ids: list[str]):
    return client.post(CHANGELIST, {"action": action, "_selected_action": ids}, follow=True)


def test_every_model_is_registered_read_only(boss):
    for model in (TaskRecord, WorkerRecord, LeaderLease, PeriodicTick):
        model_admin = django_admin.site._registry[model]
        assert not model_admin.has_add_permission(None)
        assert not model_admin.has_change_permission(None)
    assert boss.get("/admin/loom/taskrecord/add/").status_code == 403


def test_changelist_filters_and_search_by_id(boss, failed):
    ok = tasks.add.enqueue(1, 1)
    page = boss.get(CHANGELIST).content.decode()
    for facet in ("By status", "By queue name", "By task path"):
        assert facet in page
    page = boss.get(CHANGELIST, {"status__exact": "FAILED"}).content.decode()
    assert failed.id in page and ok.id not in page and '<td class="field-phase_shown">Failed</td>' in page
    page = boss.get(CHANGELIST, {"q": ok.id}).content.decode()
    assert ok.id in page and failed.id not in page
    page = boss.get(CHANGELIST, {"q": "tests.app.tasks.fail"}).content.decode()
    assert failed.id in page and ok.id not in page


def test_detail_page_shows_the_error(boss, failed):
    page = boss.get(f"{CHANGELIST}{failed.id}/change/").content.decode()
    assert "admin boom" in page and "builtins.ValueError" in page


def test_actions_retry_cancel_and_safe_delete(boss, failed):
    page = boss.get(CHANGELIST).content.decode()
    assert "Delete selected tasks that are not running" in page and "retry_tasks" in page
    act(boss, "retry_tasks", [failed.id])
    assert TaskRecord.objects.get(pk=failed.id).status == "READY"
    act(boss, "cancel_tasks", [failed.id])
    assert TaskRecord.objects.get(pk=failed.id).status == "CANCELLED"
    running = tasks.add.enqueue(1, 2)
    TaskRecord.objects.filter(pk=running.id).update(status="RUNNING", claimed_by="w")
    response = act(boss, "delete_selected", [failed.id, running.id])
    page = response.content.decode()
    assert "1 of 2 tasks deleted" in page and "is RUNNING, cannot delete" in page
    assert not TaskRecord.objects.filter(pk=failed.id).exists()
    assert TaskRecord.objects.filter(pk=running.id).exists()
    assert boss.get(f"{CHANGELIST}{running.id}/delete/").status_code == 403


def test_delete_view_goes_through_store(boss, failed):
    response = boss.post(f"{CHANGELIST}{failed.id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not TaskRecord.objects.filter(pk=failed.id).exists()


def test_actions_need_permissions(django_user_model, failed):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_taskrecord"))
    client = Client()
    client.force_login(user)
    page = client.get(CHANGELIST).content.decode()
    assert failed.id in page and "retry_tasks" not in page and "delete_selected" not in page
    act(client, "retry_tasks", [failed.id])
    assert TaskRecord.objects.get(pk=failed.id).status == "FAILED"
