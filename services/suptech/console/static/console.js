// Live alert list: server-sent events carry each alert as a rendered row with its version.
// The stream starts at the cursor the rendered list was read at (data-cursor), so nothing older
// is replayed; the browser reconnects on its own with Last-Event-ID: no gap, no repeat.
(function () {
  "use strict";
  var table = document.getElementById("alerts");
  if (!table || !window.EventSource) { return; }
  var body = table.tBodies[0];
  var status = document.getElementById("live-status");
  var live = table.getAttribute("data-live");
  var source = new EventSource("/events?cursor=" +
    encodeURIComponent(table.getAttribute("data-cursor") || "") + (live ? "&" + live : ""));

  function recount() {
    var counts = document.getElementById("counts");
    if (!counts) { return; }
    var total = 0;
    Array.prototype.forEach.call(counts.tBodies[0].rows, function (row) {
      var fam = row.getAttribute("data-family"), sum = 0;
      Array.prototype.forEach.call(row.querySelectorAll("td[data-g]"), function (cell) {
        var n = body.querySelectorAll(
          'tr[data-family="' + fam + '"][data-grade="' + cell.getAttribute("data-g") + '"]').length;
        cell.textContent = n; sum += n;
      });
      row.querySelector("td.sum").textContent = sum;
    });
    total = body.rows.length;
    document.getElementById("total").textContent = total;
  }

  source.addEventListener("open", function () {
    status.textContent = status.getAttribute("data-live");
    status.className = "live";
  });
  source.addEventListener("error", function () {
    status.textContent = status.getAttribute("data-reconnecting");
    status.className = "reconnecting";
  });
  source.addEventListener("failure", function (e) {
    status.textContent = JSON.parse(e.data).code;
    status.className = "reconnecting";
  });
  source.addEventListener("alert", function (e) {
    var msg = JSON.parse(e.data);
    var old = document.getElementById("alert-" + msg.id);
    if (old && Number(old.getAttribute("data-version")) >= msg.version) { return; }
    if (!msg.match) { if (old) { old.remove(); recount(); } return; }
    var tmp = document.createElement("tbody");
    tmp.innerHTML = msg.html;
    var row = tmp.rows[0];
    if (old) { body.replaceChild(row, old); } else { body.insertBefore(row, body.firstChild); }
    row.classList.add("fresh");
    var known = document.querySelector('#counts tr[data-family="' + row.getAttribute("data-family") + '"]');
    if (!known) { status.setAttribute("data-stale", "1"); }
    recount();
  });

  // Keyboard: j/k move between rows, Enter opens the focused alert.
  var current = -1;
  document.addEventListener("keydown", function (e) {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT" || e.target.tagName === "TEXTAREA") { return; }
    if (e.key !== "j" && e.key !== "k") { return; }
    var rows = body.rows;
    if (!rows.length) { return; }
    current = Math.max(0, Math.min(rows.length - 1, current + (e.key === "j" ? 1 : -1)));
    var link = rows[current].querySelector("a");
    if (link) { link.focus(); }
  });
})();
