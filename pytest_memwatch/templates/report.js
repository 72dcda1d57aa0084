/* Sorting and filtering for the memwatch report and history pages. No dependencies. */
(function () {
  "use strict";
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-nodeid]"));
  var filter = document.getElementById("filter");
  var status = document.getElementById("status-filter");
  var shown = document.getElementById("shown");

  function applyFilter() {
    var query = filter ? filter.value.trim().toLowerCase() : "";
    var wanted = status ? status.value : "all";
    var count = 0;
    items.forEach(function (item) {
      var ok = (query === "" || item.getAttribute("data-nodeid").toLowerCase().indexOf(query) !== -1) &&
        (wanted === "all" || item.getAttribute("data-status") === wanted);
      item.hidden = !ok;
      if (ok) { count += 1; }
    });
    if (shown) { shown.textContent = count + " of " + items.length + " tests"; }
  }
  if (filter) { filter.addEventListener("input", applyFilter); }
  if (status) { status.addEventListener("change", applyFilter); }

  var table = document.getElementById("tests");
  if (table) {
    var body = table.tBodies[0];
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    headers.forEach(function (th, column) {
      var button = th.querySelector("button");
      if (!button) { return; }
      button.addEventListener("click", function () {
        var numeric = th.getAttribute("data-type") === "num";
        var current = th.getAttribute("aria-sort");
        // Numbers start largest first (the biggest growth is what one looks for).
        var dir = current ? (current === "ascending" ? -1 : 1) : (numeric ? -1 : 1);
        headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = a.cells[column].getAttribute("data-v");
          var y = b.cells[column].getAttribute("data-v");
          // Missing values sort last in both directions.
          if (x === null || x === "") { return (y === null || y === "") ? 0 : 1; }
          if (y === null || y === "") { return -1; }
          if (numeric) { return dir * (parseFloat(x) - parseFloat(y)); }
          return dir * x.localeCompare(y);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  }

  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  openTarget();

  var download = document.getElementById("download");
  var data = document.getElementById("memwatch-data");
  if (download && data) {
    download.addEventListener("click", function () {
      var blob = new Blob([data.textContent], { type: "application/json" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "memwatch-results.json";
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  }
  applyFilter();
})();
