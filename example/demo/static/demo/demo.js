/* Demo page: start tasks without leaving the page, add a live bar for each, show its result
 * (the return value or the error, and every attempt when there were several). */
(function () {
  "use strict";
  var list = document.getElementById("tasks");
  var resultUrl = list.getAttribute("data-result-url");

  function csrf(form) { return form.querySelector("input[name=csrfmiddlewaretoken]").value; }

  function seconds(value) { return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(1) + " s"; }

  // Each attempt on its own line: how it ended, the error (class and message), the wait before it.
  function attemptLines(attempts) {
    if (attempts.length < 2) { return []; }
    return attempts.map(function (a) {
      var line = "attempt " + a.number + ": " + a.outcome.toLowerCase();
      if (a.error) { line += " (" + a.error + ")"; }
      if (a.waited !== null) { line += ", after waiting " + seconds(a.waited); }
      return line;
    });
  }

  function showResult(box, id) {
    fetch(resultUrl.replace("00000000-0000-0000-0000-000000000000", id), { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var out = box.querySelector(".demo-result");
        if (!data.final) { setTimeout(function () { showResult(box, id); }, 500); return; }  // being written
        var lines = data.status === "SUCCESSFUL" ? ["→ " + JSON.stringify(data.return_value)] : ["→ " + data.error];
        out.textContent = lines.concat(attemptLines(data.attempts)).join("\n");
        if (data.status !== "SUCCESSFUL") { out.className += " demo-result--bad"; }
      });
  }

  function add(info) {
    var empty = document.getElementById("no-tasks");
    if (empty) { empty.remove(); }
    var box = document.createElement("div");
    box.className = "demo-task";
    box.setAttribute("data-task", info.id);
    box.appendChild(Loom.create(info));
    var out = document.createElement("div");
    out.className = "demo-result";
    box.appendChild(out);
    var open = document.createElement("a");
    open.className = "demo-open";
    open.href = info.dashboard_url;
    open.textContent = "open it on the dashboard";
    box.appendChild(open);
    list.insertBefore(box, list.firstChild);
    Loom.watch(box.querySelector(".loom-progress"));
  }

  document.querySelectorAll(".demo-starters form").forEach(function (form) {
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      fetch(form.action, { method: "POST", credentials: "same-origin",
                           headers: { Accept: "application/json", "X-CSRFToken": csrf(form) } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(add)
        .catch(function (err) { alert("Could not start the task: " + err.message); });
    });
  });

  list.addEventListener("loom:final", function (e) {
    var box = e.target.closest(".demo-task");
    if (box && !box.querySelector(".demo-result").textContent) { showResult(box, box.getAttribute("data-task")); }
  });
})();
