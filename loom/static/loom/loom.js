/* loom.js: live progress bars for {% loom_progress %} (no dependencies).
 *
 * Each .loom-progress element follows its task's server-sent events (data-loom-events) and,
 * when EventSource is missing or the stream cannot be opened, polls its status URL
 * (data-loom-status) once a second. It stops at a final status and then fires a bubbling
 * "loom:final" event (detail: the last payload); every update fires "loom:update". The status
 * line shows the payload's label ("waiting to retry", "stopping"), the words every loom view uses.
 * Bars added later: Loom.watch(element), or Loom.create({label, events_url, status_url}).
 */
(function () {
  "use strict";
  var FINAL = { SUCCESSFUL: 1, FAILED: 1, CANCELLED: 1 };
  var TYPES = ["snapshot", "enqueued", "started", "progress", "finished", "failed", "cancelled"];
  var POLL_MS = 1000;

  function field(el, name) { return el.querySelector('[data-loom-field="' + name + '"]'); }

  function render(el, p) {
    var status = p.status || "";
    var percent = p.percent;
    var bar = el.querySelector(".loom-progress__bar");
    var track = el.querySelector(".loom-progress__track");
    if (status === "SUCCESSFUL") { percent = 100; }
    el.className = el.className.replace(/\bloom-progress--[a-z]+\b/g, "").trim() +
      " loom-progress--" + status.toLowerCase();
    if (percent !== undefined && percent !== null) {
      bar.style.width = percent + "%";
      track.setAttribute("aria-valuenow", String(percent));
      field(el, "percent").textContent = percent + "%";
    } else if (p.type === "snapshot") {
      // A snapshot is the row itself: no progress means none for this attempt (a retry waiting).
      bar.style.width = "0%";
      track.removeAttribute("aria-valuenow");
      field(el, "percent").textContent = "";
      field(el, "message").textContent = "";
    }
    if (status === "RUNNING" && (percent === undefined || percent === null)) {
      el.className += " loom-progress--indeterminate";
    }
    if (status) { field(el, "status").textContent = (p.label || status).toLowerCase(); }
    if (p.message !== undefined) { field(el, "message").textContent = p.message; }
    el.setAttribute("data-loom-state", status);
    el.dispatchEvent(new CustomEvent("loom:update", { bubbles: true, detail: p }));
    if (FINAL[status]) {
      el.dispatchEvent(new CustomEvent("loom:final", { bubbles: true, detail: p }));
      return true;
    }
    return false;
  }

  function poll(el) {
    var url = el.getAttribute("data-loom-status");
    if (!url) { return; }
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(function (p) { if (!render(el, p)) { setTimeout(function () { poll(el); }, POLL_MS); } })
      .catch(function () { setTimeout(function () { poll(el); }, POLL_MS * 3); });
  }

  function watch(el) {
    if (el._loomWatching) { return; }
    el._loomWatching = true;
    if (FINAL[el.getAttribute("data-loom-state")]) { return; }
    var url = el.getAttribute("data-loom-events");
    if (!url || !window.EventSource || Loom.forcePolling || el.hasAttribute("data-loom-poll")) {
      poll(el);
      return;
    }
    var source = new EventSource(url);
    var done = false;
    TYPES.forEach(function (type) {
      source.addEventListener(type, function (e) {
        if (done) { return; }
        if (render(el, JSON.parse(e.data))) { done = true; source.close(); }
      });
    });
    source.onerror = function () {
      // CONNECTING: the browser reconnects by itself (a WSGI server ends streams now and then).
      if (!done && source.readyState === EventSource.CLOSED) { done = true; poll(el); }
    };
  }

  function create(info) {
    var el = document.createElement("div");
    el.className = "loom-progress loom-progress--ready";
    el.setAttribute("data-loom-events", info.events_url || "");
    el.setAttribute("data-loom-status", info.status_url || "");
    if (info.id) { el.setAttribute("data-loom-task", info.id); }
    el.innerHTML =
      '<div class="loom-progress__head"><span class="loom-progress__label"></span>' +
      '<span class="loom-progress__status" data-loom-field="status">ready</span></div>' +
      '<div class="loom-progress__track" role="progressbar" aria-valuemin="0" aria-valuemax="100">' +
      '<div class="loom-progress__bar" style="width:0%"></div></div>' +
      '<div class="loom-progress__foot"><span class="loom-progress__message" data-loom-field="message"></span>' +
      '<span class="loom-progress__percent" data-loom-field="percent"></span></div>';
    el.querySelector(".loom-progress__label").textContent = info.label || "";
    return el;
  }

  function watchAll(root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(".loom-progress"), watch);
  }

  var Loom = window.Loom = { watch: watch, watchAll: watchAll, create: create, render: render, forcePolling: false };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { watchAll(); });
  } else {
    watchAll();
  }
})();
