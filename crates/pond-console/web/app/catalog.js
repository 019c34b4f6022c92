// The catalog page: the databases, schemas, tables (with columns) the user
// may see, from /console/api/catalog, and the time-series measurements with
// their row, file and byte counts from /api/v1/measurements.

import { el, api, table, say } from "./common.js";

const fmt = (n) => Number(n ?? 0).toLocaleString("en-US");
const quote = (name) => (/^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replaceAll('"', '""')}"`);

function tableNode(db, schema, t) {
  const target = `${quote(db)}.${quote(schema)}.${quote(t.name)}`;
  const href = `/console/?db=${encodeURIComponent(db)}&sql=${encodeURIComponent(`SELECT * FROM ${target} LIMIT 100;`)}`;
  return el(
    "li",
    {},
    el(
      "details",
      {},
      el("summary", {}, `${t.name}${t.view ? " (view)" : ""} · ${t.columns.length} columns`),
      el("p", {}, el("a", { href }, `Query ${target}`)),
      table(`Columns of ${db}.${schema}.${t.name}`, ["name", "type", "nullable"], t.columns.map((c) => [c.name, c.type, c.nullable ? "yes" : "no"])),
    ),
  );
}

async function main() {
  const app = document.getElementById("app");
  const status = el("p", { role: "status", id: "status" }, "Loading…");
  const tree = el("section", { id: "databases", "aria-labelledby": "databases-title" }, el("h2", { id: "databases-title" }, "Databases"));
  const measurements = el("section", { id: "measurements", "aria-labelledby": "measurements-title" }, el("h2", { id: "measurements-title" }, "Measurements"));
  app.replaceChildren(status, tree, measurements);
  try {
    const cat = await api("/console/api/catalog");
    const list = el("ul", { class: "tree" });
    for (const d of cat.databases) {
      const schemas = el("ul", {});
      for (const s of d.schemas) {
        schemas.append(
          el(
            "li",
            {},
            el("details", { open: s.name === "main" }, el("summary", {}, `schema ${s.name} · ${s.tables.length} tables`), el("ul", {}, s.tables.map((t) => tableNode(d.name, s.name, t)))),
          ),
        );
      }
      list.append(el("li", {}, el("details", { open: d.name === "default" }, el("summary", { class: "db" }, `database ${d.name}`), schemas)));
    }
    tree.append(list);
    say(status, `${cat.databases.length} databases.`);
  } catch (e) {
    say(status, `Could not load the catalog: ${e.message}`, true);
  }
  try {
    const m = await api("/api/v1/measurements");
    measurements.append(
      table(
        "Time-series measurements",
        ["database", "measurement", "rows", "buffered rows", "files", "bytes", "retention"],
        m.measurements.map((x) => [x.database, x.name, fmt(x.rows), fmt(x.buffered_rows), fmt(x.files), fmt(x.bytes), x.retention_seconds ? `${x.retention_seconds} s` : "—"]),
      ),
    );
  } catch (e) {
    measurements.append(el("p", { class: "error" }, `Measurements unavailable: ${e.message}`));
  }
}

main();
