"""InFlight's hand-off to the task threads: after a claim that emptied the queue, the fetcher
lets the claimed tasks reach their threads before it builds its next claim (``settle``)."""

from __future__ import annotations

import threading
import uuid

from django.utils import timezone

from loom.executors.asyncio import AsyncExecutor
from loom.executors.threads import ThreadExecutor
from loom.records import ClaimedTask
from loom.worker.inflight import InFlight


def _claimed(path: str = "tests.app.tasks.noop", args: list | None = None) -> ClaimedTask:
    now = timezone.now()
    return ClaimedTask(id=str(uuid.uuid4()), task_path=path, backend="default",
                       queue_name="default", priority=0, run_after=None, args=args or [], kwargs={},
                       available_at=now, enqueued_at=now, started_at=now, last_attempted_at=now,
                       attempts=1, max_attempts=1, timeout=0.0)


def _inflight(thread_start: threading.Event) -> tuple[InFlight, list]:
    """An InFlight whose one task thread starts only once ``thread_start`` is set (a thread the
    OS is slow to wake), and the outcomes it hands on."""
    outcomes: list = []
    executor = ThreadExecutor(1, name="test-settle", initializer=thread_start.wait)
    inflight = InFlight(executor=executor, loop=AsyncExecutor(1), async_limit=1, batch_size=4,
                        prefetch=0, hand_off=outcomes.append, on_done=lambda: None)
    return inflight, outcomes


def test_settle_returns_once_the_task_reached_its_thread():
    thread_start = threading.Event()
    inflight, outcomes = _inflight(thread_start)
    task = _claimed("tests.app.tasks.pause", [1.0])  # still running when we look
    threading.Timer(0.2, thread_start.set).start()
    inflight.dispatch([task], settle=30.0)
    # The task's thread has it (the watchdog sees the run: its time limit of 0 s is past).
    assert inflight.overdue(now=float("inf")) == [task.id]
    inflight.executor.wait(30)
    assert [outcome.status for outcome in outcomes] == ["SUCCESSFUL"]


def test_settle_is_bounded_and_without_it_dispatch_does_not_wait():
    thread_start = threading.Event()
    inflight, outcomes = _inflight(thread_start)
    first, second = _claimed(), _claimed()
    safety = threading.Timer(30.0, thread_start.set)  # an unbounded wait would end only here
    safety.start()
    inflight.dispatch([first])
    assert inflight.overdue(now=float("inf")) == []  # handed over, not started: no wait
    inflight.dispatch([second], settle=30.0)  # no idle thread for it: nothing to wait for
    assert not thread_start.is_set()
    third = _claimed()
    inflight2, outcomes2 = _inflight(thread_start)
    inflight2.dispatch([third], settle=0.05)  # its thread does not start: the wait gives up
    assert not thread_start.is_set() and inflight2.overdue(now=float("inf")) == []
    thread_start.set()
    safety.cancel()
    inflight.executor.wait(30)
    inflight2.executor.wait(30)
    assert sorted(outcome.id for outcome in outcomes) == sorted([first.id, second.id])
    assert [outcome.id for outcome in outcomes2] == [third.id]
