/* loom dashboard: keeps the page's live region current, confirms destructive actions, selects all.
 *
 * The region ([data-loom-live]) follows its server-sent event stream (loom.dashboard.live): each
 * "region" event carries the region's new HTML, and patch() changes only the nodes that differ,
 * so nothing flickers, ticked boxes stay ticked and an open traceback stays open. The browser
 * reconnects a dropped stream by itself and sends the last event id, so the server sends the
 * region again only if it changed while the page was away; a stream that cannot be reopened
 * (say, the session expired) is retried every RETRY_MS. Without EventSource the page refetches
 * itself every FALLBACK_MS instead. Everything works without this script; it only saves clicks.
 */
(function () {
  "use strict";
  var RETRY_MS = 5000;
  var FALLBACK_MS = 5000;
  // Attributes that belong to the person looking at the page, not to the server.
  var KEEP = { open: 1, checked: 1, value: 1 };

  function keyOf(node) {
    return node.nodeType === 1 ? node.getAttribute("data-key") : null;
  }

  function same(a, b) {
    return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
  }

  function patchAttributes(from, to) {
    var i, name;
    for (i = from.attributes.length - 1; i >= 0; i--) {
      name = from.attributes[i].name;
      if (!KEEP[name] && !to.hasAttribute(name)) { from.removeAttribute(name); }
    }
    for (i = 0; i < to.attributes.length; i++) {
      name = to.attributes[i].name;
      if (!KEEP[name] && from.getAttribute(name) !== to.attributes[i].value) {
        from.setAttribute(name, to.attributes[i].value);
      }
    }
    if (from.nodeName === "INPUT" && from.type === "hidden" && from.value !== to.value) { from.value = to.value; }
  }

  function patchNode(from, to) {
    if (from.nodeType !== 1) {
      if (from.nodeValue !== to.nodeValue) { from.nodeValue = to.nodeValue; }
      return;
    }
    patchAttributes(from, to);
    if (from === document.activeElement && /^(INPUT|TEXTAREA|SELECT)$/.test(from.nodeName)) { return; }
    patchChildren(from, to);
  }

  function patchChildren(from, to) {
    var a = from.firstChild, b = to.firstChild, next, match, key;
    while (b) {
      next = b.nextSibling;
      if (a && same(a, b)) {
        patchNode(a, b);
        a = a.nextSibling;
      } else {
        key = keyOf(b);
        match = null;
        if (key) {
          for (var c = a; c; c = c.nextSibling) { if (keyOf(c) === key && same(c, b)) { match = c; break; } }
        }
        if (match) {
          from.insertBefore(match, a);
          patchNode(match, b);
        } else {
          from.insertBefore(b, a);  // moves b out of "to": next was read before
        }
      }
      b = next;
    }
    while (a) { next = a.nextSibling; from.removeChild(a); a = next; }
  }

  function patch(region, html) {
    var fresh = document.createElement(region.nodeName);
    fresh.innerHTML = html;
    patchChildren(region, fresh);
    region.dispatchEvent(new CustomEvent("loom:patched", { bubbles: true }));
  }

  function follow(region) {
    var url = region.getAttribute("data-loom-live");
    var source = new EventSource(url);
    region.setAttribute("data-loom-stream", "connecting");
    source.onopen = function () { region.setAttribute("data-loom-stream", "open"); };
    source.addEventListener("region", function (e) {
      patch(region, JSON.parse(e.data).html);
      region.setAttribute("data-loom-version", e.lastEventId);
    });
    source.addEventListener("gone", function () { source.close(); location.reload(); });
    source.onerror = function () {
      region.setAttribute("data-loom-stream", "lost");
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (an HTTP error); try later.
      if (source.readyState === EventSource.CLOSED) { setTimeout(function () { follow(region); }, RETRY_MS); }
    };
    region._loomSource = source;
  }

  function refetch(region) {
    if (document.hidden) { return; }
    fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        var next = html && new DOMParser().parseFromString(html, "text/html").querySelector("[data-loom-region]");
        if (next) { patch(region, next.innerHTML); }
      })
      .catch(function () {});
  }

  var region = document.querySelector("[data-loom-live]");
  if (region && window.EventSource) {
    follow(region);
  } else if (region) {
    setInterval(function () { refetch(region); }, FALLBACK_MS);
  }
  window.LoomDashboard = { patch: patch };

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
})();
