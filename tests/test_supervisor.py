"""The supervised worker with real processes and signals: crashes, time limits, recycling,
graceful and fast shutdown, cancellation, and no double runs across workers."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest
from django.utils import timezone

from loom.models import TaskRecord
from tests.app import retry_tasks, tasks
from tests.app.models import Run
from tests.conftest import needs_task_options, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def few_lost_retries(monkeypatch):
    # A task that kills its worker runs 1 + LOST_RETRIES times; keep the tests quick.
    monkeypatch.setenv("LOOM_TEST_LOST_RETRIES", "1")


def error_classes(result):
    return [e.exception_class_path for e in result.errors]


@pytest.mark.parametrize("crasher", [tasks.hard_exit, tasks.segfault], ids=["os._exit", "segfault"])
def test_a_task_that_kills_its_process_fails_and_the_worker_goes_on(start_worker, crasher):
    bad = crasher.enqueue()
    good = [tasks.add.enqueue(i, 1) for i in range(10)]
    # --prefetch 0: the crashing task is the only one in its process each time.
    worker = start_worker("--burst", "--processes", "1", "--threads", "1", "--prefetch", "0")
    assert worker.wait(timeout=90) == 0, "".join(worker.output)
    bad.refresh()
    assert bad.status == "FAILED" and bad.attempts == 2  # max_attempts 1 + one lost retry
    assert error_classes(bad) == ["loom.exceptions.WorkerLost"] * 2
    assert "died" in bad.errors[0].traceback
    for result in good:
        result.refresh()
        assert result.status == "SUCCESSFUL"


@needs_task_options
def test_soft_time_limit_interrupts_python_code(start_worker):
    result = retry_tasks.busy_forever.enqueue()
    worker = start_worker("--burst", "--processes", "1")
    assert worker.wait(timeout=60) == 0, "".join(worker.output)
    result.refresh()
    assert result.status == "FAILED"
    assert error_classes(result) == ["loom.exceptions.TimeLimitExceeded"]


@needs_task_options
def test_hard_time_limit_kills_the_process_and_fails_the_task(start_worker):
    result = retry_tasks.blocked_in_c.enqueue(60)
    bystander = tasks.add.enqueue(1, 1)
    started = time.monotonic()
    worker = start_worker("--burst", "--processes", "1", "--threads", "1")
    assert worker.wait(timeout=60) == 0, "".join(worker.output)
    assert time.monotonic() - started < 30  # not the 60 s the task would have slept
    result.refresh()
    bystander.refresh()
    assert result.status == "FAILED" and error_classes(result) == ["loom.exceptions.TimeLimitExceeded"]
    assert "hard time limit" in result.errors[0].traceback
    assert bystander.status == "SUCCESSFUL"


def test_children_are_recycled_after_max_tasks(start_worker):
    results = [tasks.record_run.enqueue(f"r{i}") for i in range(30)]
    worker = start_worker("--burst", "--processes", "1", "--threads", "1", "--max-tasks-per-child", "10")
    assert worker.wait(timeout=90) == 0, "".join(worker.output)
    runs = list(Run.objects.values_list("key", "worker_pid"))
    statuses = [(r.id, TaskRecord.objects.get(pk=r.id).status) for r in results]
    context = f"runs={runs} statuses={statuses} output={''.join(worker.output)[-2000:]}"
    assert len(runs) == 30, context
    per_child = Counter(pid for _, pid in runs)
    # One thread: a child starts nothing after its tenth task (what it prefetched goes back).
    assert max(per_child.values()) <= 10 and len(per_child) >= 3, context
    assert all(status == "SUCCESSFUL" for _, status in statuses), context


def test_cpu_queue_runs_in_separate_processes(start_worker):
    for i in range(8):
        tasks.sleep_then_record.using(queue_name="reports").enqueue(f"c{i}", 0.3)
    worker = start_worker("--burst", "--queue", "reports:processes=2")
    assert worker.wait(timeout=60) == 0, "".join(worker.output)
    assert Run.objects.count() == 8
    assert len(set(Run.objects.values_list("worker_pid", flat=True))) == 2


def test_sigterm_during_50_running_tasks_loses_none(start_worker):
    for i in range(50):
        tasks.sleep_marked.enqueue(f"g{i}", 1.0)
    worker = start_worker("--processes", "2", "--threads", "25", "--grace", "30")
    worker.wait_started()
    wait_until(lambda: Run.objects.filter(key__startswith="start:").count() == 50, timeout=60,
               message="50 tasks running")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, "".join(worker.output)
    assert sorted(set(TaskRecord.objects.values_list("status", flat=True))) == ["SUCCESSFUL"]
    assert Run.objects.exclude(key__startswith="start:").count() == 50


def test_second_signal_stops_fast_and_tasks_run_again_later(start_worker):
    results = [tasks.sleep_marked.enqueue(f"f{i}", 30) for i in range(2)]
    worker = start_worker("--processes", "1", "--threads", "2", "--grace", "60")
    worker.wait_started()
    wait_until(lambda: Run.objects.filter(key__startswith="start:").count() == 2, message="2 running")
    started = time.monotonic()
    worker.signal(signal.SIGTERM)
    time.sleep(0.3)  # two separate signals, as a person pressing Ctrl-C twice
    worker.signal(signal.SIGTERM)
    worker.wait(timeout=30)
    assert time.monotonic() - started < 15
    for result in results:
        result.refresh()
        assert result.status == "READY" and error_classes(result) == ["loom.exceptions.WorkerLost"]


def test_cancel_ready_and_running_tasks(start_worker):
    from loom.compat import task_backends

    backend_store = task_backends["default"].store
    never = tasks.record_run.using(run_after=timezone.now() + timezone.timedelta(hours=1)).enqueue("never")
    assert backend_store.cancel([never.id], timezone.now()) == 1
    looping = tasks.cooperative_loop.enqueue("loop")
    waiting = tasks.async_wait.enqueue("wait")
    worker = start_worker("--processes", "1", "--threads", "2")
    worker.wait_started()
    wait_until(lambda: Run.objects.filter(key__startswith="start:").count() == 2, message="both running")
    assert backend_store.cancel([looping.id, waiting.id], timezone.now()) == 2
    wait_until(lambda: TaskRecord.objects.filter(status="CANCELLED").count() == 3, timeout=30,
               message="cancels to land")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    for result in (never, looping, waiting):
        result.refresh()
        assert result.status == "FAILED"  # Django has no CANCELLED state: see docs/backend.md
        assert error_classes(result)[-1] == "loom.exceptions.TaskCancelled"
    assert not Run.objects.filter(key="never").exists()


def test_two_workers_never_run_the_same_task(start_worker):
    for i in range(600):
        tasks.record_run.enqueue(f"u{i}")
    workers = [start_worker("--burst", "--processes", "2", "--threads", "4") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=120) == 0, "".join(worker.output)
    keys = list(Run.objects.values_list("key", flat=True))
    assert len(keys) == 600 and len(set(keys)) == 600
    assert len(set(Run.objects.values_list("worker_pid", flat=True))) >= 2
    assert os.getpid() not in set(Run.objects.values_list("worker_pid", flat=True))
