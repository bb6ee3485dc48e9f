"""Stopping a real worker the ways it is really stopped, with tasks running.

- Ctrl-C in a terminal: SIGINT to every process of the foreground group.
- systemd (``KillMode=control-group``, the default): SIGTERM to every process of the service.
- docker / Kubernetes: SIGTERM to the root process only.

Each means "finish what runs within --grace": the running tasks end SUCCESSFUL on their first
attempt, nothing is interrupted. A second, deliberate signal to the root stops fast: the running
tasks end their attempt (WorkerLost) and run again later. An ``async def`` task running at stop
is cancelled cleanly (no "Task was destroyed but it is pending!").
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from loom.models import TaskRecord
from tests.app import tasks
from tests.app.models import Run
from tests.conftest import child_pids, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def started_count() -> int:
    return Run.objects.filter(key__startswith="start:").count()


def send(worker, how: str) -> None:
    if how == "ctrl-c":
        os.killpg(worker.proc.pid, signal.SIGINT)
    elif how == "systemd":
        for pid in [worker.proc.pid, *child_pids(worker.proc.pid)]:
            os.kill(pid, signal.SIGTERM)
    else:
        worker.proc.send_signal(signal.SIGTERM)


@pytest.mark.parametrize("how", ["ctrl-c", "systemd", "kubernetes"])
def test_running_tasks_finish_within_grace(start_worker, how):
    results = [tasks.sleep_marked.enqueue(f"g{i}", 1.5) for i in range(4)]
    worker = start_worker("--processes", "2", "--threads", "2", "--grace", "30", own_group=True)
    wait_until(lambda: started_count() == 4, timeout=60, message="4 tasks running")
    assert len(child_pids(worker.proc.pid)) == 2
    send(worker, how)
    assert worker.wait(timeout=60) == 0, worker.text
    for result in results:
        result.refresh()
        assert result.status == "SUCCESSFUL" and result.attempts == 1 and not result.errors, (how, result.errors)
    assert Run.objects.exclude(key__startswith="start:").count() == 4
    assert "Traceback" not in worker.text and "KeyboardInterrupt" not in worker.text, worker.text


@pytest.mark.parametrize("processes", ["2", "0"])
def test_a_second_ctrl_c_stops_fast_and_tasks_run_again(start_worker, processes):
    results = [tasks.sleep_marked.enqueue(f"f{i}", 60) for i in range(2)]
    worker = start_worker("--processes", processes, "--threads", "2", "--grace", "60", own_group=True)
    wait_until(lambda: started_count() == 2, timeout=60, message="2 tasks running")
    os.killpg(worker.proc.pid, signal.SIGINT)
    time.sleep(0.3)  # a person pressing Ctrl-C twice: two separate presses (not synchronisation)
    started = time.monotonic()
    os.killpg(worker.proc.pid, signal.SIGINT)
    worker.wait(timeout=30)
    assert time.monotonic() - started < 15, worker.text
    for result in results:
        result.refresh()
        assert result.status == "READY", worker.text
        assert [e.exception_class_path for e in result.errors] == ["loom.exceptions.WorkerLost"], (
            [(e.exception_class_path, e.traceback) for e in result.errors], worker.text[-3000:])


def test_an_async_task_running_at_stop_is_cancelled_cleanly(start_worker):
    result = tasks.async_wait.enqueue("a1")
    worker = start_worker("--processes", "1", "--grace", "0.5", own_group=True)
    wait_until(lambda: started_count() == 1, timeout=60, message="the coroutine running")
    os.killpg(worker.proc.pid, signal.SIGINT)
    assert worker.wait(timeout=30) == 0, worker.text
    for text in ("Task was destroyed but it is pending", "no running event loop", "Traceback"):
        assert text not in worker.text, worker.text
    result.refresh()
    assert result.status == "READY" and result.attempts == 1
    assert [e.exception_class_path for e in result.errors] == ["loom.exceptions.WorkerLost"]
    row = TaskRecord.objects.get(pk=result.id)
    assert row.errors[0]["attempt"] == 1 and row.errors[0]["worker_id"] == row.worker_ids[0]
