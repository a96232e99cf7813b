/* The console's behaviour: charts, the call player synchronised with its transcript, the agent's
   dial button and live transcript, the wallboard. Plain JavaScript, no build step; page data comes
   from <script type="application/json"> blocks (the Content-Security-Policy forbids inline script). */
(function () {
  "use strict";

  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  function text(el, value) { if (el) { el.textContent = value; } }
  function clock(seconds) {
    seconds = Math.max(0, Math.round(seconds || 0));
    return Math.floor(seconds / 60) + ":" + String(seconds % 60).padStart(2, "0");
  }

  function post(url, fields) {
    var body = new URLSearchParams(fields || {});
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (!r.ok) { throw new Error(j.message || j.error || ("HTTP " + r.status)); }
        return j;
      });
    });
  }

  /* -- confirmations -------------------------------------------------------------------------- */
  document.addEventListener("click", function (e) {
    var el = e.target.closest("[data-confirm]");
    if (el && !window.confirm(el.getAttribute("data-confirm"))) { e.preventDefault(); }
  });

  /* -- charts --------------------------------------------------------------------------------- */
  var charts = [];
  var FORMATTERS = {
    percent: function (v) { return v === null || v === undefined ? "–" : v + "%"; }
  };
  function fixFunctions(option) {
    if (option && option.tooltip && typeof option.tooltip.valueFormatter === "string") {
      option.tooltip.valueFormatter = FORMATTERS[option.tooltip.valueFormatter];
    }
    return option;
  }
  function render(el, option) {
    if (!window.echarts) { return null; }
    var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(fixFunctions(option), true);
    el.setAttribute("data-rendered", "1");
    if (charts.indexOf(chart) < 0) { charts.push(chart); }
    return chart;
  }
  function initCharts() {
    $all("[data-chart]").forEach(function (el) {
      var option = data(el.getAttribute("data-chart"));
      if (option) { render(el, option); }
    });
    $all("[data-chart-url]").forEach(function (el) {
      // Computed on demand (a cold customer-base trend takes seconds): say so meanwhile.
      var wait = document.createElement("div");
      wait.className = "empty";
      wait.textContent = el.getAttribute("data-loading-text") || "…";
      el.appendChild(wait);
      fetch(el.getAttribute("data-chart-url"), { credentials: "same-origin" })
        .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
        .then(function (j) { el.removeChild(wait); render(el, j.chart); })
        .catch(function () { wait.textContent = "–"; });
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }

  /* -- call page: recording player and synchronised transcript -------------------------------- */
  function initPlayer() {
    var player = document.getElementById("player");
    var turns = $all("#transcript .turn");
    if (!turns.length) { return; }
    turns.forEach(function (turn) {
      var bubble = $(".bubble", turn);
      function jump() {
        if (!player) { return; }
        player.currentTime = parseFloat(turn.getAttribute("data-start")) || 0;
        var p = player.play();
        if (p && p.catch) { p.catch(function () {}); }
        mark(turn);
      }
      bubble.addEventListener("click", jump);
      bubble.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); jump(); } });
    });
    var current = null;
    function mark(turn) {
      if (turn === current) { return; }
      if (current) { current.classList.remove("current"); }
      current = turn;
      if (turn) {
        turn.classList.add("current");
        var box = document.getElementById("transcript");
        var top = turn.offsetTop - box.offsetTop;
        if (top < box.scrollTop || top > box.scrollTop + box.clientHeight - 60) { box.scrollTop = top - 40; }
      }
    }
    if (player) {
      player.addEventListener("timeupdate", function () {
        var t = player.currentTime, found = null;
        turns.forEach(function (turn) {
          if (parseFloat(turn.getAttribute("data-start")) <= t + 0.05) { found = turn; }
        });
        if (found && t > parseFloat(found.getAttribute("data-end")) + 1.5) { found = null; }
        mark(found);
      });
    }
  }

  /* -- live transcript (agent workspace) ------------------------------------------------------ */
  function liveTranscript(box, url) {
    if (!box || !url || !window.EventSource) { return; }
    box.setAttribute("data-url", url);
    var dot = document.getElementById("live-dot");
    var lines = {};
    var source = new EventSource(url);
    source.addEventListener("open", function () { if (dot) { dot.classList.add("on"); } });
    source.addEventListener("error", function () { if (dot) { dot.classList.remove("on"); } });
    source.addEventListener("transcript", function (e) {
      var line = JSON.parse(e.data);
      var empty = document.getElementById("live-empty");
      if (empty) { empty.remove(); }
      var row = lines[line.seq];
      if (!row) {
        row = document.createElement("div");
        row.className = "turn " + line.speaker;
        row.innerHTML = '<div class="who"></div><div class="meta"><div class="bubble"></div><div class="time"></div></div>';
        lines[line.seq] = row;
        box.appendChild(row);
      }
      row.classList.toggle("partial", !line.is_final);
      text($(".who", row), (window.CC_SPEAKERS || {})[line.speaker] || line.speaker);
      text($(".bubble", row), line.text);  // textContent: what the customer said is never HTML
      text($(".time", row), clock(line.start));
      box.scrollTop = box.scrollHeight;
    });
    source.addEventListener("call_state", function (e) {
      var ev = JSON.parse(e.data);
      if (ev.state === "ended") { if (dot) { dot.classList.remove("on"); } source.close(); }
    });
  }

  function initAgent() {
    var speakers = data("speaker-labels");
    if (speakers) { window.CC_SPEAKERS = speakers; }
    var box = document.getElementById("live-transcript");
    if (box && box.getAttribute("data-url")) { liveTranscript(box, box.getAttribute("data-url")); }
    // Calls the robot hands to this agent open by themselves; the page follows their end.
    var queue = document.querySelector("[data-testid=task-list][data-stream]");
    if (queue && window.EventSource) {
      var handed = new EventSource(queue.getAttribute("data-stream"));
      handed.addEventListener("call_state", function (e) {
        var ev = JSON.parse(e.data);
        if (ev.state === "bridged") {
          var target = window.location.pathname + "?kind=call&id=" + ev.call_id;
          var busy = document.getElementById("disposition-card");
          if (busy && !busy.classList.contains("hidden")) {
            // In the middle of another call: offer it rather than leave the open form.
            var note = document.createElement("a");
            note.className = "flash info";
            note.style.display = "block";
            note.href = target;
            note.textContent = queue.getAttribute("data-handed-text") || target;
            queue.parentNode.insertBefore(note, queue);
            return;
          }
          handed.close();
          window.location.assign(target);
        } else if (ev.state === "ended" && String(ev.call_id) === queue.getAttribute("data-current")) {
          handed.close();
          window.location.reload();
        }
      });
    }
    var button = document.getElementById("dial");
    if (!button) { return; }
    button.addEventListener("click", function () {
      button.disabled = true;
      post(button.getAttribute("data-url"), { kind: button.getAttribute("data-kind"), id: button.getAttribute("data-id") })
        .then(function (j) {
          var phone = document.getElementById("phone-display");
          if (phone) {
            phone.innerHTML = "";
            var a = document.createElement("a");
            a.href = "tel:" + j.dial;
            a.textContent = j.phone;
            phone.appendChild(a);
          }
          var form = document.getElementById("disposition-form");
          form.action = form.getAttribute("data-action-template").replace(/\/0\/disposition$/, "/" + j.call_id + "/disposition");
          document.getElementById("disposition-card").classList.remove("hidden");
          button.remove();
          liveTranscript(box, j.transcript_url);
        })
        .catch(function (err) { button.disabled = false; window.alert(err.message); });
    });
  }

  /* -- wallboard ------------------------------------------------------------------------------ */
  function initWallboard() {
    var root = document.getElementById("wallboard");
    if (!root) { return; }
    var dot = document.getElementById("live-dot");
    function refresh() {
      fetch(root.getAttribute("data-url"), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (b) {
          text(document.getElementById("wb-active"), b.active.length);
          text(document.getElementById("wb-workers"), b.workers.filter(function (w) { return w.alive; }).length);
          var noWorker = document.getElementById("wb-no-worker");
          if (noWorker) { noWorker.hidden = !b.live || b.workers_alive > 0; }
          text(document.getElementById("wb-today"), b.today_total);
          text(document.getElementById("wb-completed"), b.today_completed);
          var body = document.getElementById("wb-calls");
          body.innerHTML = "";
          if (!b.active.length) {
            var empty = document.createElement("tr"), cell = document.createElement("td");
            cell.colSpan = 4;
            cell.className = "muted";
            cell.textContent = body.getAttribute("data-empty");
            empty.appendChild(cell);
            body.appendChild(empty);
          }
          b.active.forEach(function (a) {
            var tr = document.createElement("tr");
            [String(a.call_id), a.customer || "", a.state_label, clock(a.since)].forEach(function (v, i) {
              var td = document.createElement("td");
              td.textContent = v;
              if (i === 3) { td.className = "num"; }
              tr.appendChild(td);
            });
            body.appendChild(tr);
          });
          var chartEl = document.getElementById("wb-chart");
          if (chartEl) { render(chartEl, b.chart); }
        })
        .catch(function () {});
    }
    setInterval(refresh, 15000);
    if (window.EventSource) {
      var pending = null;
      var source = new EventSource(root.getAttribute("data-stream"));
      source.addEventListener("open", function () { if (dot) { dot.classList.add("on"); } });
      source.addEventListener("error", function () { if (dot) { dot.classList.remove("on"); } });
      source.addEventListener("call_state", function () {
        if (pending) { return; }
        pending = setTimeout(function () { pending = null; refresh(); }, 1000);  // coalesce bursts
      });
    }
  }

  /* -- campaign progress ---------------------------------------------------------------------- */
  function initCampaign() {
    var root = document.getElementById("campaign-progress");
    if (!root || !window.EventSource) { return; }
    var campaign = parseInt(root.getAttribute("data-campaign"), 10);
    var dot = document.getElementById("live-dot");
    var pending = null;
    var source = new EventSource("/live/calls");
    source.addEventListener("open", function () { if (dot) { dot.classList.add("on"); } });
    source.addEventListener("error", function () { if (dot) { dot.classList.remove("on"); } });
    source.addEventListener("call_state", function (e) {
      var ev = JSON.parse(e.data);
      if (ev.campaign_id !== campaign || ev.state !== "ended" || pending) { return; }
      pending = setTimeout(function () {
        pending = null;
        fetch(root.getAttribute("data-url"), { credentials: "same-origin" }).then(function (r) { return r.json(); })
          .then(function (p) {
            Object.keys(p.tasks).forEach(function (state) {
              var cell = document.querySelector('[data-state="' + state + '"]');
              text(cell, p.tasks[state]);
            });
          });
      }, 1000);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    initCharts();
    initPlayer();
    initAgent();
    initWallboard();
    initCampaign();
  });
})();
