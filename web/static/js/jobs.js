/* Progress of a console background job (a DMS import): polls the job's JSON and reloads the page
   when it has ended, so the preview or the result shows. No inline script (CSP). */
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var status = box.getAttribute("data-status");
  if (status !== "queued" && status !== "running") { return; }
  var bar = box.querySelector(".progress > div");
  var label = box.querySelector("[data-testid=progress-text]");
  function poll() {
    fetch(box.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        if (j.total) {
          if (bar) { bar.style.width = Math.min(100, Math.round(100 * j.done / j.total)) + "%"; }
          if (label) { label.textContent = j.done + " / " + j.total; }
        }
        if (j.status === "queued" || j.status === "running") { window.setTimeout(poll, 500); }
        else { window.location.reload(); }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 300);
})();
