(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) { return; }
  var types = JSON.parse(live.getAttribute("data-types"));
  var terminal = JSON.parse(live.getAttribute("data-terminal"));
  var source = new EventSource(live.getAttribute("data-events"));

  function setText(id, value) {
    var el = document.getElementById(id);
    if (el && value !== undefined && value !== null && value !== "") { el.textContent = String(value); }
  }
  function setWidth(el, percent) {
    if (el) { el.style.width = Math.max(0, Math.min(100, Number(percent) || 0)) + "%"; }
  }
  function show(s) {
    var badge = document.getElementById("status-badge");
    if (badge && s.status) {
      badge.textContent = s.status;
      badge.className = "badge badge-" + String(s.status).toLowerCase();
    }
    var p = s.progress || {};
    var ex = s.execution || {};
    setText("overall-percent", (p.percentage || 0) + " %");
    setWidth(document.getElementById("overall-bar"), p.percentage);
    setText("current-phase", p.currentPhase || "—");
    setText("elapsed", p.elapsedTime);
    setText("remaining", p.estimatedRemaining || "—");
    setText("records-processed", Number(ex.processedRecords || 0).toLocaleString("en-US"));
    setText("records-total", Number(ex.totalRecords || 0).toLocaleString("en-US"));
    (s.phases || []).forEach(function (ph, i) {
      var row = document.getElementById("phase-" + i);
      if (!row) { return; }
      var status = String(ph.status || "Pending");
      var pct = status === "Completed" ? 100 : (ph.progress || 0);
      row.className = "phase " + status.toLowerCase();
      setWidth(row.querySelector(".fill"), pct);
      var detail = status === "Running" ? "Running · " + pct + " %" :
        (status === "Completed" && ph.duration ? "Completed · " + ph.duration : status);
      row.querySelector(".phase-status").textContent = detail;
      row.querySelector(".phase-activity").textContent = status === "Running" ? (ph.currentActivity || "") : "";
      if (status === "Running" && ph.currentActivity) { setText("current-activity", ph.currentActivity); }
    });
  }
  types.forEach(function (type) {
    source.addEventListener(type, function (event) {
      var body = JSON.parse(event.data);
      if (body && body.data) { show(body.data); }
      if (terminal.indexOf(type) >= 0) {
        // the finished page (figures, map, charts) is drawn by the server
        source.close();
        window.location.reload();
      }
    });
  });
})();
