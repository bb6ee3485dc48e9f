"""loom.telemetry: OpenTelemetry spans for enqueue and for each run, across real processes.

The end-to-end test builds a startproject site whose settings turn ``LOOM_OPENTELEMETRY`` on and
configure the OpenTelemetry SDK with its in-memory exporter; every process (the shell that
enqueues inside a "request" span, the worker's children that run the tasks) writes the spans it
finished to a JSON file when it exits, and the test reads them all.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from loom import compat, telemetry
from tests.conftest import DB, ROOT, wait_until, worker_env
from tests.plain_project import FLAKY_TASK, PlainProject

SDK_SETUP = """
LOOM_OPENTELEMETRY = True

import atexit, json, os
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
trace.set_tracer_provider(_provider)


def _dump_spans():
    spans = [{
        "name": s.name, "kind": s.kind.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
        "parent_id": s.parent.span_id if s.parent else None, "attributes": dict(s.attributes),
        "status": s.status.status_code.name, "events": [[e.name, dict(e.attributes)] for e in s.events],
    } for s in _exporter.get_finished_spans()]
    with open(os.path.join(SPANS_DIR, f"{os.getpid()}.json"), "w") as f:
        json.dump(spans, f)


atexit.register(_dump_spans)
"""

TASKS = """
{TASK_IMPORT}
from opentelemetry import trace


@task
def add(a, b):
    with trace.get_tracer("shop").start_as_current_span("inside add"):
        return a + b


@task
async def shout(word):
    return word.upper()


@task
def fail():
    raise ValueError("no luck")


"""

ENQUEUE = """
import json
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from shop.tasks import add, fail, flaky, shout

with trace.get_tracer("shop").start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as request:
    ids = {{"add": add.enqueue(2, 3).id, "shout": shout.enqueue("hi").id, "fail": fail.enqueue().id,
           "flaky": flaky.enqueue({marker!r}).id}}
print(json.dumps({{"ids": ids, "trace_id": request.get_span_context().trace_id}}))
"""


def status(db: Path, task_id: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT status FROM loom_task WHERE id = ?", [uuid.UUID(task_id).hex]).fetchone()
    return row[0] if row else None


@pytest.mark.skipif(DB != "sqlite", reason="the traced site is a startproject SQLite site: the sqlite run")
def test_a_run_joins_the_trace_of_the_request_that_enqueued_it(tmp_path):
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    project = PlainProject(tmp_path)
    project.append_settings(SDK_SETUP.replace("SPANS_DIR", repr(str(spans_dir))))
    project.write("shop/tasks.py", TASKS + FLAKY_TASK)
    project.manage("migrate", "-v", "0")

    with project.running("loom", "worker"):
        sent = json.loads(project.shell(ENQUEUE.format(marker=str(tmp_path / "flaky-ran"))).strip().splitlines()[-1])
        ids, trace_id = sent["ids"], sent["trace_id"]
        db = project.dir / "db.sqlite3"
        wait_until(lambda: all(status(db, i) in ("SUCCESSFUL", "FAILED") for i in ids.values()), timeout=60,
                   message="every task finished")

    spans = [span for path in spans_dir.glob("*.json") for span in json.loads(path.read_text())]
    [request] = [s for s in spans if s["name"] == "GET /checkout"]
    producers = {s["attributes"]["messaging.message.id"]: s for s in spans if s["kind"] == "PRODUCER"}
    assert set(producers) == set(ids.values())
    for producer in producers.values():
        assert producer["name"] == "enqueue default" and producer["parent_id"] == request["span_id"]
        assert producer["trace_id"] == trace_id
        assert producer["attributes"]["messaging.system"] == "loom"
        assert producer["attributes"]["messaging.operation.type"] == "send"
        assert producer["attributes"]["messaging.destination.name"] == "default"

    runs: dict[str, list[dict]] = {}
    for span in spans:
        if span["kind"] == "CONSUMER":
            runs.setdefault(span["attributes"]["messaging.message.id"], []).append(span)
    for name, task_id in ids.items():
        for run in runs[task_id]:
            assert run["name"] == "process default" and run["trace_id"] == trace_id, (name, run)
            assert run["parent_id"] == producers[task_id]["span_id"]  # the enqueue is its parent
            assert run["attributes"]["messaging.operation.type"] == "process"

    [added] = runs[ids["add"]]
    assert added["status"] == "UNSET" and added["attributes"]["loom.task.status"] == "SUCCESSFUL"
    [inside] = [s for s in spans if s["name"] == "inside add"]
    assert inside["parent_id"] == added["span_id"] and inside["trace_id"] == trace_id  # the task's own spans
    [shouted] = runs[ids["shout"]]  # async def: the event loop's path
    assert shouted["attributes"]["loom.task.status"] == "SUCCESSFUL"

    [failed] = runs[ids["fail"]]
    assert failed["status"] == "ERROR" and failed["attributes"]["error.type"] == "builtins.ValueError"
    [(event, attributes)] = [e for e in failed["events"] if e[0] == "exception"]
    assert attributes["exception.type"] == "builtins.ValueError" and "no luck" in attributes["exception.stacktrace"]

    flaky_runs = sorted(runs[ids["flaky"]], key=lambda s: s["attributes"]["loom.task.attempt"])
    if compat.SUPPORTS_TASK_OPTIONS:
        first, second = flaky_runs
        assert first["status"] == "ERROR" and first["attributes"]["loom.task.status"] == "READY"
        assert "loom.retry" in [e[0] for e in first["events"]]
        assert second["attributes"]["loom.task.attempt"] == 2
        assert second["attributes"]["loom.task.status"] == "SUCCESSFUL"
    else:
        [only] = flaky_runs  # Django 6.0: no per-task retries
        assert only["status"] == "ERROR"


@pytest.mark.django_db(transaction=True)
def test_off_by_default_and_opentelemetry_is_never_imported():
    assert telemetry.tracer() is None
    code = ("import django, sys; django.setup()\n"
            "from tests.app import tasks\n"
            "from loom.worker import Worker\n"
            "result = tasks.add.enqueue(1, 2)\n"
            "Worker(burst=True).run()\n"
            "result.refresh()\n"
            "assert result.status == 'SUCCESSFUL', result.status\n"
            "assert 'opentelemetry' not in sys.modules, 'opentelemetry was imported'\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=worker_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stdout + done.stderr


def test_turned_on_without_the_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if opentelemetry-api were not installed
    with override_settings(LOOM_OPENTELEMETRY=True):
        with pytest.raises(ImproperlyConfigured, match=r"pip install django-loom\[otel\]"):
            telemetry.tracer()
    assert telemetry.tracer() is None  # the override ended: off again


@pytest.fixture
def local_tracing(monkeypatch):
    """Tracing on in this process, with an SDK tracer of our own (the global provider stays as is)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry, "_tracer", provider.get_tracer(telemetry.TRACER_NAME))
    yield exporter
    monkeypatch.setattr(telemetry, "_tracer", None)


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_enqueue_many_store_the_producer_span_context(local_tracing):
    import asyncio

    from loom.compat import task_backends
    from loom.models import TaskRecord
    from tests.app import tasks

    single = asyncio.run(tasks.add.aenqueue(1, 2))  # Django's aenqueue calls enqueue with keywords
    batch = task_backends["default"].enqueue_many(tasks.add, [((1, i), {}) for i in range(3)])
    one, many = local_tracing.get_finished_spans()
    assert one.attributes["messaging.message.id"] == single.id
    assert many.attributes["messaging.batch.message_count"] == 3
    for span, result in [(one, single), *((many, r) for r in batch)]:
        stored = TaskRecord.objects.get(pk=result.id).trace_context
        version, trace_id, span_id, flags = stored["traceparent"].split("-")
        assert (trace_id, span_id) == (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
