// The query page: a CodeMirror SQL editor (completion from the grant-filtered
// catalog), run the selection or the statement at the cursor with Ctrl+Enter,
// cancel, a per-user history, and the result streamed from /api/v1/query as
// Arrow IPC into the virtual grid and, for time series, a chart.

import { EditorView, basicSetup, keymap, Prec, Compartment, sql, PostgreSQL } from "./vendor/codemirror.js";
import { RecordBatchReader } from "./vendor/arrow.js";
import { el, api, query, user, vendorBuilt, vendorMissing, say, ApiError } from "./common.js";
import { Grid } from "./grid.js";
import { Chart, chartable } from "./chart.js";

/** Past this many rows the grid stops reading (download the whole result instead). */
const MAX_ROWS = 5_000_000;
const HISTORY_KEY = `pond-console-history:${user}`;
const HISTORY_MAX = 100;
const fmt = (n) => n.toLocaleString("en-US");
const rowsText = (n) => `${fmt(n)} ${n === 1 ? "row" : "rows"}`;

/** The statements of `text` as [start, end) ranges, split at top-level semicolons. */
export function statementRanges(text) {
  const out = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "'" || c === '"') {
      const close = text.indexOf(c, i + 1);
      i = close < 0 ? text.length : close + 1;
    } else if (c === "-" && text[i + 1] === "-") {
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? text.length : nl + 1;
    } else if (c === "/" && text[i + 1] === "*") {
      const close = text.indexOf("*/", i + 2);
      i = close < 0 ? text.length : close + 2;
    } else if (c === ";") {
      out.push([start, i]);
      start = i + 1;
      i++;
    } else {
      i++;
    }
  }
  out.push([start, text.length]);
  return out.filter(([s, e]) => text.slice(s, e).trim() !== "");
}

/** Where DuckDB's "LINE n: …\n   ^" points, as an offset into `text`. */
export function errorOffset(message, text) {
  const m = /LINE (\d+): (.*)\n( *)\^/.exec(message);
  if (!m) return null;
  const line = Number(m[1]);
  let column = m[3].length - `LINE ${m[1]}: `.length;
  const shown = m[2];
  const lines = text.split("\n");
  if (line < 1 || line > lines.length) return null;
  if (shown.startsWith("...")) {
    // DuckDB cut the line's start: find the shown part in the real line.
    const at = lines[line - 1].indexOf(shown.slice(3, 23));
    if (at < 0) return null;
    column = at + column - 3;
  }
  let offset = 0;
  for (let l = 0; l < line - 1; l++) offset += lines[l].length + 1;
  return { offset: offset + Math.max(0, column), line, column: Math.max(0, column) + 1 };
}

function loadHistory() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) ?? "[]");
  } catch {
    return [];
  }
}

function main() {
  const app = document.getElementById("app");
  if (!vendorBuilt) return vendorMissing(app);
  const params = new URLSearchParams(location.search);

  const dbSelect = el("select", { id: "database" });
  const runBtn = el("button", { type: "button", id: "run", title: "Run the selection or the statement at the cursor (Ctrl+Enter)" }, "Run");
  const runAllBtn = el("button", { type: "button", id: "run-all", title: "Run every statement (Ctrl+Shift+Enter)" }, "Run all");
  const cancelBtn = el("button", { type: "button", id: "cancel", disabled: true }, "Cancel");
  const historySelect = el("select", { id: "history" });
  const status = el("p", { id: "status", role: "status", "aria-live": "polite" }, "Ready.");
  const errorBox = el("div", { id: "error", role: "alert", class: "error", hidden: true });
  const gridPanel = el("div", { id: "grid-panel", role: "tabpanel", "aria-labelledby": "tab-grid" });
  const chartBox = el("div", { id: "chart", role: "img", "aria-label": "No chart yet" });
  const liveBox = el("input", { type: "checkbox", id: "live" });
  const liveEvery = el("input", { type: "number", id: "live-every", min: 1, max: 3600, value: 5, inputmode: "numeric" });
  const chartNote = el("p", { id: "chart-note" }, "Run a query whose result has a time column and numeric columns.");
  const chartPanel = el(
    "div",
    { id: "chart-panel", role: "tabpanel", "aria-labelledby": "tab-chart", hidden: true },
    el("div", { class: "chart-controls" }, el("label", { for: "live" }, liveBox, " Live: re-run every "), liveEvery, el("label", { for: "live-every" }, " seconds")),
    chartNote,
    chartBox,
  );
  const tabGrid = el("button", { type: "button", role: "tab", id: "tab-grid", "aria-selected": "true", "aria-controls": "grid-panel" }, "Grid");
  const tabChart = el("button", { type: "button", role: "tab", id: "tab-chart", "aria-selected": "false", "aria-controls": "chart-panel", tabindex: -1 }, "Chart");
  const csvBtn = el("button", { type: "button", id: "download-csv", disabled: true }, "Download CSV");
  const arrowBtn = el("button", { type: "button", id: "download-arrow", disabled: true }, "Download Arrow");
  const parquetBtn = el("button", { type: "button", id: "download-parquet", disabled: true }, "Download Parquet");
  const editorHost = el("div", { id: "editor", class: "editor" });

  app.replaceChildren(
    el(
      "div",
      { class: "toolbar", role: "toolbar", "aria-label": "Query" },
      el("label", { for: "database" }, "Database"),
      dbSelect,
      runBtn,
      runAllBtn,
      cancelBtn,
      el("label", { for: "history" }, "History"),
      historySelect,
    ),
    el("span", { class: "visually-hidden", id: "editor-label" }, "SQL editor"),
    editorHost,
    status,
    errorBox,
    el("div", { class: "result-bar" }, el("div", { role: "tablist", "aria-label": "Result view" }, tabGrid, tabChart), el("div", { class: "downloads" }, csvBtn, arrowBtn, parquetBtn)),
    gridPanel,
    chartPanel,
  );

  const grid = new Grid(gridPanel);
  const chart = new Chart(chartBox);
  const sqlConf = new Compartment();
  const initial = params.get("sql") ?? "SELECT 42 AS answer, now() AS at;";
  const view = new EditorView({
    doc: initial,
    parent: editorHost,
    extensions: [
      Prec.highest(
        keymap.of([
          { key: "Mod-Enter", run: () => (runCurrent(), true) },
          { key: "Shift-Mod-Enter", run: () => (runAll(), true) },
        ]),
      ),
      basicSetup,
      sqlConf.of(sql({ dialect: PostgreSQL, upperCaseKeywords: true })),
      EditorView.contentAttributes.of({ "aria-labelledby": "editor-label", "aria-multiline": "true" }),
      EditorView.lineWrapping,
    ],
  });

  // Scripts (and the browser tests) reach the editor through its host element.
  editorHost.editorView = view;

  // --- history ---
  function renderHistory() {
    const items = loadHistory();
    historySelect.replaceChildren(
      el("option", { value: "" }, items.length ? `${items.length} past ${items.length === 1 ? "query" : "queries"}` : "no past queries"),
      ...items.map((h, i) => el("option", { value: String(i) }, h.sql.replace(/\s+/g, " ").slice(0, 80))),
    );
  }
  function remember(text) {
    const items = loadHistory().filter((h) => h.sql !== text);
    items.unshift({ sql: text, database: dbSelect.value, at: new Date().toISOString() });
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items.slice(0, HISTORY_MAX)));
    renderHistory();
  }
  historySelect.addEventListener("change", () => {
    const h = loadHistory()[Number(historySelect.value)];
    if (h) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: h.sql } });
      if (h.database) dbSelect.value = h.database;
      view.focus();
    }
    historySelect.value = "";
  });
  renderHistory();

  // --- catalog: databases and completion ---
  async function loadCatalog() {
    try {
      const cat = await api("/console/api/catalog");
      const wanted = params.get("db") ?? dbSelect.value ?? "default";
      dbSelect.replaceChildren(...cat.databases.map((d) => el("option", { value: d.name }, d.name)));
      dbSelect.value = cat.databases.some((d) => d.name === wanted) ? wanted : (cat.databases.find((d) => d.name === "default")?.name ?? cat.databases[0]?.name ?? "");
      const tables = (s) => Object.fromEntries(s.tables.map((t) => [t.name, t.columns.map((c) => ({ label: c.name, type: "property", detail: c.type }))]));
      const schema = {};
      for (const d of cat.databases) schema[d.name] = Object.fromEntries(d.schemas.map((s) => [s.name, tables(s)]));
      const current = cat.databases.find((d) => d.name === dbSelect.value);
      for (const s of current?.schemas ?? []) schema[s.name] = tables(s);
      view.dispatch({ effects: sqlConf.reconfigure(sql({ dialect: PostgreSQL, upperCaseKeywords: true, schema, defaultSchema: "main" })) });
      catalogCache = cat;
    } catch (e) {
      say(status, `Could not load the catalog: ${e.message}`, true);
    }
  }
  let catalogCache = null;
  dbSelect.addEventListener("change", () => catalogCache && loadCatalog());

  // --- running ---
  let controller = null;
  let last = null; // {text, offset}
  let result = null; // {fields, batches}
  let liveTimer = null;

  function setRunning(on) {
    runBtn.disabled = on;
    runAllBtn.disabled = on;
    cancelBtn.disabled = !on;
    document.body.classList.toggle("running", on);
  }

  function showError(e, text, offset) {
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    const pos = errorOffset(message, text);
    errorBox.replaceChildren(
      el("strong", {}, pos ? `Error at line ${pos.line}, column ${pos.column}: ` : "Error: "),
      el("pre", { id: "error-message" }, message),
    );
    errorBox.hidden = false;
    if (pos) {
      const from = Math.min(view.state.doc.length, offset + pos.offset);
      const word = /^[\w."]+/.exec(view.state.doc.sliceString(from, from + 64));
      view.dispatch({ selection: { anchor: from, head: Math.min(view.state.doc.length, from + (word ? word[0].length : 1)) }, scrollIntoView: true });
    }
  }

  async function run(text, offset, { live = false } = {}) {
    if (controller) return;
    text = text.trim() ? text : "";
    if (!text) return say(status, "Nothing to run.");
    if (!live) remember(text);
    last = { text, offset };
    controller = new AbortController();
    const mine = controller;
    setRunning(true);
    errorBox.hidden = true;
    const started = performance.now();
    say(status, "Running…");
    let rows = 0;
    let truncated = false;
    let lastStatus = 0;
    try {
      const resp = await query(text, dbSelect.value, "arrow", mine.signal);
      const reader = await RecordBatchReader.from(resp.body);
      await reader.open();
      grid.reset(reader.schema, "Query result");
      result = { fields: reader.schema.fields, batches: grid.batches };
      for await (const batch of reader) {
        grid.append(batch);
        rows = grid.rows;
        const now = performance.now();
        if (now - lastStatus > 250) {
          lastStatus = now;
          say(status, `${fmt(rows)} rows so far…`);
        }
        if (rows >= MAX_ROWS) {
          truncated = true;
          mine.abort();
          break;
        }
      }
      const ms = Math.round(performance.now() - started);
      say(status, `${rowsText(rows)} in ${fmt(ms)} ms${truncated ? ` (stopped at ${fmt(MAX_ROWS)}: download for the whole result)` : ""}.`);
      csvBtn.disabled = arrowBtn.disabled = parquetBtn.disabled = false;
      updateChart();
    } catch (e) {
      if (mine.signal.aborted && !truncated) {
        say(status, `Cancelled after ${fmt(grid.rows)} rows.`);
      } else {
        say(status, "Failed.", true);
        showError(e, text, offset);
      }
    } finally {
      controller = null;
      setRunning(false);
    }
  }

  function runCurrent() {
    const sel = view.state.selection.main;
    const doc = view.state.doc.toString();
    if (!sel.empty) return run(doc.slice(sel.from, sel.to), sel.from);
    const ranges = statementRanges(doc);
    const at = ranges.find(([s, e]) => sel.head >= s && sel.head <= e + 1) ?? ranges.filter(([s]) => s <= sel.head).pop() ?? ranges[0];
    if (!at) return say(status, "Nothing to run.");
    const raw = doc.slice(at[0], at[1]);
    const lead = raw.length - raw.trimStart().length;
    return run(raw.trim(), at[0] + lead);
  }
  function runAll() {
    const doc = view.state.doc.toString();
    const lead = doc.length - doc.trimStart().length;
    return run(doc.trim(), lead);
  }
  runBtn.addEventListener("click", () => runCurrent());
  runAllBtn.addEventListener("click", () => runAll());
  cancelBtn.addEventListener("click", () => controller?.abort());

  // --- chart ---
  function updateChart() {
    if (!result || !chartable(result.fields)) {
      chartNote.hidden = false;
      chartBox.replaceChildren();
      return;
    }
    chartNote.hidden = true;
    if (!chartPanel.hidden) chart.draw(result.fields, result.batches);
    else chart.stale = true;
  }
  function select(tab) {
    const chartOn = tab === tabChart;
    tabGrid.setAttribute("aria-selected", String(!chartOn));
    tabChart.setAttribute("aria-selected", String(chartOn));
    tabGrid.tabIndex = chartOn ? -1 : 0;
    tabChart.tabIndex = chartOn ? 0 : -1;
    gridPanel.hidden = chartOn;
    chartPanel.hidden = !chartOn;
    if (chartOn && result && chartable(result.fields)) chart.draw(result.fields, result.batches);
    tab.focus();
  }
  tabGrid.addEventListener("click", () => select(tabGrid));
  tabChart.addEventListener("click", () => select(tabChart));
  for (const t of [tabGrid, tabChart]) {
    t.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") select(t === tabGrid ? tabChart : tabGrid);
    });
  }
  function setLive() {
    clearInterval(liveTimer);
    liveTimer = null;
    if (!liveBox.checked) return;
    const secs = Math.min(3600, Math.max(1, Number(liveEvery.value) || 5));
    liveTimer = setInterval(() => {
      if (last && !controller) run(last.text, last.offset, { live: true });
    }, secs * 1000);
  }
  liveBox.addEventListener("change", setLive);
  liveEvery.addEventListener("change", setLive);
  window.addEventListener("resize", () => chart.resize());

  // --- downloads ---
  async function download(format) {
    if (!last) return;
    try {
      say(status, `Preparing ${format.toUpperCase()}…`);
      const resp =
        format === "parquet"
          ? await api("/console/api/export", { method: "POST", body: { sql: last.text, database: dbSelect.value || undefined }, raw: true })
          : await query(last.text, dbSelect.value, format);
      const blob = await resp.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: `result.${format}` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
      say(status, `Downloaded result.${format} (${fmt(blob.size)} bytes).`);
    } catch (e) {
      showError(e, last.text, last.offset);
    }
  }
  csvBtn.addEventListener("click", () => download("csv"));
  arrowBtn.addEventListener("click", () => download("arrow"));
  parquetBtn.addEventListener("click", () => download("parquet"));

  loadCatalog();
  view.focus();
}

main();
