// The results grid: Arrow record batches kept as they arrive (columnar, no
// per-row objects) and only the rows in view rendered (a spacer gives the
// scrollbar its height), so a million-row result puts a few dozen rows in the DOM.

import { DataType } from "./vendor/arrow.js";
import { el, formatValue } from "./common.js";

const ROW_HEIGHT = 28;
const OVERSCAN = 8;

/** "time", "number", "text" or "other" for an Arrow type. */
export function kindOf(type) {
  if (DataType.isTimestamp(type) || DataType.isDate(type)) return "time";
  if (DataType.isInt(type) || DataType.isFloat(type) || DataType.isDecimal(type)) return "number";
  if (DataType.isUtf8(type) || DataType.isLargeUtf8(type) || DataType.isDictionary(type)) return "text";
  return "other";
}

export class Grid {
  constructor(container) {
    this.container = container;
    this.batches = [];
    this.starts = [];
    this.rows = 0;
    this.fields = [];
    this.kinds = [];
    this.pending = false;
    container.replaceChildren();
  }

  /** Starts a new result with the stream's schema. */
  reset(schema, caption) {
    this.batches = [];
    this.starts = [];
    this.rows = 0;
    this.fields = schema.fields;
    this.kinds = this.fields.map((f) => kindOf(f.type));
    const cols = `repeat(${Math.max(1, this.fields.length)}, minmax(9rem, 1fr))`;
    this.header = el(
      "div",
      { class: "grid-row grid-head", role: "row", "aria-rowindex": 1, style: `grid-template-columns:${cols}` },
      this.fields.map((f, i) =>
        el("div", { role: "columnheader", "aria-colindex": i + 1, title: String(f.type) }, el("span", { class: "col-name" }, f.name), el("span", { class: "col-type" }, String(f.type))),
      ),
    );
    this.spacer = el("div", { class: "grid-spacer" });
    this.body = el("div", { class: "grid-body", role: "rowgroup" });
    this.viewport = el(
      "div",
      { class: "grid-viewport", tabindex: 0, role: "grid", "aria-label": caption, "aria-colcount": this.fields.length, "aria-rowcount": 1 },
      el("div", { role: "rowgroup", class: "grid-headgroup" }, this.header),
      el("div", { class: "grid-scroll", style: `min-width:${this.fields.length * 9}rem` }, this.spacer, this.body),
    );
    this.cols = cols;
    this.viewport.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.container.replaceChildren(this.viewport);
    this.schedule();
  }

  append(batch) {
    if (batch.numRows === 0) return;
    this.starts.push(this.rows);
    this.batches.push(batch);
    this.rows += batch.numRows;
    this.schedule();
  }

  /** Renders on the next frame (many batches arrive between frames). */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  /** The batch holding row `r` and the row's index in it (binary search). */
  locate(r) {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= r) lo = mid;
      else hi = mid - 1;
    }
    return [this.batches[lo], r - this.starts[lo]];
  }

  render() {
    if (!this.viewport) return;
    this.spacer.style.height = `${this.rows * ROW_HEIGHT}px`;
    this.viewport.setAttribute("aria-rowcount", String(this.rows + 1));
    const top = Math.max(0, this.viewport.scrollTop - ROW_HEIGHT);
    const visible = Math.ceil(this.viewport.clientHeight / ROW_HEIGHT) + 2 * OVERSCAN;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows, first + visible);
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const rows = [];
    for (let r = first; r < last; r++) {
      const [batch, i] = this.locate(r);
      const cells = [];
      for (let c = 0; c < this.fields.length; c++) {
        const v = batch.getChildAt(c)?.get(i);
        const text = formatValue(v, this.kinds[c]);
        cells.push(el("div", { role: "gridcell", "aria-colindex": c + 1, class: v === null ? "null" : this.kinds[c] === "number" ? "num" : "" }, text));
      }
      rows.push(el("div", { class: "grid-row", role: "row", "aria-rowindex": r + 2, style: `grid-template-columns:${this.cols};height:${ROW_HEIGHT}px` }, cells));
    }
    this.body.replaceChildren(...rows);
  }
}
