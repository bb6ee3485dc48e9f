"""Calls: what a ``parallel`` function was asked to run, checked before anything starts.

``Call`` is one function with its arguments (or, for ``agather``, one awaitable). This module
validates every argument of the public functions up front, so bad input fails with a clear
``TypeError``/``ValueError`` naming the culprit and no call has run yet. It also owns
``ParallelTimeout``, whose message names the calls that were too slow.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Unfinished calls named in a ParallelTimeout message; the rest are counted.
NAMED_IN_TIMEOUT = 10

_repr = reprlib.Repr(maxstring=40, maxother=40, maxlevel=2, maxlist=4, maxdict=4, maxtuple=4)


@dataclass(frozen=True, slots=True)
class Call:
    fn: Callable[..., Any] | None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] | None = None
    # For agather only: an awaitable passed as is (fn is None then).
    awaitable: Awaitable[Any] | None = None
    # Whether fn is a coroutine function (computed once per map, not per item).
    is_async: bool = False

    def describe(self) -> str:
        """A short, readable name for messages: ``fetch_price('AAPL')``."""
        if self.awaitable is not None:
            code = getattr(self.awaitable, "cr_code", None)
            return f"{code.co_qualname}(...)" if code is not None else _repr.repr(self.awaitable)
        fn = getattr(self.fn, "func", self.fn)  # functools.partial
        name = getattr(fn, "__qualname__", None) or _repr.repr(fn)
        parts = [_repr.repr(arg) for arg in self.args]
        parts += [f"{key}={_repr.repr(value)}" for key, value in (self.kwargs or {}).items()]
        return f"{name}({', '.join(parts)})"


def check_options(max_workers: Any, timeout: Any) -> None:
    if max_workers is not None and (
        not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
    ):
        raise ValueError(f"max_workers must be an integer >= 1 or None, got {max_workers!r}.")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not timeout > 0
    ):
        raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}.")


def map_calls(fn: Any, items: Iterable[Any], label: str) -> list[Call]:
    if not callable(fn):
        raise TypeError(f"{label}() needs a callable as its first argument, got {fn!r}.")
    if isinstance(items, (str, bytes)):
        raise TypeError(f"{label}() would call {_name(fn)} once per character of {items!r}; pass a list.")
    is_async = inspect.iscoroutinefunction(fn)
    return [Call(fn, (item,), None, None, is_async) for item in items]


def gather_calls(calls: tuple[Any, ...], label: str, *, awaitables: bool = False) -> list[Call]:
    return [_one_call(spec, position, label, awaitables) for position, spec in enumerate(calls)]


def _one_call(spec: Any, position: int, label: str, awaitables: bool) -> Call:
    if awaitables and inspect.isawaitable(spec):
        return Call(None, awaitable=spec, is_async=True)
    if callable(spec):
        return Call(spec, is_async=inspect.iscoroutinefunction(spec))
    if isinstance(spec, tuple) and 1 <= len(spec) <= 3 and callable(spec[0]):
        fn, args, kwargs = (*spec, *((), None)[len(spec) - 1:])  # type: ignore[misc]  # 1 to 3 items
        if not isinstance(args, (tuple, list)):
            raise TypeError(
                f"{label}() call {position}: arguments must be a tuple or list, got {args!r}; "
                "write (fn, (arg,), {'key': value})."
            )
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise TypeError(f"{label}() call {position}: keyword arguments must be a dict, got {kwargs!r}.")
        return Call(fn, tuple(args), kwargs, is_async=inspect.iscoroutinefunction(fn))
    accepted = "a callable, an awaitable" if awaitables else "a callable"
    raise TypeError(
        f"{label}() call {position} is {_repr.repr(spec)}; each call must be {accepted} or a "
        "tuple (callable, args) / (callable, args, kwargs)."
    )


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


class ParallelTimeout(TimeoutError):
    """Some calls of a ``parallel`` run had not finished when its ``timeout`` expired.

    ``pending`` holds the positions of the unfinished calls, ``results`` the values (or, with
    ``return_exceptions=True``, the exceptions) of the calls that finished, by position.
    """

    def __init__(
        self,
        label: str,
        timeout: float,
        calls: list[Call],
        unfinished: list[tuple[int, str]],
        results: dict[int, Any],
        note: str = "",
    ) -> None:
        self.timeout = timeout
        self.pending = [position for position, _ in unfinished]
        self.results = dict(results)
        named = [f"#{i} {calls[i].describe()} ({state})" for i, state in unfinished[:NAMED_IN_TIMEOUT]]
        more = len(unfinished) - len(named)
        listing = ", ".join(named) + (f" and {more} more" if more > 0 else "")
        super().__init__(
            f"{label}() timed out after {timeout:g} s with {len(unfinished)} of {len(calls)} calls "
            f"unfinished: {listing}.{note}"
        )
