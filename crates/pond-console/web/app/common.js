// Shared helpers of the console's pages: the session's CSRF token, API calls
// (the session cookie authenticates them; state changes send x-csrf-token),
// element building and value formatting.

const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content ?? "";
export const csrf = meta("pond-csrf");
export const user = meta("pond-user");
export const superuser = meta("pond-superuser") === "true";
export const vendorBuilt = meta("pond-vendor") === "true";

/** An error answered by the server, with its code and HTTP status. */
export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  let code = "";
  try {
    const body = await resp.json();
    message = body.error ?? body.error_description ?? message;
    code = body.code ?? body.error ?? "";
  } catch {
    /* not JSON */
  }
  if (resp.status === 401 && code !== "invalid_credentials") {
    message += " — log in again";
  }
  return new ApiError(message, resp.status, code);
}

/** fetch() with the console's session: JSON in and out, errors thrown as ApiError. */
export async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  const headers = { "x-pond-console": "1" };
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    credentials: "same-origin",
  });
  if (!resp.ok) throw await failure(resp);
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("content-type") ?? "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** Runs SQL through /api/v1/query; returns the Response (streamed by the caller). */
export function query(sql, database, format, signal) {
  return api("/api/v1/query", { method: "POST", body: { sql, database: database || undefined, format }, signal, raw: true });
}

/** Runs SQL and returns the JSON result's {columns, data}. */
export async function queryJson(sql, database) {
  const resp = await query(sql, database, "json");
  return resp.json();
}

/** Builds an element: el("button", {type: "button", onclick}, "text", child…). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const bigintSafe = (_k, v) => (typeof v === "bigint" ? v.toString() : v);

/** A cell's text. `kind` is "time" for timestamp/date columns. */
export function formatValue(v, kind) {
  if (v === null || v === undefined) return "NULL";
  if (kind === "time" && typeof v === "number") {
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? String(v) : d.toISOString().replace("T", " ").replace("Z", "");
  }
  if (typeof v === "bigint" || typeof v === "number" || typeof v === "string" || typeof v === "boolean") return String(v);
  if (v instanceof Date) return v.toISOString();
  if (typeof v.toJSON === "function") return JSON.stringify(v.toJSON(), bigintSafe);
  if (ArrayBuffer.isView(v)) return `[${Array.from(v).join(", ")}]`;
  return JSON.stringify(v, bigintSafe);
}

/** A table of plain rows (objects or arrays) with a caption; cells are text. */
export function table(caption, columns, rows, actions) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)), actions ? el("th", { scope: "col" }, "Actions") : null);
  const body = rows.map((r) => {
    const cells = Array.isArray(r) ? r : columns.map((c) => r[c]);
    return el(
      "tr",
      {},
      cells.map((v) => el("td", {}, v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v))),
      actions ? el("td", {}, actions(r)) : null,
    );
  });
  return el(
    "div",
    { class: "table-wrap" },
    el("table", {}, el("caption", {}, caption), el("thead", {}, head), el("tbody", {}, body.length ? body : el("tr", {}, el("td", { colspan: columns.length + (actions ? 1 : 0) }, "none")))),
  );
}

/** Shown instead of a page when the binary was built without the bundled libraries. */
export function vendorMissing(app) {
  app.replaceChildren(
    el("p", { role: "alert", class: "error" }, "This Pond binary was built without the console's libraries: run scripts/console_assets.sh (or scripts/setup.sh) and rebuild."),
  );
}

/** Announces a message to screen readers and shows it in `node`. */
export function say(node, text, isError = false) {
  node.textContent = text;
  node.classList.toggle("error", isError);
}
