/* Sorting and filtering for the memwatch report and history pages. No dependencies.

   The report's table comes from the JSON block #memwatch-data ("rows"), one
   array per test, and only the rows near the viewport are in the document:
   a 50 000-test report filters and sorts arrays, not elements. Every value
   reaches the page through textContent (never as HTML). Pages without that
   block (the history page) filter their [data-nodeid] elements in place. */
(function () {
  "use strict";
  var filter = document.getElementById("filter");
  var status = document.getElementById("status-filter");
  var shown = document.getElementById("shown");
  var dataBlock = document.getElementById("memwatch-data");
  var rowsBlock = document.getElementById("memwatch-rows");
  var table = document.getElementById("tests");
  // Drawing every row costs a layout of all of them at each keystroke of the
  // filter: about 0.1 s for 300 rows, a second for 1000.
  var ALL_ROWS = 300;

  function openTarget() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    var target = id ? document.getElementById(id) : null;
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);

  var download = document.getElementById("download");
  if (download && dataBlock) {
    download.addEventListener("click", function () {
      var blob = new Blob([dataBlock.textContent], { type: "application/json" });
      var link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = "memwatch-results.json";
      document.body.appendChild(link);
      link.click();
      link.remove();
    });
  }

  if (!table) {
    staticPage();
  } else {
    // Every report carries its rows as data. Up to a few hundred tests all are
    // drawn, so rows wrap to fit a narrow screen; more are drawn on demand,
    // only the rows near the viewport, each as high as the others.
    var rows = JSON.parse(rowsBlock.textContent);
    tableFromRows(rows, rows.length > ALL_ROWS);
  }
  openTarget();
  window.memwatchReady = performance.now();

  /* The history page: show or hide the elements themselves. */
  function staticPage() {
    var items = Array.prototype.slice.call(document.querySelectorAll("[data-nodeid]"));
    function applyFilter() {
      var query = filter ? filter.value.trim().toLowerCase() : "";
      var count = 0;
      items.forEach(function (item) {
        var ok = query === "" || item.getAttribute("data-nodeid").toLowerCase().indexOf(query) !== -1;
        item.hidden = !ok;
        if (ok) { count += 1; }
      });
      if (shown) { shown.textContent = count + " of " + items.length + " tests"; }
    }
    if (filter) { filter.addEventListener("input", applyFilter); }
    applyFilter();
  }

  /* The report's table. A row (html_view._row): [verdict order, node id,
     outcome, details anchor (0: none), growth, text, rss, text, malloc, text,
     blocks, text, peak, text, left open, text, runs, seconds, text,
     (baseline delta, text, badge)]. */
  function tableFromRows(rows, virtual) {
    var ID = 1, OUTCOME = 2, ANCHOR = 3, RUNS = 16, SECONDS = 17, DELTA = 19;
    // The row field each header sorts on, in header order.
    var SORT_FIELD = [0, ID, OUTCOME, 4, 6, 8, 10, 12, 14, RUNS, SECONDS, DELTA];
    var NUMERIC_TEXT = [[4, 5], [6, 7], [8, 9], [10, 11], [12, 13], [14, 15]];
    var STATUS = ["fail", "pass", "none"];
    var BADGE = { fail: "FAIL", pass: "ok", none: "-", "new": "new", regressed: "regressed" };
    var BUFFER = 30;
    var body = table.tBodies[0];
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var withChange = headers.length > 11;
    var labels = headers.map(function (th) { return th.textContent.trim(); });
    var lower = null;
    var view = rows.slice();
    var rowHeight = 0;
    var drawn = [-1, -1];
    var pending = false;

    // First failed verdicts, then most growth (as the page's static table).
    view.sort(function (a, b) {
      return a[0] - b[0] || (b[4] || 0) - (a[4] || 0);
    });
    var defaultOrder = view.slice();
    var note = document.getElementById("static-note");
    if (note) { note.hidden = true; }
    if (virtual) { table.classList.add("mw-virtual"); }
    // Each test's details fold, found by node id, hidden with its row.
    var folds = Array.prototype.slice.call(document.querySelectorAll("details.mw-test"));

    function badge(kind) {
      var span = document.createElement("span");
      span.className = "mw-badge mw-" + kind;
      span.textContent = BADGE[kind] || kind;
      return span;
    }

    function cell(tr, value, text) {
      var td = document.createElement("td");
      if (value !== null && value !== undefined) { td.setAttribute("data-v", String(value)); }
      if (text) { td.textContent = text; }
      td.setAttribute("data-label", labels[tr.cells.length]);
      tr.appendChild(td);
      return td;
    }

    function makeRow(r) {
      var tr = document.createElement("tr");
      var st = STATUS[r[0]];
      tr.setAttribute("data-nodeid", r[ID]);
      tr.setAttribute("data-status", st);
      cell(tr, r[0], "").appendChild(badge(st));
      var id = cell(tr, r[ID], "");
      id.className = "mw-id";
      id.title = r[ID];
      if (r[ANCHOR]) {
        var a = document.createElement("a");
        a.href = "#t" + r[ANCHOR];
        a.textContent = r[ID];
        id.appendChild(a);
      } else {
        id.textContent = r[ID];
      }
      cell(tr, r[OUTCOME], r[OUTCOME]);
      NUMERIC_TEXT.forEach(function (pair) { cell(tr, r[pair[0]], r[pair[1]]); });
      cell(tr, r[RUNS], String(r[RUNS]));
      cell(tr, r[SECONDS], r[SECONDS + 1]);
      if (withChange) {
        var td = cell(tr, r[DELTA], "");
        if (r[DELTA + 2]) {
          td.appendChild(badge(r[DELTA + 2]));
          td.appendChild(document.createTextNode(" "));
        }
        td.appendChild(document.createTextNode(r[DELTA + 1] || ""));
      }
      return tr;
    }

    function spacer() {
      var tr = document.createElement("tr");
      tr.className = "mw-spacer";
      tr.setAttribute("aria-hidden", "true");
      var td = document.createElement("td");
      td.colSpan = headers.length;
      tr.appendChild(td);
      return tr;
    }
    var top = spacer(), bottom = spacer();

    function setSpace(tr, height) {
      tr.hidden = height <= 0;
      tr.firstChild.style.height = height + "px";
    }

    // Only the rows near the viewport are in the document.
    function draw(force) {
      pending = false;
      var first = 0, last = view.length;
      if (!virtual) {
        if (!force) { return; }
      } else if (rowHeight > 0) {
        var offset = Math.max(0, -body.getBoundingClientRect().top);
        var count = Math.ceil(window.innerHeight / rowHeight) + 2 * BUFFER;
        // Past the table's end (the details below it), its last rows stay drawn.
        first = Math.max(0, Math.min(Math.floor(offset / rowHeight) - BUFFER, view.length - count));
        last = Math.min(view.length, first + count);
      } else {
        last = Math.min(view.length, 2 * BUFFER + 40);
      }
      if (!force && first === drawn[0] && last === drawn[1]) { return; }
      drawn = [first, last];
      var fragment = document.createDocumentFragment();
      if (virtual) { fragment.appendChild(top); }
      for (var i = first; i < last; i += 1) { fragment.appendChild(makeRow(view[i])); }
      if (virtual) { fragment.appendChild(bottom); }
      body.textContent = "";
      body.appendChild(fragment);
      if (!virtual) { return; }
      if (!rowHeight && last > first) {
        // Rows are one line high in this table (see .mw-virtual): measured once.
        rowHeight = body.rows[1].getBoundingClientRect().height || 24;
        drawn = [-1, -1];
        draw(true);
        return;
      }
      setSpace(top, first * rowHeight);
      setSpace(bottom, (view.length - last) * rowHeight);
    }

    function schedule() {
      if (!pending) {
        pending = true;
        window.requestAnimationFrame(function () { draw(false); });
      }
    }
    if (virtual) {
      window.addEventListener("scroll", schedule, { passive: true });
      window.addEventListener("resize", function () { rowHeight = 0; drawn = [-1, -1]; schedule(); });
    }

    // Sorted when a header is clicked, filtered at every keystroke.
    var sorted = defaultOrder;
    function compare(field, dir, numeric) {
      return function (a, b) {
        var x = a[field], y = b[field];
        // Missing values sort last in both directions.
        if (x === null || x === "") { return (y === null || y === "") ? 0 : 1; }
        if (y === null || y === "") { return -1; }
        if (numeric) { return dir * (x - y); }
        return dir * (x < y ? -1 : (x > y ? 1 : 0));
      };
    }

    function applyFilter() {
      var query = filter ? filter.value.trim().toLowerCase() : "";
      var wanted = status ? status.value : "all";
      var source = sorted;
      if (query !== "" && lower === null) {
        lower = new Map();
        rows.forEach(function (r) { lower.set(r, r[ID].toLowerCase()); });
      }
      var want = wanted === "all" ? -1 : STATUS.indexOf(wanted);
      view = source.filter(function (r) {
        return (query === "" || lower.get(r).indexOf(query) !== -1) && (want < 0 || r[0] === want);
      });
      if (shown) { shown.textContent = view.length + " of " + rows.length + " tests"; }
      if (folds.length) {
        var visible = new Set(view.map(function (r) { return r[ID]; }));
        folds.forEach(function (d) { d.hidden = !visible.has(d.getAttribute("data-nodeid")); });
      }
      draw(true);
    }
    if (filter) { filter.addEventListener("input", applyFilter); }
    if (status) { status.addEventListener("change", applyFilter); }

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
        // Sorted from the default order: equal values keep it.
        sorted = defaultOrder.slice().sort(compare(SORT_FIELD[column], dir, numeric));
        applyFilter();
      });
    });
    applyFilter();
  }
})();
