"""In a real browser, on the demo page: start tasks and watch their bars, their results, their
errors (class and message, with a link to the task) and the retries of the flaky task."""

from __future__ import annotations

import re

from tests.browser.flows import start_demo_task

RECORD_UPDATES = """() => { window.__loom = [];
  document.addEventListener('loom:update',
    e => window.__loom.push([e.detail.status, e.detail.percent, e.detail.label])); }"""


def test_report_progress_bar_reaches_100_percent(page, demo_site, shot):
    page.goto(demo_site + "/")
    page.evaluate(RECORD_UPDATES)
    task_id = start_demo_task(page, demo_site, "#start-report")
    bar = page.locator(f'.demo-task[data-task="{task_id}"] .loom-progress')
    bar.and_(page.locator('[data-loom-state="RUNNING"]')).wait_for()
    shot(page, "demo-1-report-running")
    bar.and_(page.locator('[data-loom-state="SUCCESSFUL"]')).wait_for()
    assert bar.locator('[data-loom-field="percent"]').inner_text() == "100%"
    assert bar.locator(".loom-progress__bar").evaluate("el => el.style.width") == "100%"
    updates = page.evaluate("window.__loom")
    between = [p for status, p, _ in updates if status == "RUNNING" and p is not None and 0 < p < 100]
    assert between, f"no live progress between 0 and 100% was shown: {updates}"
    assert between == sorted(between), f"the bar went backwards: {between}"
    page.locator(f'.demo-task[data-task="{task_id}"] .demo-result', has_text="checksum").wait_for()
    shot(page, "demo-2-report-done")


def test_a_failure_shows_class_and_message_and_links_to_the_task(page, demo_site, shot):
    prices = start_demo_task(page, demo_site, "#start-prices")
    page.locator(f'.demo-task[data-task="{prices}"] .loom-progress[data-loom-state="SUCCESSFUL"]').wait_for()
    task_id = start_demo_task(page, demo_site, "#start-fail")
    box = page.locator(f'.demo-task[data-task="{task_id}"]')
    box.locator('.loom-progress[data-loom-state="FAILED"]').wait_for()
    box.locator(".demo-result--bad", has_text="RuntimeError: the demo asked for a failure").wait_for()
    shot(page, "demo-3-failure")
    assert box.locator("a.demo-open").get_attribute("href") == f"/loom/tasks/{task_id}/"
    box.locator("a.demo-open").click()
    # The dashboard is for staff: a visitor is asked to sign in, and then sent to that task.
    page.wait_for_url(re.compile(rf"/admin/login/\?next=(/|%2F)loom(/|%2F)tasks(/|%2F){task_id}"))


def test_the_flaky_task_waits_between_attempts_and_succeeds_on_the_third(page, demo_site, shot):
    page.goto(demo_site + "/")
    page.evaluate(RECORD_UPDATES)
    task_id = start_demo_task(page, demo_site, "#start-flaky")
    box = page.locator(f'.demo-task[data-task="{task_id}"]')
    box.locator(".loom-progress__status", has_text="waiting to retry").wait_for()
    shot(page, "demo-4-flaky-waiting")
    box.locator('.loom-progress[data-loom-state="SUCCESSFUL"]').wait_for(timeout=60_000)
    result = box.locator(".demo-result", has_text="succeeded_on_attempt")
    result.wait_for()
    text = result.inner_text()
    assert '"succeeded_on_attempt":3' in text
    assert re.search(r"attempt 1: failed \(ConnectionError: the flaky service timed out on attempt 1\)", text), text
    assert re.search(r"attempt 2: failed \(ConnectionError: [^)]+attempt 2\)", text) and "attempt 3: successful" in text
    # The back-off before each retry: 1.5 s, then twice that, with jitter of ±50%.
    waits = [float(n) / (1000 if unit == "ms" else 1) for n, unit in re.findall(r"after waiting ([\d.]+) (ms|s)", text)]
    assert len(waits) == 2 and waits[0] > 0.7 and waits[1] > 1.4, text
    labels = [label for _, _, label in page.evaluate("window.__loom") if label]
    assert "Waiting to retry" in labels and labels[-1] == "Successful", labels
    shot(page, "demo-5-flaky-done")
