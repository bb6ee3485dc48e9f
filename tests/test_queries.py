"""The reads behind the dashboard, `loom status` and the metrics (loom.queries) count what is in
the table, on every database: each database computes the buckets and counts its own way."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from loom import queries
from loom.compat import task_backends
from loom.models import TaskRecord
from tests.app import tasks

pytestmark = pytest.mark.django_db


def _set(result, **fields) -> None:
    TaskRecord.objects.filter(pk=result.id).update(**fields)


def test_counts_buckets_and_keys_match_the_rows():
    backend = task_backends["default"]
    now = timezone.now()
    queries.forget_counts()  # a slow count cached by another test is not this table's
    for _ in range(2):
        tasks.noop.enqueue()
    _set(tasks.noop.enqueue(), status="RUNNING", claimed_by="w-1", started_at=now)
    tasks.noop.using(run_after=now + dt.timedelta(hours=1)).enqueue()
    tasks.noop.using(queue_name="other").enqueue()
    keyed = [tasks.noop.using(queue_name="reports").enqueue() for _ in range(3)]
    for result in keyed:
        _set(result, concurrency_key="customer-7", concurrency_limit=2)
    _set(keyed[0], status="RUNNING", claimed_by="w-1", started_at=now)

    five_ago, two_ago = now - dt.timedelta(minutes=5), now - dt.timedelta(minutes=2)
    for status, at in [("SUCCESSFUL", five_ago), ("SUCCESSFUL", five_ago), ("FAILED", five_ago),
                       ("CANCELLED", two_ago), ("SUCCESSFUL", now - dt.timedelta(hours=2))]:
        _set(tasks.noop.enqueue(), status=status, finished_at=at)

    rows = {q.name: q for q in queries.queue_rows(backend, timezone.now())}
    assert (rows["default"].ready, rows["default"].scheduled, rows["default"].running) == (2, 1, 1)
    assert rows["default"].failed_hour == 1
    assert (rows["other"].ready, rows["other"].running) == (1, 0)
    assert (rows["reports"].ready, rows["reports"].running) == (2, 1)

    buckets = {b.minute: b for b in queries.throughput(backend, now)}
    assert len(buckets) == queries.CHART_MINUTES
    minute = lambda t: t.astimezone(dt.UTC).replace(second=0, microsecond=0)  # noqa: E731
    assert (buckets[minute(five_ago)].successful, buckets[minute(five_ago)].failed) == (2, 1)
    assert buckets[minute(two_ago)].cancelled == 1
    assert sum(b.total for b in buckets.values()) == 4  # the one two hours ago is outside the chart

    [key] = queries.concurrency_keys(backend)
    assert (key.key, key.limit, key.running, key.waiting) == ("customer-7", 2, 1, 2)

    counts = queries.status_counts(backend, list(rows.values()))
    assert {s: counts[s] for s in ("READY", "RUNNING", "SUCCESSFUL", "FAILED", "CANCELLED")} == {
        "READY": 6, "RUNNING": 2, "SUCCESSFUL": 3, "FAILED": 1, "CANCELLED": 1}


def test_a_large_backlog_count_is_reused_for_a_moment_and_says_so(monkeypatch, client, django_user_model):
    """What a slow count of many waiting tasks does (here: any count of 2 or more, made "slow"):
    reused for ACTIVE_COUNT_TTL, the page says when it was taken, an operator's action forgets it.
    A small queue is always counted afresh (the other tests here, with the real thresholds)."""
    from loom.actions import perform

    backend = task_backends["default"]
    queries.forget_counts()
    monkeypatch.setattr(queries, "COUNT_SLOW", -1.0)
    monkeypatch.setattr(queries, "ACTIVE_REUSE_ROWS", 2)
    first = tasks.noop.enqueue()
    tasks.noop.enqueue()
    [row] = [q for q in queries.queue_rows(backend) if q.name == "default"]
    assert row.ready == 2 and row.counted_at is None  # taken now

    tasks.noop.enqueue()
    [row] = [q for q in queries.queue_rows(backend) if q.name == "default"]
    assert row.ready == 2 and row.counted_at is not None  # reused, and dated
    counts = queries.status_counts(backend)
    assert counts["READY"] == 2 and counts.active_as_of == row.counted_at
    client.force_login(django_user_model.objects.create_user("staff", is_staff=True, is_superuser=True))
    with override_settings(ROOT_URLCONF="tests.plain_urls"):
        assert "counted at" in client.get("/loom/").content.decode()
        assert "ready and running counted at" in client.get("/loom/tasks/").content.decode()

    perform(backend, "cancel", [first.id])
    [row] = [q for q in queries.queue_rows(backend) if q.name == "default"]
    assert row.ready == 2 and row.counted_at is None  # 3 waiting, one cancelled: counted afresh

    monkeypatch.setattr(queries, "ACTIVE_REUSE_ROWS", 100)  # a small queue: never reused
    queries.forget_counts()
    queries.queue_rows(backend)
    tasks.noop.enqueue()
    [row] = [q for q in queries.queue_rows(backend) if q.name == "default"]
    assert row.ready == 3 and row.counted_at is None
