"""OpenTelemetry tracing of tasks: a producer span per enqueue, a consumer span per run.

Turn it on with ``LOOM_OPENTELEMETRY = True`` in settings and ``pip install django-loom[otel]``
(``opentelemetry-api``); configure the SDK (exporter, sampler, resource) in the web and worker
processes as for the rest of your site, e.g. with ``opentelemetry-instrument`` or a few lines in
settings. loom only talks to the API's global tracer provider and propagator.

What it records, following OpenTelemetry's messaging semantic conventions:

- ``enqueue <queue>`` (kind PRODUCER) around ``enqueue``/``enqueue_many``, a child of whatever
  span is current (the request's): ``messaging.system = "loom"``, ``messaging.operation.type =
  "send"``, ``messaging.destination.name``, ``messaging.message.id`` (or
  ``messaging.batch.message_count``), ``loom.task.path``. Its context is injected with the global
  propagator (W3C ``traceparent``/``tracestate`` by default) into the row's ``trace_context``.
- ``process <queue>`` (kind CONSUMER) around each run, in the worker thread or coroutine that
  runs the task, with the stored context as parent, so the run and every span the task makes
  belong to the request's trace: ``messaging.operation.type = "process"``, ``messaging.message.id``,
  ``loom.task.attempt``, ``loom.task.status`` (the outcome). A failed run sets status ERROR,
  ``error.type`` and an ``exception`` event with the stored traceback; a run that will be retried
  also gets a ``loom.retry`` event saying when.

Off (the default) it costs a cached flag check per call and never imports ``opentelemetry``.
It refuses to configure the SDK, and a task enqueued while tracing was off simply has no parent.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from loom.records import ClaimedTask, Outcome

SETTING = "LOOM_OPENTELEMETRY"
# Instrumentation scope name of loom's spans.
TRACER_NAME = "loom"
# messaging.system: not one of the well-known values, so the library's own name.
SYSTEM = "loom"

F = TypeVar("F", bound=Callable[..., Any])

# None: not looked up yet; False: off; else the tracer.
_tracer: Any = None


def tracer() -> Any:
    """The tracer when ``LOOM_OPENTELEMETRY`` is on, else None (and opentelemetry stays unimported)."""
    global _tracer
    if _tracer is None:
        from django.conf import settings

        if not getattr(settings, SETTING, False):
            _tracer = False
        else:
            try:
                from opentelemetry import trace
            except ImportError:
                raise ImproperlyConfigured(
                    f"{SETTING} is on but opentelemetry-api is not installed; pip install "
                    "django-loom[otel], or turn the setting off."
                ) from None
            _tracer = trace.get_tracer(TRACER_NAME)
    return _tracer or None


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    global _tracer
    if setting == SETTING:
        _tracer = None


def _connect() -> None:
    from django.core.signals import setting_changed

    setting_changed.connect(_on_setting_changed, dispatch_uid="loom.telemetry.setting_changed")


_connect()


def carrier() -> dict[str, str] | None:
    """The current span context as propagation headers, for the row (None when off or empty)."""
    if tracer() is None:
        return None
    from opentelemetry.propagate import inject

    headers: dict[str, str] = {}
    inject(headers)
    return headers or None


# -- enqueue ---------------------------------------------------------------------------------

def traced_enqueue(method: F) -> F:
    """Wrap a backend's ``enqueue``/``enqueue_many(self, task, ...)`` in a producer span."""

    @functools.wraps(method)
    def wrapper(backend: Any, *args: Any, **kwargs: Any) -> Any:
        active = tracer()
        if active is None:
            return method(backend, *args, **kwargs)
        from opentelemetry.trace import SpanKind

        task = kwargs["task"] if "task" in kwargs else args[0]  # Django's aenqueue passes keywords

        attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "enqueue",
            "messaging.destination.name": task.queue_name,
            "loom.task.path": task.module_path,
            "loom.backend": backend.alias,
        }
        with active.start_as_current_span(f"enqueue {task.queue_name}", kind=SpanKind.PRODUCER,
                                          attributes=attributes) as span:
            result = method(backend, *args, **kwargs)
            if isinstance(result, list):
                span.set_attribute("messaging.batch.message_count", len(result))
            else:
                span.set_attribute("messaging.message.id", result.id)
            return result

    return wrapper  # type: ignore[return-value]


# -- runs ------------------------------------------------------------------------------------

@contextmanager
def _run_span(active: Any, claimed: ClaimedTask) -> Iterator[Any]:
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    parent = extract(claimed.trace_context) if claimed.trace_context else None
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": claimed.queue_name,
        "messaging.message.id": claimed.id,
        "loom.task.path": claimed.task_path,
        "loom.task.attempt": claimed.attempts,
        "loom.backend": claimed.backend,
    }
    with active.start_as_current_span(f"process {claimed.queue_name}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes) as span:
        yield span


def _record(span: Any, outcome: Outcome) -> None:
    """Put what the run produced on its span: status, and the error and retry if any."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("loom.task.status", outcome.status)
    if outcome.status == "SUCCESSFUL":
        return
    errors = json.loads(outcome.errors_json) if outcome.errors_json else []
    last = errors[-1] if errors else {}
    kind = last.get("exception_class_path", outcome.status)
    span.set_attribute("error.type", kind)
    span.add_event("exception", {"exception.type": kind, "exception.stacktrace": last.get("traceback", "")})
    if outcome.status == "READY":  # failed, and will run again
        span.add_event("loom.retry", {"loom.retry.available_at": str(outcome.available_at)})
    span.set_status(Status(StatusCode.ERROR, kind))


def traced_run(func: F) -> F:
    """Wrap ``execute``/``aexecute(claimed) -> Outcome`` in a consumer span."""
    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def arun(claimed: ClaimedTask) -> Outcome:
            active = tracer()
            outcome: Outcome
            if active is None:
                outcome = await func(claimed)
                return outcome
            with _run_span(active, claimed) as span:
                outcome = await func(claimed)
                _record(span, outcome)
                return outcome

        return arun  # type: ignore[return-value]

    @functools.wraps(func)
    def run(claimed: ClaimedTask) -> Outcome:
        active = tracer()
        outcome: Outcome
        if active is None:
            outcome = func(claimed)
            return outcome
        with _run_span(active, claimed) as span:
            outcome = func(claimed)
            _record(span, outcome)
            return outcome

    return run  # type: ignore[return-value]
