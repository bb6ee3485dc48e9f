"""Steps the browser tests share: start a demo task, sign in, watch what a task page shows."""

from __future__ import annotations

from urllib.parse import quote

from tests.browser.conftest import PASSWORD, USERNAME

# Installed in every page of a context: records what the task page's header, bar and attempts
# said at load and after every live patch (kept across reloads in sessionStorage), and marks the
# window so a test can tell a live patch from a reload.
RECORD_TASK_PAGE = """
(() => {
  const key = "loomStates";
  const states = () => JSON.parse(sessionStorage.getItem(key) || "[]");
  function record() {
    const header = document.querySelector("[data-task-status]");
    const bar = document.querySelector(".loom-progress [data-loom-field=status]");
    if (!header || !bar) { return; }
    const state = [header.textContent.trim(), bar.textContent.trim(),
                   document.querySelector(".loom-progress [data-loom-field=percent]").textContent.trim(),
                   document.querySelector(".loom-progress").className];
    const all = states();
    if (JSON.stringify(all[all.length - 1]) !== JSON.stringify(state)) {
      all.push(state);
      sessionStorage.setItem(key, JSON.stringify(all));
    }
  }
  document.addEventListener("DOMContentLoaded", record);
  document.addEventListener("loom:patched", record);
})();
"""


def login(page, base: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={quote(next_path)}")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def start_demo_task(page, base: str, button: str) -> str:
    """Press a button on the demo page; return the id of the task it enqueued."""
    if not page.url.startswith(base + "/") or "/loom/" in page.url or "/admin/" in page.url:
        page.goto(base + "/")
    before = page.locator(".demo-task").count()
    page.click(button)
    page.wait_for_function(f"document.querySelectorAll('.demo-task').length > {before}")
    return page.locator(".demo-task").first.get_attribute("data-task")


def mark_window(page) -> None:
    """Set a flag that only a reload would clear."""
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page) -> bool:
    return page.evaluate("window.__notReloaded === true")


def states(page) -> list[list[str]]:
    """What the task page showed, in order: [header, bar status, bar percent, bar classes]."""
    return page.evaluate("JSON.parse(sessionStorage.getItem('loomStates') || '[]')")


def assert_header_and_bar_agree(shown: list[list[str]]) -> None:
    for header, bar, percent, classes in shown:
        assert header.lower() == bar, f"header {header!r} next to a bar saying {bar!r}: {shown}"
        if header in ("Queued to retry", "Waiting to retry", "Ready", "Scheduled"):
            assert percent == "" and "failed" not in classes, f"{header} with an old attempt's bar: {shown}"
