"""The worker: in-process for the logic, and as a real subprocess with real signals."""

from __future__ import annotations

import os
import signal

import pytest

from loom.compat import TaskResultStatus
from loom.models import TaskRecord
from loom.worker import Worker
from tests.app import tasks
from tests.app.models import Run
from tests.conftest import needs_task_options, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def stale_row(path, args=(), kwargs=None):
    """A row as an old deploy could have left it: enqueued, then the code changed."""
    from django.utils import timezone

    now = timezone.now()
    return TaskRecord.objects.create(task_path=path, args=list(args), kwargs=kwargs or {},
                                     available_at=now, enqueued_at=now)


def test_burst_runs_sync_and_async_tasks():
    results = [tasks.add.enqueue(i, i) for i in range(20)] + [tasks.async_add.enqueue(i, 1) for i in range(20)]
    worker = Worker(burst=True, threads=4)
    worker.run()
    assert worker.finished == 40
    for result in results:
        result.refresh()
    assert [r.return_value for r in results] == [2 * i for i in range(20)] + [i + 1 for i in range(20)]
    assert not TaskRecord.objects.exclude(status="SUCCESSFUL").exists()


def test_rows_that_no_longer_fit_fail_clearly_and_the_worker_goes_on():
    gone = stale_row("tests.app.tasks.removed_long_ago")
    module_gone = stale_row("tests.app.nonexistent_module.task")
    not_task = stale_row("tests.app.tasks.not_a_task")
    os_system = stale_row("os.system", ["echo owned"])
    wrong_args = stale_row("tests.app.tasks.add", [1, 2, 3])
    ok = tasks.add.enqueue(1, 2)
    Worker(burst=True, threads=2).run()
    for row, kind, text in [
        (gone, "loom.exceptions.TaskImportError", "no longer imports"),
        (module_gone, "loom.exceptions.TaskImportError", "no longer imports"),
        (not_task, "loom.exceptions.TaskImportError", "not a django.tasks.Task"),
        (os_system, "loom.exceptions.TaskImportError", "not a django.tasks.Task"),
        (wrong_args, "loom.exceptions.TaskArgumentsMismatch", "no longer fit"),
    ]:
        row.refresh_from_db()
        assert row.status == "FAILED", row
        assert row.errors[-1]["exception_class_path"] == kind
        assert text in row.errors[-1]["traceback"]
    ok.refresh()
    assert ok.return_value == 3


@needs_task_options
def test_retries_per_task_option_until_success():
    from tests.app import retry_tasks

    result = retry_tasks.flaky.enqueue("k1", 2)
    Worker(burst=True, threads=1).run()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL, result.errors
    assert result.attempts == 3 and len(result.errors) == 2
    assert Run.objects.filter(key="k1").count() == 3


@needs_task_options
def test_retries_stop_at_max_attempts():
    from tests.app import retry_tasks

    result = retry_tasks.flaky.enqueue("k2", 10)
    Worker(burst=True, threads=1).run()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 3


def test_worker_refuses_unknown_queue():
    with pytest.raises(ValueError, match="not in TASKS"):
        Worker(queues=["nope"])


def test_subprocess_burst_runs_everything(start_worker):
    results = [tasks.record_run.enqueue(f"k{i}") for i in range(40)]
    worker = start_worker("--burst", "--threads", "4", "--processes", "2")
    assert worker.wait() == 0, "".join(worker.output)
    assert Run.objects.count() == 40
    pids = set(Run.objects.values_list("worker_pid", flat=True))
    assert os.getpid() not in pids and worker.proc.pid not in pids  # children ran them
    for result in results:
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL


def test_subprocess_wakes_on_enqueue_and_stops_on_sigterm(start_worker):
    worker = start_worker("--threads", "2", "--processes", "0")
    worker.wait_started()
    result = tasks.add.enqueue(40, 2)
    wait_until(lambda: tasks.add.get_result(result.id).status == "SUCCESSFUL", message="task to run")
    assert tasks.add.get_result(result.id).return_value == 42
    from loom.models import WorkerRecord

    [registered] = WorkerRecord.objects.all()  # --processes 0: this one process is the worker
    assert registered.pid == worker.proc.pid and registered.stopped_at is None
    assert sorted(registered.queues) == ["default", "other", "reports"]
    assert registered.concurrency["threads"] == 2 and registered.heartbeat_at >= registered.started_at
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, "".join(worker.output)
    registered.refresh_from_db()
    assert registered.stopped_at is not None and registered.tasks_done == 1


def test_sigterm_lets_running_tasks_finish_and_leaves_the_rest(start_worker):
    for i in range(6):
        tasks.sleep_marked.enqueue(f"s{i}", 0.5)
    worker = start_worker("--threads", "2", "--processes", "1", "--grace", "30")
    worker.wait_started()
    started = lambda: Run.objects.filter(key__startswith="start:").count()  # noqa: E731
    wait_until(lambda: started() == 2, message="2 tasks running")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0, "".join(worker.output)
    assert started() == 2
    statuses = sorted(TaskRecord.objects.values_list("status", flat=True))
    assert statuses == ["READY"] * 4 + ["SUCCESSFUL"] * 2, "".join(worker.output)
    assert Run.objects.exclude(key__startswith="start:").count() == 2
    for row in TaskRecord.objects.filter(status="READY"):
        assert row.attempts == 0 and row.worker_ids == [] and row.claimed_by is None


def test_rolled_back_enqueue_never_runs_in_a_real_worker(start_worker):
    from django.db import transaction

    try:
        with transaction.atomic():
            tasks.record_run.enqueue("rolled-back")
            raise RuntimeError
    except RuntimeError:
        pass
    kept = tasks.record_run.enqueue("kept")
    worker = start_worker("--burst")
    assert worker.wait() == 0
    assert list(Run.objects.values_list("key", flat=True)) == ["kept"]
    kept.refresh()
    assert kept.status == "SUCCESSFUL" and TaskRecord.objects.count() == 1
    assert os.getpid() != worker.proc.pid


def test_a_claim_whose_reply_was_lost_is_released_before_the_next_claim():
    """The claim committed but its reply never arrived (simulated here; the real fault, a dropped
    connection, is in test_connection_faults): the rows are RUNNING for this worker, which does
    not know them. Before its next claim the fetcher puts them back, so they run at once."""
    from django.db import OperationalError

    from loom.store import Store

    class LosesOneReply(Store):
        lost = []

        def claim(self, *args, **kwargs):
            claimed = super().claim(*args, **kwargs)
            if not self.lost:
                self.lost.extend(claimed)
                raise OperationalError("server closed the connection unexpectedly")
            return claimed

    results = [tasks.add.enqueue(i, 1) for i in range(5)]
    worker = Worker(burst=True, threads=2)
    worker.store = worker.fetcher.store = LosesOneReply(worker.store.alias)
    worker.run()
    assert LosesOneReply.lost  # the first claim took some rows and "lost" them
    for result in results:
        result.refresh()
        assert result.status == "SUCCESSFUL" and result.attempts == 1 and not result.errors
    assert worker.fetcher.failures == 0


def test_only_held_tasks_keep_their_lease():
    """A row claimed in this worker's name that the worker does not hold is not renewed."""
    from datetime import timedelta

    from django.utils import timezone

    from loom.worker.maintenance.rescuer import Rescuer

    store = Worker().store
    for i in range(2):
        tasks.add.enqueue(i, i)
    now = timezone.now()
    held, unknown = store.claim("w1", None, 2, now, now + timedelta(seconds=30))
    assert store.heartbeat("w1", [held.id], now + timedelta(seconds=90)) == [held.id]
    rescued = Rescuer(store, lambda: now + timedelta(seconds=60), extra_attempts=5).run_once()
    assert rescued == 5.0  # its interval: the call itself ran
    assert TaskRecord.objects.get(pk=held.id).status == "RUNNING"
    row = TaskRecord.objects.get(pk=unknown.id)
    assert row.status == "READY" and row.errors[-1]["exception_class_path"] == "loom.exceptions.WorkerLost"
    assert row.errors[-1]["attempt"] == 1 and row.errors[-1]["worker_id"] == "w1"


def test_a_failing_task_finished_receiver_neither_fails_nor_reruns_the_task(caplog):
    """A receiver that raises after the body ran (say, it writes on a connection that just
    dropped) is logged; the outcome stands and the body runs once (it used to be put back as
    never started, and ran again with no lost attempt recorded)."""
    from loom.compat import task_finished

    def broken(sender, task_result, **kwargs):
        raise RuntimeError("receiver lost its connection")

    result = tasks.record_run.enqueue("once")
    task_finished.connect(broken)
    try:
        worker = Worker(burst=True, threads=2)
        worker.run()
    finally:
        task_finished.disconnect(broken)
    assert TaskRecord.objects.get(pk=result.id).status == "SUCCESSFUL"
    assert Run.objects.filter(key="once").count() == 1
    assert "task_finished receiver failed" in caplog.text
