/* loom dashboard: refreshes live regions, confirms destructive actions, selects all on a page.
 * Everything works without it; it only saves clicks. */
(function () {
  "use strict";
  var body = document.body;
  var seconds = parseInt(body.getAttribute("data-loom-refresh") || "0", 10);

  function refresh() {
    if (document.hidden) { return; }
    var region = document.querySelector("[data-loom-region]");
    if (!region) { if (!document.querySelector(".loom-progress")) { location.reload(); } return; }
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var next = new DOMParser().parseFromString(html, "text/html").querySelector("[data-loom-region]");
        if (next) { region.innerHTML = next.innerHTML; }
      })
      .catch(function () {});
  }
  if (seconds > 0) { setInterval(refresh, seconds * 1000); }

  document.addEventListener("submit", function (e) {
    var form = e.target;
    var button = e.submitter;
    var message = (button && button.getAttribute("data-confirm")) || form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { e.preventDefault(); }
  });
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el.hasAttribute("data-select-all")) {
      Array.prototype.forEach.call(el.form.querySelectorAll('input[name="ids"]'), function (box) { box.checked = el.checked; });
    }
    if (el.hasAttribute("data-autosubmit")) { el.form.submit(); }
  });
  // A task page that is not final reloads once its live bar reports the end.
  document.addEventListener("loom:final", function () {
    if (document.querySelector("[data-task-status]")) { setTimeout(function () { location.reload(); }, 600); }
  });
})();
