"""In a real browser, on the dashboard: retry, cancel, the overview updating live (and catching up
after a lost stream), the flaky task's attempts, a schedule ticking, and pages that fit."""

from __future__ import annotations

import re

import pytest

from tests.browser.flows import (RECORD_TASK_PAGE, assert_header_and_bar_agree, login, mark_window, not_reloaded,
                                 start_demo_task, states)


@pytest.fixture
def staff(contexts, demo_site):
    """A signed-in staff user's page that records what every task page showed."""
    context = contexts()
    context.add_init_script(RECORD_TASK_PAGE)
    page = context.new_page()
    login(page, demo_site, "/loom/")
    return page


def test_retry_shows_the_new_attempt_live_and_never_an_old_bar(staff, demo_site, shot):
    task_id = start_demo_task(staff, demo_site, "#start-fail")
    staff.goto(f"{demo_site}/loom/tasks/{task_id}/")
    staff.locator("[data-task-status]", has_text="Failed").wait_for()
    assert staff.locator("[data-phase-detail]").inner_text() == (
        "After 1 attempt: RuntimeError: the demo asked for a failure.")
    shot(staff, "dashboard-1-failed-task")
    staff.click("button:has-text('Retry')")
    staff.locator(".ld-message--success", has_text="queued to run again").wait_for()
    mark_window(staff)
    # The worker runs it again; the page follows without a reload.
    staff.locator('tr[data-attempt="2"] [data-outcome]', has_text="Failed").wait_for()
    staff.locator("[data-task-status]", has_text="Failed").wait_for()
    assert not_reloaded(staff)
    assert staff.locator("[data-attempts]").inner_text() == "2 of 2"
    took = staff.locator("[data-duration]").inner_text()
    assert took.endswith(" ms") or float(took.removesuffix(" s")) < 5, f"one attempt's duration, not both: {took}"
    workers = staff.locator("[data-workers]").inner_text().split(", ")
    assert len(workers) == len(set(workers)), workers
    assert staff.locator(".ld-error summary").count() == 2
    shown = states(staff)
    assert_header_and_bar_agree(shown)
    labels = [s[0] for s in shown]
    # From load: perhaps the first attempt still running (a slow worker), its failure, then live
    # the retry (queued, running; a fast worker can fail the second attempt before the page
    # patches, and the same "Failed" is then recorded once), the second failure last. Never a
    # failure shown again between the retry's states: that would be an old attempt's bar.
    first = labels.index("Failed")
    assert labels[-1] == "Failed" and set(labels[:first]) <= {"Ready", "Running"}, shown
    assert "Failed" not in labels[first + 1:-1], shown
    shot(staff, "dashboard-2-retried-task")


def test_cancel_of_a_running_task_says_stopping_then_cancelled_everywhere(staff, demo_site, shot):
    task_id = start_demo_task(staff, demo_site, "#start-report")
    staff.goto(f"{demo_site}/loom/tasks/{task_id}/")
    staff.locator("[data-task-status]", has_text="Running").wait_for()
    staff.click("button:has-text('Cancel')")
    staff.locator(".ld-message--success", has_text="stop requested").wait_for()
    staff.locator("[data-task-status]", has_text="Cancelled").wait_for()
    shot(staff, "dashboard-3-cancelled-task")
    shown = states(staff)
    assert_header_and_bar_agree(shown)
    labels = [s[0] for s in shown]
    if labels[0] == "Ready":
        labels = labels[1:]  # the page loaded before a busy worker had started the task
    assert labels[-1] == "Cancelled" and set(labels) <= {"Running", "Stopping", "Cancelled"}, labels
    assert labels.index("Cancelled") > max((i for i, label in enumerate(labels) if label != "Cancelled"),
                                           default=-1)
    assert "Stopped during attempt 1." == staff.locator("[data-phase-detail]").inner_text() or \
        "Cancelled by an operator" in staff.locator("[data-phase-detail]").inner_text()
    assert staff.locator("button:has-text('Cancel')").count() == 0
    assert staff.locator("button:has-text('Retry')").count() == 1
    staff.goto(f"{demo_site}/loom/tasks/?status=CANCELLED")
    row = staff.locator(f'tr[data-task-row="{task_id}"]')
    assert row.locator("[data-phase]").inner_text() == "Cancelled"
    assert "cancelling" not in row.inner_text().lower() and "stopping" not in row.inner_text().lower()


FINISHED = "+/(\\d+) finished in the last hour/.exec(document.querySelector('.ld-card__head').textContent)[1]"


def finished_last_hour(page) -> int:
    return page.evaluate(FINISHED)


def test_the_overview_updates_live_and_catches_up_after_a_lost_stream(contexts, proxy, demo_site, shot):
    staff = contexts().new_page()  # through a proxy that the test can cut like a failing network
    login(staff, proxy.url, "/loom/")
    region = staff.locator("[data-loom-live]")
    stream_is = "document.querySelector('[data-loom-live]').getAttribute('data-loom-stream') === '{}'"
    staff.wait_for_function(stream_is.format("open"))
    mark_window(staff)
    before = finished_last_hour(staff)
    demo = contexts().new_page()
    start_demo_task(demo, demo_site, "#start-prices")
    staff.wait_for_function(f"{FINISHED} > {before}")
    assert not_reloaded(staff)
    shot(staff, "dashboard-4-overview-live")

    # The network drops; work goes on; the network comes back and the page catches up.
    proxy.cut()
    staff.wait_for_function(stream_is.format("lost"))
    missed = finished_last_hour(staff)
    failing = start_demo_task(demo, demo_site, "#start-fail")
    demo.locator(f'.demo-task[data-task="{failing}"] .loom-progress[data-loom-state="FAILED"]').wait_for()
    assert finished_last_hour(staff) == missed  # nothing reaches a page that is cut off
    proxy.restore()
    staff.wait_for_function(f"{FINISHED} > {missed}")
    staff.wait_for_function(stream_is.format("open"))
    assert not_reloaded(staff) and region.get_attribute("data-loom-version")


def test_the_flaky_tasks_attempts_on_its_page(staff, demo_site, shot):
    task_id = start_demo_task(staff, demo_site, "#start-flaky")
    staff.goto(f"{demo_site}/loom/tasks/{task_id}/")
    staff.locator("[data-task-status]", has_text="Waiting to retry").wait_for()
    detail = staff.locator("[data-phase-detail]").inner_text()
    assert re.fullmatch(r"Attempt [23] of 3 starts at \d\d:\d\d:\d\d\.", detail), detail
    shot(staff, "dashboard-5-flaky-waiting")
    staff.locator("[data-task-status]", has_text="Successful").wait_for(timeout=60_000)
    outcomes = staff.locator("tr[data-attempt] [data-outcome]").all_inner_texts()
    assert outcomes == ["Failed", "Failed", "Successful"], outcomes
    errors = staff.locator(".ld-error summary").all_inner_texts()
    assert errors == [f"ConnectionError: the flaky service timed out on attempt {n}" for n in (1, 2)], errors
    assert staff.locator("[data-phase-detail]").inner_text() == "On attempt 3 of 3."
    waited = staff.locator('tr[data-attempt] td[data-label="Waited before"]').all_inner_texts()
    assert waited[0] == "—" and all(re.fullmatch(r"\d+ ms|\d+\.\d\d s", w) for w in waited[1:]), waited
    assert_header_and_bar_agree(states(staff))
    shot(staff, "dashboard-6-flaky-done")


def test_the_schedule_ticks_on_the_schedules_page(staff, demo_site, shot):
    staff.goto(demo_site + "/loom/schedules/")
    row = staff.locator('tr[data-key="s-demo-tick"]')
    last_tick = "document.querySelector('tr[data-key=\"s-demo-tick\"] td[data-last-tick]').dataset.lastTick"
    staff.wait_for_function(f"{last_tick} !== ''", timeout=30_000)  # the worker's first tick
    first = row.locator("td[data-last-tick]").get_attribute("data-last-tick")
    mark_window(staff)
    staff.wait_for_function(f"{last_tick} !== {first!r}", timeout=30_000)
    assert not_reloaded(staff)
    last = row.locator("td[data-last-tick]").inner_text()
    next_run = row.locator('td[data-label="Next run"]').inner_text()
    tick, due = (int(re.search(r"(\d\d):(\d\d):(\d\d)", t)[3]) for t in (last, next_run))
    assert (due - tick) % 60 == 10, (last, next_run)
    shot(staff, "dashboard-7-schedules")


@pytest.mark.parametrize("width", [1280, 390])
def test_dashboard_pages_fit_the_screen(contexts, demo_site, shot, width):
    page = contexts(width=width).new_page()
    login(page, demo_site, "/loom/")
    for name, path in [("overview", "/loom/"), ("tasks", "/loom/tasks/"), ("workers", "/loom/workers/"),
                       ("schedules", "/loom/schedules/")]:
        page.goto(demo_site + path)
        assert page.locator("h1.ld-title").is_visible()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a {width}px screen"
        shot(page, f"{name}-{width}")
    page.goto(demo_site + "/loom/tasks/")
    page.locator("a.ld-task-link").first.click()
    # The click returns before the task page has replaced the list: measuring then read a document
    # on its way out (documentElement null).
    page.wait_for_url(re.compile(r"/loom/tasks/[0-9a-f-]+/$"))
    assert page.locator("h1.ld-title").is_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the task page is {overflow}px wider than a {width}px screen"
    shot(page, f"task-{width}")
