// Live updates for the console: the page's #live part is fetched again when the server's event stream
// (server-sent events, /console/events) says something it shows has changed, and after a reconnect.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var topics = (live.getAttribute("data-topics") || "").split(" ");
  var only = live.getAttribute("data-id");
  var timer = null;
  var busy = false;
  var again = false;

  function refresh() {
    if (timer !== null) return;
    timer = setTimeout(function () {
      timer = null;
      if (busy) { again = true; return; }
      busy = true;
      fetch(live.getAttribute("data-src"), { credentials: "same-origin", headers: { "X-Console-Partial": "1" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html !== null) {
            var open = [];
            live.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
            live.innerHTML = html;
            var boxes = live.querySelectorAll("details");
            open.forEach(function (i) { if (boxes[i]) boxes[i].open = true; });
            document.body.setAttribute("data-refreshed", String(Date.now()));
          }
        })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; refresh(); } });
    }, 80);
  }

  var stream = new EventSource("/console/events");
  var connected = false;
  stream.addEventListener("open", function () {
    if (connected) refresh(); // changes made while the stream was down (or on another gateway)
    connected = true;
    document.body.setAttribute("data-live", "on");
  });
  stream.addEventListener("error", function () { document.body.setAttribute("data-live", "off"); });
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
})();
