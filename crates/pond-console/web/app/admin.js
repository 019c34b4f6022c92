// The administration page (the server answers it to superusers only): users,
// grants, API tokens (a new token's secret is shown once), secrets (names
// only), links and databases, ingest and compaction status, metrics. Every
// section calls the existing API or runs Pond's own statements, so the
// engine decides what is allowed.

import { el, api, queryJson, table, say } from "./common.js";

function section(id, title, ...content) {
  return el("section", { id, "aria-labelledby": `${id}-title`, class: "card" }, el("h2", { id: `${id}-title` }, title), ...content);
}

function field(id, label, attrs = {}) {
  return [el("label", { for: id }, label), el("input", { id, name: id, ...attrs })];
}

function resultTable(caption, res) {
  return table(caption, res.columns.map((c) => c.name), res.data);
}

async function refresh(node, load) {
  const out = node.querySelector(".out") ?? node.appendChild(el("div", { class: "out" }));
  try {
    out.replaceChildren(await load());
  } catch (e) {
    out.replaceChildren(el("p", { class: "error", role: "alert" }, e.message));
  }
}

function form(id, label, fields, onsubmit, status) {
  const f = el("form", { id, class: "inline-form", "aria-label": label }, ...fields, el("button", { type: "submit" }, label));
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await onsubmit(new FormData(f));
      say(status, `${label}: done.`);
      f.reset();
    } catch (err) {
      say(status, `${label}: ${err.message}`, true);
    }
  });
  return f;
}

function main() {
  const app = document.getElementById("app");
  const status = el("p", { id: "status", role: "status", "aria-live": "polite" });
  const users = section("users", "Users");
  const grants = section("grants", "Grants");
  const tokens = section("tokens", "API tokens");
  const secrets = section("secrets", "Secrets");
  const links = section("links", "Databases, catalogs and links");
  const lake = section("lake", "Ingest and compaction");
  const metrics = section("metrics", "Metrics");
  app.replaceChildren(status, users, grants, tokens, secrets, links, lake, metrics);

  const loadUsers = () =>
    refresh(users, async () => {
      const r = await api("/api/v1/users");
      const cols = r.users.length ? Object.keys(r.users[0]) : ["name"];
      return table("Users", cols, r.users, (u) =>
        el("button", { type: "button", "aria-label": `Drop user ${u.name}`, onclick: async () => {
          if (!confirm(`Drop user ${u.name}?`)) return;
          try { await api(`/api/v1/users/${encodeURIComponent(u.name)}`, { method: "DELETE" }); say(status, `Dropped ${u.name}.`); loadUsers(); } catch (e) { say(status, e.message, true); }
        } }, "Drop"),
      );
    });
  users.append(
    form("new-user", "Create user", [...field("new-user-name", "Name", { required: true, autocomplete: "off" }), ...field("new-user-password", "Password", { type: "password", required: true, autocomplete: "new-password" }), el("label", { for: "new-user-superuser" }, el("input", { type: "checkbox", id: "new-user-superuser", name: "new-user-superuser" }), " superuser")], async (d) => {
      await api("/api/v1/users", { method: "POST", body: { name: d.get("new-user-name"), password: d.get("new-user-password"), superuser: d.get("new-user-superuser") === "on" } });
      loadUsers();
    }, status),
  );

  const loadGrants = () =>
    refresh(grants, async () => {
      const r = await api("/api/v1/grants");
      const cols = r.grants.length ? Object.keys(r.grants[0]) : ["user"];
      return table("Grants", cols, r.grants);
    });
  const grantFields = () => [...field("grant-user", "User", { required: true }), ...field("grant-database", "Database", { required: true }), ...field("grant-table", "Table (optional, schema.table)"), ...field("grant-privileges", "Privileges", { required: true, placeholder: "read, write" })];
  const grantBody = (d) => ({ user: d.get("grant-user"), database: d.get("grant-database"), table: d.get("grant-table") || undefined, privileges: String(d.get("grant-privileges")).split(",").map((p) => p.trim()).filter(Boolean) });
  grants.append(
    form("grant", "Grant", grantFields(), async (d) => { await api("/api/v1/grants", { method: "POST", body: grantBody(d) }); loadGrants(); }, status),
  );

  const secretOut = el("div", { id: "token-secret", role: "alert", hidden: true, class: "secret" });
  const loadTokens = () =>
    refresh(tokens, async () => {
      const r = await api("/api/v1/auth/tokens");
      const cols = ["id", "name", "user", "permission", "databases", "expires_at", "revoked"];
      return table("API tokens", cols, r.tokens, (t) =>
        el("button", { type: "button", "aria-label": `Revoke token ${t.name ?? t.id}`, onclick: async () => {
          try { await api(`/api/v1/auth/tokens/${encodeURIComponent(t.id)}/revoke`, { method: "POST" }); say(status, `Revoked ${t.name ?? t.id}.`); loadTokens(); } catch (e) { say(status, e.message, true); }
        } }, "Revoke"),
      );
    });
  tokens.append(
    form("new-token", "Create token", [...field("token-name", "Name", { required: true }), ...field("token-databases", "Databases (comma-separated, empty: all)"), el("label", { for: "token-permission" }, "Permission"), el("select", { id: "token-permission", name: "token-permission" }, el("option", { value: "read" }, "read"), el("option", { value: "write" }, "write"), el("option", { value: "admin" }, "admin")), ...field("token-expires", "Expires in (seconds, empty: never)", { type: "number", min: 60 })], async (d) => {
      const dbs = String(d.get("token-databases") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
      const body = { name: d.get("token-name"), databases: dbs, permission: d.get("token-permission") };
      if (d.get("token-expires")) body.expires_in = Number(d.get("token-expires"));
      const t = await api("/api/v1/auth/tokens", { method: "POST", body });
      secretOut.replaceChildren(el("p", {}, `Token ${t.name} created. Copy its secret now: it is not shown again.`), el("code", { id: "token-value" }, t.token));
      secretOut.hidden = false;
      loadTokens();
    }, status),
    secretOut,
  );

  const loadSecrets = () => refresh(secrets, async () => resultTable("Secrets (names and types; values are never shown)", await queryJson("SHOW SECRETS")));
  const loadLinks = () =>
    refresh(links, async () => el("div", {}, resultTable("Databases", await queryJson("SHOW DATABASES")), resultTable("Links", await queryJson("SHOW LINKS"))));
  const loadLake = () =>
    refresh(lake, async () => {
      const s = await api("/api/v1/lake/status");
      const rows = Object.entries(s).map(([k, v]) => [k, typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)]);
      return table("Ingest, flush and compaction", ["setting or counter", "value"], rows);
    });
  const filter = el("input", { id: "metrics-filter", type: "search", placeholder: "pond_" });
  const loadMetrics = () =>
    refresh(metrics, async () => {
      const text = await api("/metrics");
      const want = filter.value.trim();
      const rows = text
        .split("\n")
        .filter((l) => l && !l.startsWith("#") && (!want || l.includes(want)))
        .slice(0, 500)
        .map((l) => {
          const at = l.lastIndexOf(" ");
          return [l.slice(0, at), l.slice(at + 1)];
        });
      return table("Server metrics (first 500 matching samples)", ["sample", "value"], rows);
    });
  filter.addEventListener("change", loadMetrics);
  metrics.append(el("label", { for: "metrics-filter" }, "Filter "), filter, el("button", { type: "button", onclick: loadMetrics }, "Refresh"));

  loadUsers();
  loadGrants();
  loadTokens();
  loadSecrets();
  loadLinks();
  loadLake();
  loadMetrics();
}

main();
