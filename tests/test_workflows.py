"""Workflows, atomic tasks and durable steps, with real worker processes on every database.

- chain, group and chord results, nesting, validation, cancel, and ``enqueue()`` inside a
  rolled-back transaction leaving nothing;
- a failing middle step fails the workflow and the steps after it never run (CANCELLED);
- under SIGKILL chaos (children and a whole worker), 30 three-step chains and three 20-member
  chords of atomic steps all succeed with one success per step and each chord callback once;
- an atomic task killed mid-body leaves no partial rows, then runs once to success;
- a task of ten durable steps that dies after step 6 resumes at step 7.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from django.db import transaction
from django.urls import include, path

from loom.compat import SUPPORTS_TASK_OPTIONS, InvalidTask
from loom.models import TaskRecord, Workflow
from loom.testing import run_tasks
from loom.workflow import call, cancel_workflow, chain, chord, get_workflow, group
from tests.app import workflow_tasks as wt
from tests.app.models import Note, Run
from tests.conftest import child_pids, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
needs_options = pytest.mark.skipif(not SUPPORTS_TASK_OPTIONS,
                                   reason="atomic=True is a per-task option: Django 6.1 or 5.2's backport")


def test_chain_group_and_chord_pass_results_along():
    wf = chain(call(wt.fetch, "a.b"), call(wt.parse), call(wt.double)).enqueue()
    g = group(call(wt.double, 1), call(wt.double, 2), call(wt.double, 3)).enqueue()
    c = chord(group(call(wt.parse, "ab"), call(wt.parse, "abcd")), call(wt.total)).enqueue()
    nested = chain(call(wt.fetch, "x"), group(call(wt.parse), call(wt.parse)), call(wt.total)).enqueue()
    assert wf.status == "RUNNING" and [t.status for t in wf.tasks] == ["READY", "PENDING", "PENDING"]
    run_tasks()
    wf = get_workflow(wf.id)
    assert (wf.status, wf.result, wf.results) == ("SUCCESSFUL", 10, ["<a.b>", 5, 10])
    assert [t.status for t in wf.tasks] == ["SUCCESSFUL"] * 3 and wf.tasks[2].return_value == 10
    assert (get_workflow(g.id).status, get_workflow(g.id).result) == ("SUCCESSFUL", [2, 4, 6])
    assert (get_workflow(c.id).result, get_workflow(c.id).results) == (6, [[2, 4], 6])
    assert get_workflow(nested.id).result == 6  # "<x>" is 3 long, twice


def test_a_failing_step_fails_the_workflow_and_cancels_what_follows(start_worker):
    wf = chain(call(wt.fetch, "a"), call(wt.fail_step), call(wt.double, 1), group(call(wt.double, 2))).enqueue()
    worker = start_worker("--burst")
    assert worker.wait(timeout=60) == 0, worker.text
    wf = get_workflow(wf.id)
    assert wf.status == "FAILED"
    assert [t.status for t in wf.tasks] == ["SUCCESSFUL", "FAILED", "CANCELLED", "CANCELLED"]
    assert TaskRecord.objects.count() == 2  # the steps after the failure were never enqueued


def test_enqueue_is_atomic_with_the_callers_transaction_and_checks_its_input():
    with pytest.raises(RuntimeError), transaction.atomic():
        chain(call(wt.fetch, "a"), call(wt.parse)).enqueue()
        raise RuntimeError("roll back")
    assert not Workflow.objects.exists() and not TaskRecord.objects.exists()
    with pytest.raises(InvalidTask, match="call"):
        chain(wt.fetch, call(wt.parse))
    with pytest.raises(InvalidTask, match="group"):
        chord(call(wt.fetch, "a"), call(wt.total))
    with pytest.raises(Exception, match="JSON"):
        call(wt.fetch, object()).enqueue()
    assert not TaskRecord.objects.exists()


def test_cancelling_a_workflow_cancels_its_waiting_steps():
    wf = chain(call(wt.fetch, "a"), call(wt.parse)).enqueue()
    cancel_workflow(wf.id)
    wf = get_workflow(wf.id)
    assert wf.status == "CANCELLED" and [t.status for t in wf.tasks] == ["CANCELLED", "CANCELLED"]
    assert run_tasks() == 0


def test_a_large_group_is_enqueued_in_bulk():
    members = 2000
    g = chord(group(*[call(wt.double, i) for i in range(members)]), call(wt.total)).enqueue()
    assert TaskRecord.objects.filter(status="READY").count() == members
    run_tasks()
    assert get_workflow(g.id).result == sum(2 * i for i in range(members))


@needs_options
@pytest.mark.heavy
def test_chains_and_chords_survive_sigkill_chaos(start_worker, monkeypatch):
    monkeypatch.setenv("LOOM_TEST_LEASE_SECONDS", "3")
    chains = [chain(*[call(wt.counted, f"chain{i}-s{j}") for j in range(3)]).enqueue() for i in range(30)]
    chords = [chord(group(*[call(wt.counted, f"chord{k}-m{m}") for m in range(20)]),
                    call(wt.collect, f"chord{k}-cb")).enqueue() for k in range(3)]
    args = ("--processes", "2", "--threads", "4", "--grace", "5")
    worker = start_worker(*args)
    worker.wait_started()
    rng, kills, whole = random.Random(7), 0, 0
    ids = [w.id for w in chains + chords]

    def unfinished() -> int:
        return Workflow.objects.filter(pk__in=ids, status="RUNNING").count()

    deadline = time.monotonic() + 240
    while unfinished() and time.monotonic() < deadline:
        time.sleep(0.4)
        if whole == 0 and Run.objects.count() > 60:
            worker.proc.kill()  # the supervisor; its children die with it
            worker.wait(timeout=30)
            wait_until(lambda pid=worker.proc.pid: not child_pids(pid), message="children to die")
            whole += 1
            worker = start_worker(*args)
            worker.wait_started()
            continue
        children = child_pids(worker.proc.pid)
        if children and kills < 12:
            try:
                os.kill(rng.choice(children), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    worker.signal(signal.SIGTERM)
    worker.wait(timeout=60)
    states = {str(w.pk): w.status for w in Workflow.objects.filter(pk__in=ids)}
    assert set(states.values()) == {"SUCCESSFUL"}, (states, kills, whole)
    assert kills >= 4 and whole == 1
    runs = list(Run.objects.values_list("key", flat=True))
    assert len(runs) == len(set(runs)) == 30 * 3 + 3 * 21  # one success per step, each callback once
    for k, wf in enumerate(chords):
        assert get_workflow(wf.id).result == [f"chord{k}-m{m}" for m in range(20)]


@needs_options
@pytest.mark.heavy
def test_an_atomic_task_killed_mid_body_leaves_no_partial_rows(start_worker, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_TEST_LEASE_SECONDS", "3")
    result = wt.write_then_hang.enqueue(str(tmp_path))
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    wait_until(lambda: (tmp_path / "written").exists(), timeout=60, message="the body to write its row")
    assert Note.objects.count() == 0  # not committed while the body runs
    (tmp_path / "killed").touch()
    for pid in child_pids(worker.proc.pid):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: TaskRecord.objects.get(pk=result.id).status == "SUCCESSFUL", timeout=90,
               message="the rescued task to run again")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.text
    assert Note.objects.count() == 1  # the killed run's row never committed; the success's did
    assert TaskRecord.objects.get(pk=result.id).attempts == 2


@pytest.mark.heavy
def test_ten_durable_steps_resume_after_the_sixth(start_worker, tmp_path, monkeypatch):
    marks = tmp_path / "marks"
    monkeypatch.setenv(wt.MARKS, str(marks))
    result = wt.ten_steps.enqueue(str(tmp_path))
    worker = start_worker("--processes", "1", "--threads", "1")
    worker.wait_started()
    wait_until(lambda: TaskRecord.objects.get(pk=result.id).status == "SUCCESSFUL", timeout=90,
               message="the task to finish after its process died")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0, worker.text
    assert marks.read_text().split() == [f"s{i}" for i in range(1, 11)]  # each step's function ran once
    row = TaskRecord.objects.get(pk=result.id)
    assert row.return_value == [i * i for i in range(1, 11)] and row.attempts == 2


urlpatterns = [path("loom/", include("loom.urls"))]


@pytest.mark.urls(__name__)
@pytest.mark.usefixtures("memory_events")
def test_the_task_page_shows_its_workflow_and_old_workflows_are_pruned(django_user_model, client):
    from datetime import timedelta

    from django.utils import timezone

    from loom.compat import task_backends
    from loom.models import StepRecord, WorkflowNode

    wf = chain(call(wt.fetch, "a"), call(wt.parse)).enqueue()
    run_tasks()
    client.force_login(django_user_model.objects.create_superuser("boss", "b@example.com", None))
    first = get_workflow(wf.id).tasks[0]
    page = client.get(f"/loom/tasks/{first.id}/").content.decode()
    assert f'data-workflow="{wf.id}"' in page and page.count("data-step-status=\"SUCCESSFUL\"") == 2
    store = task_backends["default"].store
    assert store.prune_workflows(timezone.now() - timedelta(days=1)) == 0
    assert store.prune_workflows(timezone.now() + timedelta(days=1)) == 1
    assert not WorkflowNode.objects.exists() and not StepRecord.objects.exists()


@needs_options
def test_atomic_needs_a_plain_function_and_steps_need_json():
    import loom
    from loom.compat import task

    async def body():
        return 1

    with pytest.raises(InvalidTask, match="plain"):
        task(atomic=True)(body)
    assert loom.step("outside", lambda: (1, 2)) == (1, 2)  # outside a task: simply runs
    from loom import execution

    token = execution.current_task_id.set("01920000-0000-7000-8000-000000000001")
    try:
        assert loom.step("tuple", lambda: (1, 2)) == [1, 2]  # as JSON gives it back, every run
        assert loom.step("tuple", lambda: pytest.fail("a recorded step runs again")) == [1, 2]
        with pytest.raises(TypeError, match="JSON"):
            loom.step("bad", object)
    finally:
        execution.current_task_id.reset(token)
