"""In a real browser: start tasks on the demo page and watch their bars; use the dashboard."""

from __future__ import annotations

import pytest

from tests.browser.conftest import login


RECORD_UPDATES = """() => { window.__loom = [];
  document.addEventListener('loom:update', e => window.__loom.push([e.detail.status, e.detail.percent])); }"""


def test_report_progress_bar_reaches_100_percent(page, demo_site, screenshots):
    page.goto(demo_site + "/")
    page.evaluate(RECORD_UPDATES)
    page.click("#start-report")
    bar = page.locator(".demo-task .loom-progress").first
    bar.and_(page.locator('[data-loom-state="RUNNING"]')).wait_for()
    if screenshots:
        page.screenshot(path=screenshots / "demo-running.png", full_page=True)
    bar.and_(page.locator('[data-loom-state="SUCCESSFUL"]')).wait_for()
    assert bar.locator('[data-loom-field="percent"]').inner_text() == "100%"
    assert bar.locator(".loom-progress__bar").evaluate("el => el.style.width") == "100%"
    updates = page.evaluate("window.__loom")
    between = [p for status, p in updates if status == "RUNNING" and p is not None and 0 < p < 100]
    assert between, f"no live progress between 0 and 100% was shown: {updates}"
    assert between == sorted(between), f"the bar went backwards: {between}"
    page.locator(".demo-task .demo-result").first.filter(has_text="checksum").wait_for()
    if screenshots:
        page.screenshot(path=screenshots / "demo-done.png", full_page=True)


def test_async_and_failing_tasks_reach_their_final_state(page, demo_site):
    page.goto(demo_site + "/")
    page.click("#start-prices")
    page.locator('.demo-task .loom-progress[data-loom-state="SUCCESSFUL"]').first.wait_for()
    page.click("#start-fail")
    failed = page.locator('.demo-task .loom-progress[data-loom-state="FAILED"]').first
    failed.wait_for()
    page.locator(".demo-result--bad", has_text="RuntimeError").first.wait_for()


def test_dashboard_shows_the_failed_task_and_retries_it(page, demo_site, screenshots):
    page.goto(demo_site + "/")
    page.click("#start-fail")
    page.locator('.demo-task .loom-progress[data-loom-state="FAILED"]').first.wait_for()
    login(page, demo_site, "/loom/tasks/?status=FAILED")
    page.wait_for_url("**/loom/tasks/?status=FAILED")
    page.locator("a.ld-task-link", has_text="demo.tasks.always_fails").first.click()
    page.locator(".ld-error summary", has_text="RuntimeError: the demo asked for a failure").first.wait_for()
    assert "1 of 1" in page.inner_text(".ld-facts")
    page.click("button:has-text('Retry')")
    page.locator(".ld-message--success", has_text="queued to run again").wait_for()
    # The worker runs it again; the live region shows the second attempt's end without a reload.
    page.locator('tr[data-attempt="2"] [data-outcome]', has_text="Failed").wait_for()
    assert "2 of 2" in page.inner_text(".ld-facts")
    if screenshots:
        page.screenshot(path=screenshots / "dashboard-task.png", full_page=True)


@pytest.mark.parametrize("width", [1280, 390])
def test_dashboard_pages_fit_the_screen(browser, demo_site, screenshots, width):
    context = browser.new_context(viewport={"width": width, "height": 860})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        login(page, demo_site, "/loom/")
        page.wait_for_url("**/loom/")
        for name, path in [("overview", "/loom/"), ("tasks", "/loom/tasks/"), ("workers", "/loom/workers/"),
                           ("schedules", "/loom/schedules/")]:
            page.goto(demo_site + path)
            assert page.locator("h1.ld-title").is_visible()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {width}px screen"
            if screenshots:
                page.screenshot(path=screenshots / f"{name}-{width}.png", full_page=True)
        page.goto(demo_site + "/loom/tasks/")
        page.locator("a.ld-task-link").first.click()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the task page is {overflow}px wider than a {width}px screen"
        if screenshots:
            page.screenshot(path=screenshots / f"task-{width}.png", full_page=True)
    finally:
        context.close()
