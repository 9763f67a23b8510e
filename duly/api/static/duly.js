// duly's pages: live countdowns, local times, and alerts that arrive without a reload.
// No framework and no network but this site; markup always comes from the server's
// autoescaping templates, never from strings built here.
(function () {
  "use strict";

  function span(seconds) {
    var s = Math.floor(Math.abs(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (d) return d + "d " + h + "h " + two(m) + "m";
    if (h) return h + "h " + two(m) + "m " + two(r) + "s";
    if (m) return m + "m " + two(r) + "s";
    return r + "s";
  }

  function tickCountdowns() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var due = Date.parse(el.dataset.due), opened = Date.parse(el.dataset.opened);
      if (isNaN(due)) return;
      var left = (due - now) / 1000, window = (due - opened) / 1000;
      var state = left < 0 ? "overdue" : (window > 0 && left < window * 0.25 ? "soon" : "ok");
      el.classList.remove("state-ok", "state-soon", "state-overdue");
      el.classList.add("state-" + state);
      el.querySelector(".countdown-label").textContent = left < 0 ? "overdue by" : "due in";
      el.querySelector(".countdown-value").textContent = span(left);
      var card = el.closest(".task");
      if (card) {
        card.classList.remove("urgency-ok", "urgency-soon", "urgency-overdue");
        card.classList.add("urgency-" + state);
      }
    });
  }

  function ago(seconds) {
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return null;
  }

  // Times are written by the server in the process's (or the reader's) zone, labelled;
  // recent ones also read as "5 min ago", with the server's text kept as the tooltip.
  function localTimes(root) {
    (root || document).querySelectorAll("time[data-ago]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      if (!el.dataset.text) el.dataset.text = el.textContent;
      var relative = ago((Date.now() - at.getTime()) / 1000);
      el.textContent = relative || el.dataset.text;
      el.title = el.dataset.text;
    });
  }

  function liveAlerts() {
    var list = document.getElementById("alert-list");
    if (!list || !list.dataset.live) return;
    var url = list.dataset.live, every = parseInt(list.dataset.interval, 10) || 2000;
    var known = new Set(Array.prototype.map.call(list.querySelectorAll("[data-alert]"),
      function (el) { return el.dataset.alert; }));
    var status = document.getElementById("live-status");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.redirected || response.status === 401) { window.location.reload(); return null; }
          if (!response.ok) throw new Error(response.status);
          return response.json();
        })
        .then(function (data) {
          if (!data) return;
          if (status) { status.classList.remove("stale"); status.textContent = "live"; }
          var ids = data.ids.map(String);
          var changed = ids.length !== known.size || ids.some(function (id) { return !known.has(id); });
          if (changed) {
            list.innerHTML = data.html;  // rendered by the server's autoescaping template
            list.querySelectorAll("[data-alert]").forEach(function (el) {
              if (!known.has(el.dataset.alert)) el.classList.add("is-new");
            });
            known = new Set(ids);
            localTimes(list);
          }
          var total = document.getElementById("alert-total");
          if (total) total.textContent = data.total;
          var empty = document.getElementById("alerts-empty");
          if (empty) empty.classList.toggle("hidden", ids.length > 0);
          var badge = document.getElementById("nav-alert-count");
          if (badge) { badge.textContent = data.open; badge.classList.toggle("zero", !data.open); }
        })
        .catch(function () {
          if (status) { status.classList.add("stale"); status.textContent = "reconnecting"; }
        })
        .finally(function () { setTimeout(poll, every); });
    }
    setTimeout(poll, every);
  }

  localTimes();
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  setInterval(function () { localTimes(); }, 30000);
  liveAlerts();
})();
