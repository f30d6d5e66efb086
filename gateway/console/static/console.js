// Live updates for the console: the page's #live part is fetched again when the server's event stream
// (server-sent events, /console/events) says something it shows has changed, and after a reconnect.
// A hidden tab closes its stream (a browser has only 6 connections per host over HTTP/1.1) and fetches
// again when shown. Fetches happen at most once a second. The swap waits while the operator is typing in
// the live part (a focused or edited field), and happens once the field is left unchanged.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var topics = (live.getAttribute("data-topics") || "").split(" ");
  var only = live.getAttribute("data-id");
  var GAP_MS = 1000;
  var RETRY_MS = 30000;
  var timer = null;
  var busy = false;
  var again = false;
  var deferred = false;
  var last = 0;

  function typing() {
    var active = document.activeElement;
    if (active && live.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName)) return true;
    var fields = live.querySelectorAll("input, textarea");
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === "hidden" || f.type === "submit" || f.type === "button") continue;
      if (f.type === "checkbox" || f.type === "radio") { if (f.checked !== f.defaultChecked) return true; }
      else if (f.value !== f.defaultValue) return true;
    }
    return false;
  }

  function refresh() {
    if (timer !== null) return;
    var wait = Math.max(80, last + GAP_MS - Date.now());
    timer = setTimeout(function () {
      timer = null;
      if (busy) { again = true; return; }
      if (typing()) { deferred = true; document.body.setAttribute("data-deferred", "1"); return; }
      busy = true;
      last = Date.now();
      fetch(live.getAttribute("data-src"), { credentials: "same-origin", headers: { "X-Console-Partial": "1" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          if (typing()) { deferred = true; document.body.setAttribute("data-deferred", "1"); return; }
          var open = [];
          live.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
          live.innerHTML = html;
          var boxes = live.querySelectorAll("details");
          open.forEach(function (i) { if (boxes[i]) boxes[i].open = true; });
          document.body.removeAttribute("data-deferred");
          document.body.setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    }, wait);
  }

  // Leaving a field (unchanged) lets a deferred swap happen.
  live.addEventListener("focusout", function () {
    setTimeout(function () { if (deferred && !typing()) { deferred = false; refresh(); } }, 0);
  });

  var stream = null;
  var connected = false;

  function connect() {
    if (stream !== null) return;
    stream = new EventSource("/console/events");
    stream.addEventListener("open", function () {
      if (connected) refresh(); // changes made while the stream was down (or on another gateway)
      connected = true;
      document.body.setAttribute("data-live", "on");
    });
    stream.addEventListener("error", function () {
      document.body.setAttribute("data-live", "off");
      if (stream !== null && stream.readyState === EventSource.CLOSED) {
        // Refused (503: too many streams) or no longer an event stream (the session ended: the fetch
        // then finds the sign-in page and reloads). The browser gives up; try again later.
        disconnect();
        document.body.setAttribute("data-live", "off");
        refresh();
        setTimeout(function () { if (document.visibilityState !== "hidden") connect(); }, RETRY_MS);
      }
    });
    topics.forEach(function (topic) {
      if (!topic) return;
      stream.addEventListener(topic, function (event) {
        if (only && topic === "alert") {
          try { if (String(JSON.parse(event.data).id) !== only) return; } catch (e) { return; }
        }
        refresh();
      });
    });
    stream.addEventListener("resync", refresh);
  }

  function disconnect() {
    if (stream === null) return;
    stream.close();
    stream = null;
    document.body.setAttribute("data-live", "paused");
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") { disconnect(); } else { connect(); }
  });
  if (document.visibilityState !== "hidden") connect();
})();
