"""loom.metrics: the Prometheus endpoint reads the table; worker processes count their own tasks."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import include, path

from loom.testing import run_tasks
from tests.app import tasks

urlpatterns = [path("loom/", include("loom.urls"))]
pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]


@pytest.fixture(autouse=True)
def needs_prometheus(settings):
    pytest.importorskip("prometheus_client", reason="loom.metrics needs prometheus-client")
    from loom import events

    settings.LOOM_EVENTS = {"BACKEND": "memory"}
    yield
    events.reset()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels} in:\n{text}")


def test_queue_depth_rows_and_recent_outcomes():
    from loom.metrics import render_metrics

    tasks.add.enqueue(1, 1)
    tasks.report.enqueue(2)
    tasks.fail.enqueue()
    run_tasks(queues=["default"])  # add and fail run; report waits
    tasks.add.enqueue(2, 2)
    body, content_type = render_metrics()
    text = body.decode()
    assert content_type.startswith("text/plain")
    assert sample(text, "loom_queue_depth", queue="reports", state="ready") == 1
    assert sample(text, "loom_queue_depth", queue="default", state="ready") == 1
    assert sample(text, "loom_tasks", status="failed") == 1
    assert sample(text, "loom_tasks_finished_recent", queue="default", status="successful") == 1
    assert sample(text, "loom_task_duration_recent_seconds", queue="default", quantile="0.5") >= 0


def test_recent_durations_are_measured_from_the_last_attempt():
    """The database computes each duration (its own date arithmetic on each database)."""
    import datetime as dt

    from django.utils import timezone

    from loom.metrics import render_metrics
    from loom.models import TaskRecord

    now = timezone.now()
    for seconds, retried in [(1.5, False), (2.5, True), (4.0, False)]:
        began = now - dt.timedelta(seconds=seconds)
        TaskRecord.objects.filter(pk=tasks.add.using(queue_name="other").enqueue(1, 1).id).update(
            status="SUCCESSFUL", finished_at=now,
            # A retried task's duration counts from its last attempt, not its first start.
            started_at=began - dt.timedelta(seconds=60) if retried else began,
            last_attempted_at=began if retried else None)
    text = render_metrics()[0].decode()
    assert sample(text, "loom_task_duration_recent_seconds", queue="other", quantile="0.5") == pytest.approx(2.5, abs=0.01)
    assert sample(text, "loom_task_duration_recent_seconds", queue="other", quantile="0.9") == pytest.approx(4.0, abs=0.01)


def test_process_counters_follow_task_finished():
    from loom import metrics

    metrics.install()
    before = metrics.process_registry().get_sample_value("loom_task_outcomes_total", {"queue": "default", "status": "failed"}) or 0
    tasks.fail.enqueue()
    tasks.add.enqueue(1, 2)
    run_tasks()
    registry = metrics.process_registry()
    assert registry.get_sample_value("loom_task_outcomes_total", {"queue": "default", "status": "failed"}) == before + 1
    assert registry.get_sample_value("loom_task_duration_seconds_count", {"queue": "default"}) >= 2


def test_endpoint_needs_staff_or_the_bearer_token(client, django_user_model, settings):
    assert client.get("/loom/metrics").status_code == 401
    member = Client()
    member.force_login(django_user_model.objects.create_user("m"))
    assert member.get("/loom/metrics").status_code == 403
    settings.LOOM_METRICS_TOKEN = "s3cret"
    assert client.get("/loom/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/loom/metrics", HTTP_AUTHORIZATION="Bearer s3cret")
    assert response.status_code == 200 and b"loom_queue_depth" in response.content
    staff = Client()
    staff.force_login(django_user_model.objects.create_user("s", is_staff=True))
    assert staff.get("/loom/metrics").status_code == 200
