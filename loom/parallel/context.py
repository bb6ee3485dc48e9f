"""What a ``parallel`` call carries from the caller into a pool thread, and the two mode switches.

``RequestState`` is Django's per-thread request state: active language, current time zone,
URLconf and script prefix. asgiref's ``Local`` keeps these per thread even when ``contextvars``
are copied into another thread, so they are captured in the caller and applied explicitly.
``run_call`` runs one call in a pool thread inside a copy of the caller's ``contextvars`` (one copy
per call, so what a call changes never leaks to the caller or the next call), with that state,
and marked as inside the pool: a ``parallel`` call made there runs inline rather than waiting
for pool threads it may itself be occupying.

``inline()`` (or ``settings.LOOM_PARALLEL_INLINE = True``) makes every ``parallel`` call run
serially in the calling thread, for tests.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, set_script_prefix, set_urlconf
from django.utils import timezone, translation

# True inside a call running in the pool.
_inside_pool: contextvars.ContextVar[bool] = contextvars.ContextVar("loom_parallel_inside", default=False)
# True inside ``with parallel.inline():``.
_inline: contextvars.ContextVar[bool] = contextvars.ContextVar("loom_parallel_inline", default=False)


def inline_active() -> bool:
    return _inline.get() or bool(getattr(settings, "LOOM_PARALLEL_INLINE", False))


def inside_pool() -> bool:
    return _inside_pool.get()


@contextlib.contextmanager
def inline() -> Iterator[None]:
    """Run every ``parallel`` call made inside this block serially, in the calling thread."""
    token = _inline.set(True)
    try:
        yield
    finally:
        _inline.reset(token)


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class RequestState:
    """Captured in the caller, applied in a pool thread; a field is ``_UNSET`` when the caller has
    the process default, so the common case costs nothing per call."""

    language: str | None
    zone: tzinfo
    urlconf: str | None
    script_prefix: str

    @classmethod
    def capture(cls) -> RequestState:
        language = translation.get_language()
        zone = timezone.get_current_timezone()
        prefix = get_script_prefix()
        return cls(
            language=_UNSET if language == settings.LANGUAGE_CODE else language,
            zone=_UNSET if zone is timezone.get_default_timezone() else zone,
            urlconf=get_urlconf(_UNSET),
            script_prefix=_UNSET if prefix == "/" else prefix,
        )

    def apply(self) -> None:
        if self.language is not _UNSET:
            if self.language is None:
                translation.deactivate_all()
            else:
                translation.activate(self.language)
        if self.zone is not _UNSET:
            timezone.activate(self.zone)
        if self.urlconf is not _UNSET:
            set_urlconf(self.urlconf)
        if self.script_prefix is not _UNSET:
            set_script_prefix(self.script_prefix)


def run_call(context: contextvars.Context, state: RequestState, fn: Callable[..., Any],
             args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Run one call in a pool thread (see the module docstring)."""
    return context.run(_run_in_context, state, fn, args, kwargs)


def _run_in_context(state: RequestState, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _inside_pool.set(True)
    state.apply()
    return fn(*args, **kwargs)
