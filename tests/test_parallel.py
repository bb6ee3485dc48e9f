"""loom.parallel: order, real concurrency, bounds, errors, timeouts, context, inline mode, DB
connections and async code. Calls wait on events (tests.app.parallel_tasks.gate), never on sleeps;
the only sleeps are the workload of the "8 x 0.2 s" check and of a call that must still be running.
"""

import asyncio
import contextvars
import threading
import time
import traceback
import zoneinfo
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection
from django.http import JsonResponse
from django.test import AsyncClient, override_settings
from django.urls import get_urlconf, path, set_urlconf
from django.utils import timezone, translation

from loom import parallel
from loom.parallel.pool import get_pool
from tests.app import parallel_tasks as pt

GATE_TIMEOUT = pt.GATE_TIMEOUT
REQUEST_VAR = contextvars.ContextVar("request_var", default="unset")


@pytest.fixture(autouse=True)
def release_gates():
    yield
    for event in pt.GATES.values():
        event.set()  # lets calls a failed test left waiting finish
    pt.GATES.clear()
    pt.WRAPPERS.clear()


class Tracker:
    """Counts calls inside ``with tracker:`` and remembers the most at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.current = self.peak = 0

    def __enter__(self):
        with self.lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def __exit__(self, *exc):
        with self.lock:
            self.current -= 1


# -- results and concurrency ----------------------------------------------------------------


def test_results_keep_input_order_when_calls_finish_in_reverse():
    finished = []

    def call(i):
        if i < 4:
            assert pt.gate(f"done-{i + 1}").wait(GATE_TIMEOUT)
        finished.append(i)
        pt.gate(f"done-{i}").set()
        return i * 10

    assert parallel.map(call, range(5), max_workers=5) == [0, 10, 20, 30, 40]
    assert finished == [4, 3, 2, 1, 0]


def test_eight_sleeps_finish_together():
    start = time.monotonic()
    assert parallel.map(time.sleep, [0.2] * 8) == [None] * 8
    assert time.monotonic() - start < 8 * 0.2 / 2


def test_calls_run_at_the_same_time():
    barrier = threading.Barrier(8, timeout=GATE_TIMEOUT)  # breaks unless all 8 wait at once
    assert parallel.map(lambda i: barrier.wait() is not None, range(8)) == [True] * 8


def test_max_workers_caps_the_calls_in_flight():
    tracker, barrier = Tracker(), threading.Barrier(3, timeout=GATE_TIMEOUT)

    def call(_):
        with tracker:
            barrier.wait()

    parallel.map(call, range(9), max_workers=3)
    assert tracker.peak == 3


@override_settings(LOOM_PARALLEL_THREADS=2)
def test_pool_size_is_a_hard_cap_whatever_max_workers_says():
    tracker, barrier = Tracker(), threading.Barrier(2, timeout=GATE_TIMEOUT)

    def call(_):
        with tracker:
            barrier.wait()

    parallel.map(call, range(8), max_workers=50)
    assert tracker.peak == 2
    assert len(get_pool().threads) == 2


def test_gather_takes_callables_and_tuples():
    results = parallel.gather(lambda: 1, (pow, (2, 5)), (dict, (), {"a": 1}), (max, [3, 4]))
    assert results == [1, 32, {"a": 1}, 4]


def test_empty_input_returns_an_empty_list():
    assert parallel.map(abs, []) == []
    assert parallel.gather() == []


def test_as_completed_yields_in_completion_order():
    def call(name):
        if name == "slow":
            assert pt.gate("fast-seen").wait(GATE_TIMEOUT)
        return name

    seen = []
    for position, value in parallel.as_completed(call, ["slow", "fast"]):
        seen.append((position, value))
        pt.gate("fast-seen").set()
    assert seen == [(1, "fast"), (0, "slow")]


# -- errors and timeouts --------------------------------------------------------------------


def _explode(x):
    raise ValueError(f"bad {x}")


def test_first_error_is_raised_with_its_traceback_and_names_the_call():
    def call(x):
        if x == 2:
            _explode(x)
        return x

    with pytest.raises(ValueError, match="bad 2") as info:
        parallel.map(call, range(5))
    assert "_explode" in [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert any("call #2" in note and "call(2)" in note for note in info.value.__notes__)


def test_calls_not_started_when_an_error_happens_never_run():
    ran = []

    def call(x):
        ran.append(x)
        if x == 1:
            raise KeyError(x)

    with pytest.raises(KeyError):
        parallel.map(call, range(6), max_workers=1)
    assert ran == [0, 1]


def test_running_calls_finish_before_the_error_is_raised():
    finished = []

    def call(name):
        if name == "fails":
            assert pt.gate("slow-started").wait(GATE_TIMEOUT)
            raise RuntimeError("boom")
        pt.gate("slow-started").set()
        time.sleep(0.2)  # still running when the other call fails
        finished.append(name)

    with pytest.raises(RuntimeError, match="boom"):
        parallel.map(call, ["slow", "fails"])
    assert finished == ["slow"]


def test_return_exceptions_gives_partial_results():
    results = parallel.map(lambda x: 10 // x, [1, 0, 5], return_exceptions=True)
    assert results[0] == 10 and results[2] == 2
    assert isinstance(results[1], ZeroDivisionError)


def test_timeout_names_the_slow_calls_and_keeps_finished_results():
    def fetch(name):
        if name.startswith("slow"):
            pt.gate("never").wait(GATE_TIMEOUT)  # opened when the test ends
        return name.upper()

    with pytest.raises(parallel.ParallelTimeout) as info:
        parallel.map(fetch, ["a", "slow-1", "b", "slow-2"], timeout=0.3)
    error = info.value
    assert isinstance(error, TimeoutError)
    assert "fetch('slow-1') (running)" in str(error) and "fetch('slow-2') (running)" in str(error)
    assert "fetch('a')" not in str(error)
    assert error.pending == [1, 3]
    assert error.results == {0: "A", 2: "B"}


def test_timeout_cancels_calls_not_yet_started():
    ran = []

    def call(name):
        ran.append(name)
        pt.gate("never").wait(GATE_TIMEOUT)

    with pytest.raises(parallel.ParallelTimeout, match=r"call\('b'\) \(not started\)"):
        parallel.map(call, ["a", "b", "c"], max_workers=1, timeout=0.2)
    assert ran == ["a"]


@pytest.mark.parametrize("options", [
    {"max_workers": 0}, {"max_workers": -1}, {"max_workers": True}, {"max_workers": 2.5},
    {"timeout": -1}, {"timeout": 0}, {"timeout": "5"},
])
def test_bad_options_are_refused_before_anything_runs(options):
    ran = []
    with pytest.raises(ValueError, match=next(iter(options))):
        parallel.map(ran.append, [1], **options)
    assert ran == []


def test_non_callables_are_refused_before_anything_runs():
    ran = []
    with pytest.raises(TypeError, match="callable"):
        parallel.map(None, [1])
    with pytest.raises(TypeError, match="per character"):
        parallel.map(ran.append, "abc")
    with pytest.raises(TypeError, match="call 1 is 3"):
        parallel.gather(lambda: ran.append(1), 3)
    with pytest.raises(TypeError, match="arguments must be a tuple"):
        parallel.gather((ran.append, 1))
    with pytest.raises(TypeError, match="keyword arguments must be a dict"):
        parallel.gather((ran.append, (1,), [2]))
    assert ran == []


@override_settings(LOOM_PARALLEL_THREADS=2)
def test_nested_calls_run_inline_instead_of_deadlocking():
    def outer(_):
        return threading.get_ident(), parallel.map(lambda _: threading.get_ident(), range(4))

    def outer_async(_):
        return threading.get_ident(), async_to_sync(parallel.amap)(lambda _: threading.get_ident(), range(4))

    # Both pool threads run an outer call: inner calls sent to the pool would wait forever.
    for fn in (outer, outer_async):
        for ident, inner in parallel.map(fn, range(2), timeout=GATE_TIMEOUT):
            assert set(inner) == {ident}


# -- context --------------------------------------------------------------------------------


def test_contextvars_language_time_zone_and_urlconf_carry_into_threads():
    def snapshot(_):
        return (REQUEST_VAR.get(), translation.get_language(), timezone.get_current_timezone_name(),
                get_urlconf(), threading.get_ident())

    token = REQUEST_VAR.set("from-request")
    set_urlconf("tests.urls")
    try:
        with translation.override("fr"), timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
            results = parallel.map(snapshot, range(3))
    finally:
        set_urlconf(None)
        REQUEST_VAR.reset(token)
    assert {r[:4] for r in results} == {("from-request", "fr", "Europe/Paris", "tests.urls")}
    assert threading.get_ident() not in {r[4] for r in results}


def test_what_a_call_changes_does_not_leak_to_the_caller_or_the_next_call():
    def change(_):
        REQUEST_VAR.set("changed")
        translation.activate("de")

    with translation.override("fr"):
        parallel.map(change, range(2), max_workers=1)
        after = parallel.map(lambda _: (REQUEST_VAR.get(), translation.get_language()), range(4), max_workers=1)
        assert translation.get_language() == "fr"
    assert after == [("unset", "fr")] * 4
    assert REQUEST_VAR.get() == "unset"


# -- inline mode and test cases -------------------------------------------------------------


@pytest.mark.django_db
def test_inline_block_runs_calls_in_the_calling_thread_and_sees_testcase_data():
    pt.add_note("uncommitted")
    with parallel.inline():
        results = parallel.map(lambda _: (threading.get_ident(), pt.count_notes()), range(3))
    assert results == [(threading.get_ident(), 1)] * 3


@pytest.mark.django_db
@override_settings(LOOM_PARALLEL_INLINE=True)
def test_inline_setting_does_the_same_for_gather_and_amap():
    pt.add_note("uncommitted")
    assert parallel.gather(pt.count_notes, pt.count_notes) == [1, 1]
    assert async_to_sync(parallel.amap)(lambda _: pt.count_notes(), range(2)) == [1, 1]


@pytest.mark.django_db
def test_without_inline_pool_threads_do_not_see_the_testcase_transaction():
    pt.add_note("uncommitted")
    assert pt.count_notes() == 1
    assert parallel.map(lambda _: pt.count_notes(), range(2)) == [0, 0]


@pytest.mark.django_db(transaction=True)
def test_under_transaction_testcase_pool_threads_share_committed_data():
    pt.add_note("committed")
    ids = parallel.map(pt.add_note, ["a", "b", "c"])
    assert len(set(ids)) == 3 and pt.count_notes() == 4
    assert parallel.map(lambda _: pt.count_notes(), range(2)) == [4, 4]


# -- database connections -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_connections_opened_by_calls_are_closed_before_map_returns():
    with ThreadPoolExecutor(2) as bare:  # the leak loom prevents, shown on the same check
        list(bare.map(lambda _: pt.use_connection.call(), range(2)))
    leaked, pt.WRAPPERS[:] = list(pt.WRAPPERS), []
    assert any(wrapper.connection is not None for wrapper in leaked)
    for wrapper in leaked:
        wrapper.inc_thread_sharing()
        wrapper.close()

    assert parallel.map(lambda _: pt.use_connection.call(), range(8)) == [1] * 8
    assert len(pt.WRAPPERS) == 8
    assert all(wrapper.connection is None for wrapper in pt.WRAPPERS)


@pytest.mark.django_db(transaction=True)
def test_a_thousand_calls_leave_no_server_connection_behind():
    if connection.vendor != "postgresql":
        pytest.skip("counts server-side connections in PostgreSQL's pg_stat_activity")
    before = pt.server_connections()
    seen = parallel.map(lambda _: pt.server_connections(), range(1000))
    assert max(seen) <= before + get_pool().size * 2  # bounded by the pool, not by the calls
    # The server removes a closed connection's backend asynchronously; there is no event to wait
    # on, so poll its count until it settles, with a deadline.
    deadline = time.monotonic() + GATE_TIMEOUT
    while (now := pt.server_connections()) > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert now == before


# -- async code -----------------------------------------------------------------------------


def test_amap_runs_coroutines_on_the_loop_with_a_limit_in_input_order():
    async def scenario():
        tracker, barrier = Tracker(), asyncio.Barrier(3)

        async def fetch(i):
            with tracker:
                await asyncio.wait_for(barrier.wait(), GATE_TIMEOUT)
            return i * 2

        return await parallel.amap(fetch, range(9), max_workers=3), tracker.peak

    assert async_to_sync(scenario)() == ([i * 2 for i in range(9)], 3)


def test_amap_runs_sync_callables_in_threads_without_blocking_the_loop():
    release = threading.Event()

    def blocking(i):
        assert release.wait(GATE_TIMEOUT), "the event loop was blocked"
        return i, threading.get_ident()

    async def scenario():
        async def releaser():
            await asyncio.sleep(0)  # a yield: runs only if amap left the loop free
            release.set()

        results, _ = await asyncio.gather(parallel.amap(blocking, range(4)), releaser())
        return results, threading.get_ident()

    results, loop_thread = async_to_sync(scenario)()
    assert [i for i, _ in results] == [0, 1, 2, 3]
    assert loop_thread not in {ident for _, ident in results}


def test_map_refuses_to_block_a_running_loop_and_works_through_sync_to_async():
    async def scenario():
        with pytest.raises(SynchronousOnlyOperation, match="amap"):
            parallel.map(abs, [1])
        return await sync_to_async(parallel.map)(abs, [-1, -2])

    assert async_to_sync(scenario)() == [1, 2]


def test_agather_mixes_coroutines_sync_calls_and_awaitables():
    async def double(x):
        await asyncio.sleep(0)
        return x * 2

    async def scenario():
        return await parallel.agather((double, (1,)), (pow, (2, 3)), double(5), lambda: "sync")

    assert async_to_sync(scenario)() == [2, 8, 10, "sync"]


def test_amap_first_error_cancels_the_other_coroutines():
    cancelled = []

    async def call(i):
        if i == 0:
            await asyncio.sleep(0)
            raise ValueError("first")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(i)
            raise

    with pytest.raises(ValueError, match="first"):
        async_to_sync(parallel.amap)(call, range(3))
    assert sorted(cancelled) == [1, 2]


def test_amap_timeout_names_and_cancels_the_slow_coroutine():
    cancelled = []

    async def call(name):
        if name == "slow":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise
        return name

    with pytest.raises(parallel.ParallelTimeout, match=r"call\('slow'\) \(running\)") as info:
        async_to_sync(parallel.amap)(call, ["fast", "slow"], timeout=0.2)
    assert info.value.results == {0: "fast"}
    assert cancelled == ["slow"]


def _price(symbol):
    return {"symbol": symbol, "language": translation.get_language()}


async def prices_view(request):
    async def quote(symbol):
        await asyncio.sleep(0)
        return symbol.lower()

    with translation.override("fr"):
        threaded = await parallel.amap(_price, ["A", "B"], timeout=GATE_TIMEOUT)
    return JsonResponse({"threaded": threaded, "loop": await parallel.amap(quote, ["C", "D"])})


urlpatterns = [path("prices/", prices_view)]


@override_settings(ROOT_URLCONF=__name__)
def test_an_async_view_can_fan_out_with_amap():
    response = async_to_sync(AsyncClient().get)("/prices/")
    assert response.status_code == 200
    assert response.json() == {
        "threaded": [{"symbol": "A", "language": "fr"}, {"symbol": "B", "language": "fr"}],
        "loop": ["c", "d"],
    }
