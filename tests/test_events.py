"""loom.events: the hub, the brokers (in-process, PostgreSQL NOTIFY, Redis) and task events."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest
from django.test import override_settings

from loom import events
from loom.testing import run_tasks
from tests.app import progress_tasks as pt

DB = os.environ.get("LOOM_TEST_DB", "sqlite")
# Longest a test waits for an event that travels through a server.
DEADLINE = 10.0


@pytest.fixture(autouse=True)
def memory_events(settings):
    """In-process delivery unless a test picks a broker itself (network brokers are tested below)."""
    settings.LOOM_EVENTS = {"BACKEND": "memory"}
    yield
    events.reset()


def drain(subscription, timeout: float = 0.0) -> list[events.Event]:
    found = []
    while (event := subscription.get(timeout)) is not None:
        found.append(event)
    return found


# -- the hub and the in-process broker ------------------------------------------------------------

def test_send_reaches_subscribers_of_the_group_only():
    with events.subscribe("orders.1") as mine, events.subscribe("orders.2") as other:
        events.send("orders.1", {"type": "paid", "amount": 5})
        got = mine.get(1)
        assert got.group == "orders.1" and got.type == "paid" and got.payload["amount"] == 5
        assert other.get(0) is None


def test_publish_to_several_groups_delivers_once_per_subscriber():
    with events.subscribe("a", "b") as both:
        events.publish(["a", "b"], {"n": 1})
        assert [e.payload["n"] for e in drain(both)] == [1]


def test_closed_subscriptions_leave_the_hub():
    before = events.hub.subscriber_count()
    subscription = events.subscribe("gone.soon")
    assert events.hub.subscriber_count("gone.soon") == 1
    subscription.close()
    assert events.hub.subscriber_count("gone.soon") == 0
    assert events.hub.subscriber_count() == before
    assert subscription.get(0.01) is None  # reading a closed subscription returns at once


def test_a_slow_subscriber_loses_the_oldest_events_not_the_publisher():
    with events.subscribe("busy", maxsize=3) as slow:
        for i in range(10):
            events.send("busy", {"i": i})
        assert [e.payload["i"] for e in drain(slow)] == [7, 8, 9]
        assert slow.dropped == 7


@pytest.mark.parametrize("group", ["", "has space", "colon:bad", "x" * 100, 5])
def test_bad_group_names_are_refused_with_the_rule(group):
    with pytest.raises(ValueError, match="ASCII letters, digits"):
        events.send(group, {})


def test_payload_must_be_json():
    with events.subscribe("json.check"):
        with pytest.raises(TypeError, match="not JSON"):
            events.send("json.check", {"when": object()})
    with pytest.raises(TypeError, match="must be a dict"):
        events.send("json.check", ["not", "a", "dict"])


def test_async_subscription_waits_on_the_loop():
    async def scenario():
        subscription = events.asubscribe("async.group")
        try:
            loop = asyncio.get_running_loop()
            # Published from another thread, as a worker thread would.
            loop.call_later(0.01, lambda: loop.run_in_executor(None, events.send, "async.group", {"v": 1}))
            event = await subscription.aget(DEADLINE)
            assert event is not None and event.payload == {"v": 1}
            assert await subscription.aget(0.01) is None
        finally:
            subscription.close()

    asyncio.run(scenario())


def test_sync_subscription_refuses_aget():
    with events.subscribe("sync.only") as subscription:
        with pytest.raises(RuntimeError, match="asubscribe"):
            asyncio.run(subscription.aget(0))


@pytest.mark.parametrize("value, words", [
    ({"BACKEND": "kafka"}, "use auto, memory, postgresql, redis or none"),
    ({"NOPE": 1}, "Unknown LOOM_EVENTS key"),
    ({"CHANNEL": "bad-name"}, "letters, digits and _"),
    ("memory", "must be a dict"),
])
def test_bad_configuration_names_the_problem(value, words):
    from django.core.exceptions import ImproperlyConfigured

    with override_settings(LOOM_EVENTS=value):
        with pytest.raises(ImproperlyConfigured, match=words):
            events.get_broker()
    events.reset()


def test_none_backend_publishes_nothing():
    with override_settings(LOOM_EVENTS={"BACKEND": "none"}):
        with events.subscribe("quiet") as subscription:
            events.send("quiet", {})
            assert subscription.get(0) is None
    assert events.get_broker().name == "memory"  # the override ended: back to the fixture's


def test_channels_bridge_without_channels_says_how_to_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "channels.layers", None)  # as if Channels were not installed
    with override_settings(LOOM_EVENTS={"BACKEND": "memory", "CHANNELS_BRIDGE": True}):
        with pytest.raises(ImportError, match="pip install django-loom\\[channels\\]"):
            events.send("bridge.test", {})


# -- task lifecycle events ------------------------------------------------------------------------

@pytest.mark.django_db
def test_task_events_follow_the_task_in_order(django_capture_on_commit_callbacks, monkeypatch):
    from loom import progress

    monkeypatch.setattr(progress, "DEFAULT_INTERVAL", 0.0)
    with events.subscribe(events.ALL_TASKS) as everything:
        with django_capture_on_commit_callbacks(execute=True):
            result = pt.count.enqueue(2)
        with events.subscribe(events.task_group(result.id), events.queue_group("default")) as mine:
            run_tasks()
            kinds = [(e.type, e.payload.get("current")) for e in drain(mine)]
        assert kinds == [("started", None), ("progress", 1), ("progress", 2), ("finished", None)]
        first = drain(everything)[0].payload
        assert first["type"] == "enqueued" and first["task_id"] == result.id
        assert first["task"] == "tests.app.progress_tasks.count" and first["queue"] == "default"


@pytest.mark.django_db
def test_failed_and_cancelled_events():
    from loom.actions import perform
    from loom.queries import pick_backend

    failing = pt.broken.enqueue()
    waiting = pt.count.enqueue(1)
    with events.subscribe(events.task_group(failing.id), events.task_group(waiting.id)) as subscription:
        perform(pick_backend("default"), "cancel", [waiting.id])
        run_tasks()
        seen = {(e.payload["task_id"], e.type) for e in drain(subscription)}
    assert (waiting.id, "cancelled") in seen and (failing.id, "failed") in seen
    assert (waiting.id, "started") not in seen  # a cancelled READY task never runs


def _final_on_receipt(subscription, count: int):
    """Read ``count`` finished/failed events as they arrive and, on each, the row's status right
    then (a thread of its own, so its own connection), as an SSE page that reloads would."""
    import threading

    from loom.models import TaskRecord

    seen: dict[str, str] = {}

    def read() -> None:
        from django.db import connection

        try:
            while len(seen) < count:
                event = subscription.get(DEADLINE)
                if event is None:
                    return
                if event.type in ("finished", "failed"):
                    seen[event.payload["task_id"]] = TaskRecord.objects.get(pk=event.payload["task_id"]).status
        finally:
            connection.close()

    reader = threading.Thread(target=read)
    reader.start()
    return seen, reader


@pytest.mark.django_db(transaction=True)
def test_a_workers_finished_event_arrives_once_the_outcome_is_written():
    """Subscribers that reload the row on ``finished``/``failed`` read the final state: the
    worker announces them after the outcome's write, not as the run returns (it used to be a
    few milliseconds early, and a reload read RUNNING)."""
    from loom.worker import Worker
    from tests.app import tasks

    ok = [tasks.add.enqueue(i, i) for i in range(10)]
    bad = [tasks.fail.enqueue() for _ in range(3)]
    with events.subscribe(events.ALL_TASKS) as subscription:
        seen, reader = _final_on_receipt(subscription, len(ok) + len(bad))
        Worker(burst=True, threads=2).run()
        reader.join(DEADLINE)
    assert seen == {**{r.id: "SUCCESSFUL" for r in ok}, **{r.id: "FAILED" for r in bad}}


@pytest.mark.django_db(transaction=True)
def test_a_task_whose_path_no_longer_imports_announces_failed():
    """Its run never started, so no ``task_finished`` was sent; its outcome still announces it."""
    from datetime import timedelta

    from django.utils import timezone

    from loom.models import TaskRecord
    from loom.testing import Clock

    now = timezone.now()
    row = TaskRecord.objects.create(task_path="tests.app.tasks.gone_away", available_at=now, enqueued_at=now)
    with events.subscribe(events.task_group(row.id)) as subscription:
        run_tasks(clock=Clock(now + timedelta(seconds=1)))
        [event] = drain(subscription)
    assert event.type == "failed" and event.payload["status"] == "FAILED"
    assert event.payload["task"] == "tests.app.tasks.gone_away"


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_completion_statement_carries_the_finished_events():
    """With NOTIFY on the task database the UPDATE that writes the outcomes NOTIFYs their events:
    delivered when it commits, after the row; the outbox sends only the ``started`` events."""
    from loom.worker import Worker
    from tests.app import tasks

    with override_settings(LOOM_EVENTS={"BACKEND": "postgresql"}):
        broker = events.get_broker()
        with events.subscribe(events.ALL_TASKS) as subscription:
            assert broker.listen(DEADLINE), "the listener did not connect"
            ok = [tasks.add.enqueue(i, 1) for i in range(8)]
            bad = tasks.fail.enqueue()
            seen, reader = _final_on_receipt(subscription, len(ok) + 1)
            Worker(burst=True, threads=2).run()
            reader.join(DEADLINE)
            assert broker.flush(DEADLINE)
            assert seen == {**{r.id: "SUCCESSFUL" for r in ok}, bad.id: "FAILED"}
            assert broker.outbox.sent == len(ok) + 1  # one started event each; no finished among them
    events.reset()


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_started_reaches_subscribers_before_finished_in_a_busy_drain():
    """``started`` goes through the outbox's connection, ``finished`` with the completion: the
    completion waits for the outbox, so no subscriber sees a task finish before it started."""
    from loom.compat import task_backends
    from loom.worker import Worker
    from tests.app import tasks

    count = 600
    with override_settings(LOOM_EVENTS={"BACKEND": "postgresql"}):
        broker = events.get_broker()
        with events.subscribe(events.ALL_TASKS, maxsize=10 * count) as subscription:
            assert broker.listen(DEADLINE), "the listener did not connect"
            task_backends["default"].enqueue_many(tasks.add, [((i, 1), {}) for i in range(count)])
            Worker(burst=True, threads=2).run()
            assert broker.flush(DEADLINE)
            seen: dict[str, list[str]] = {}
            while len(seen) < count or any(len(kinds) < 2 for kinds in seen.values()):
                event = subscription.get(DEADLINE)
                assert event is not None, f"{sum(len(k) for k in seen.values())} events of {2 * count} arrived"
                if event.type != "enqueued":  # sent at enqueue, before any run: not what this is about
                    seen.setdefault(event.payload["task_id"], []).append(event.type)
    events.reset()
    assert all(kinds == ["started", "finished"] for kinds in seen.values()), \
        [kinds for kinds in seen.values() if kinds != ["started", "finished"]][:5]


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_a_late_outcome_the_claim_guard_refuses_announces_nothing():
    from datetime import timedelta

    from django.utils import timezone

    from loom.codec import dumps
    from loom.records import Outcome
    from loom.store import Store
    from loom.worker.completer import Completer
    from tests.app import tasks

    with override_settings(LOOM_EVENTS={"BACKEND": "postgresql"}):
        broker = events.get_broker()
        store = Store()
        kept, lost = tasks.add.enqueue(1, 1), tasks.add.enqueue(2, 2)
        now = timezone.now()
        claimed = {c.id: c for c in store.claim("w1", None, 2, now, now + timedelta(seconds=30))}
        store.rescue(now, task_ids=[lost.id], claimed_by="w1", error_class="loom.exceptions.WorkerLost",
                     error_text="lease lost\n")  # its lease ran out meanwhile: the guard refuses it
        with events.subscribe(events.task_group(kept.id), events.task_group(lost.id)) as subscription:
            assert broker.listen(DEADLINE), "the listener did not connect"
            completer = Completer(store, "w1", delay=0, batch_size=10)
            for task_id in (kept.id, lost.id):
                completer.put(Outcome(id=task_id, status="SUCCESSFUL", finished_at=now, available_at=None,
                                      return_value_json=dumps(2), errors_json="[]",
                                      attempt=claimed[task_id].attempts, task_path=claimed[task_id].task_path,
                                      queue_name=claimed[task_id].queue_name))
            completer.flush()
            assert completer.fenced == 1
            event = subscription.get(DEADLINE)
            assert event is not None and (event.type, event.payload["task_id"]) == ("finished", kept.id)
            assert subscription.get(0.5) is None and broker.outbox.sent == 0
    events.reset()


@pytest.mark.django_db
def test_task_events_can_be_turned_off():
    with override_settings(LOOM_EVENTS={"TASK_EVENTS": False}):
        with events.subscribe(events.ALL_TASKS) as subscription:
            pt.count.enqueue(1)
            run_tasks()
            assert drain(subscription) == []


# -- network brokers ------------------------------------------------------------------------------

def roundtrip(settings_value: dict) -> list[dict]:
    """Subscribe through a real broker, wait until it listens, send three events, read them back."""
    with override_settings(LOOM_EVENTS=settings_value):
        broker = events.get_broker()
        assert broker.cross_process
        with events.subscribe("net.test") as subscription:
            assert broker.listen(DEADLINE), f"{broker.name} listener did not connect"
            for i in range(3):
                events.send("net.test", {"i": i})
            assert broker.flush(DEADLINE)
            received = []
            while len(received) < 3:
                event = subscription.get(DEADLINE)
                assert event is not None, f"only {received} arrived through {broker.name}"
                received.append(event.payload)
    events.reset()
    return received


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_postgresql_notify_broker_roundtrip():
    assert roundtrip({"BACKEND": "postgresql"}) == [{"i": 0}, {"i": 1}, {"i": 2}]


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_postgresql_broker_refuses_oversized_payloads():
    with override_settings(LOOM_EVENTS={"BACKEND": "postgresql"}):
        with pytest.raises(ValueError, match="at most 7999"):
            events.send("big", {"blob": "x" * 9000})
    events.reset()


@pytest.mark.skipif(DB != "postgresql", reason="PostgreSQL NOTIFY is tested in the LOOM_TEST_DB=postgresql run")
@pytest.mark.django_db(transaction=True)
def test_an_enqueue_carries_its_event_in_its_own_statement_on_postgresql():
    """One round trip: the INSERT NOTIFYs the event, so it follows the commit and a rollback
    drops it, as the on-commit signal did; the outbox's own connection sends nothing."""
    from django.db import transaction

    with override_settings(LOOM_EVENTS={"BACKEND": "postgresql"}):
        broker = events.get_broker()
        with events.subscribe(events.ALL_TASKS) as subscription:
            assert broker.listen(DEADLINE), "the listener did not connect"
            with transaction.atomic():
                pt.count.enqueue(1)
                transaction.set_rollback(True)
            first = pt.count.enqueue(1)
            with transaction.atomic():
                second = pt.count.enqueue(2)
            got = [subscription.get(DEADLINE) for _ in range(2)]
            assert [(e.type, e.payload["task_id"]) for e in got if e] == [("enqueued", first.id),
                                                                          ("enqueued", second.id)]
            assert got[0].payload["task"] == "tests.app.progress_tasks.count" and got[0].payload["status"] == "READY"
            assert subscription.get(0.5) is None  # each once (the signal's receiver sent nothing more)
            assert broker.outbox.sent == 0
    events.reset()


@pytest.mark.skipif(DB == "postgresql", reason="the auto choice on PostgreSQL is tested below")
def test_auto_picks_in_process_delivery_off_postgresql():
    with override_settings(LOOM_EVENTS={"BACKEND": "auto"}):
        assert events.get_broker().name == "memory"


@pytest.mark.skipif(DB != "postgresql", reason="only on the PostgreSQL run")
@pytest.mark.django_db(transaction=True)
def test_auto_picks_notify_on_postgresql():
    with override_settings(LOOM_EVENTS={}):
        assert events.get_broker().name == "postgresql"
    events.reset()


def test_redis_broker_roundtrip():
    try:
        import redis  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI needs the redis package for the Redis broker test (requirements/test.txt)")
        pytest.skip("the redis package is not installed")
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Redis at 127.0.0.1:6379 ({exc})")
        pytest.skip(f"Redis at 127.0.0.1:6379 is unreachable ({exc})")
    got = roundtrip({"BACKEND": "redis", "URL": "redis://127.0.0.1:6379/0", "CHANNEL": f"loom_test_{os.getpid()}"})
    assert got == [{"i": 0}, {"i": 1}, {"i": 2}]
