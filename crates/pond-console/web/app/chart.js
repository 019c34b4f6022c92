// Time-series chart of a result: the first timestamp/date column is the x
// axis, every numeric column a line, split into one series per combination
// of the text (tag) columns. uPlot draws it; dragging zooms, double-click resets.

import uPlot from "./vendor/uplot.js";
import { kindOf } from "./grid.js";

const MAX_POINTS = 200000;
const MAX_SERIES = 40;
const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7480", "#6e7781", "#fb8500", "#3a0ca3"];

/** Whether a result with these fields can be charted: a time column and a numeric one. */
export function chartable(fields) {
  const kinds = fields.map((f) => kindOf(f.type));
  return kinds.includes("time") && kinds.includes("number");
}

/** Turns the grid's batches into uPlot's aligned data and series. */
export function seriesFrom(fields, batches) {
  const kinds = fields.map((f) => kindOf(f.type));
  const t = kinds.indexOf("time");
  const nums = kinds.flatMap((k, i) => (k === "number" ? [i] : []));
  const tags = kinds.flatMap((k, i) => (k === "text" ? [i] : []));
  const points = new Map(); // series key -> Map(time -> value)
  const times = new Set();
  let seen = 0;
  outer: for (const b of batches) {
    const tv = b.getChildAt(t);
    const numVecs = nums.map((i) => b.getChildAt(i));
    const tagVecs = tags.map((i) => b.getChildAt(i));
    for (let r = 0; r < b.numRows; r++) {
      if (++seen > MAX_POINTS) break outer;
      const ts = tv.get(r);
      if (ts === null) continue;
      const x = Number(ts) / 1000;
      times.add(x);
      const tag = tagVecs.map((v) => String(v.get(r) ?? "")).join(",");
      numVecs.forEach((v, j) => {
        const y = v.get(r);
        if (y === null) return;
        const key = (tag ? `${tag} ` : "") + fields[nums[j]].name;
        let m = points.get(key);
        if (!m) {
          if (points.size >= MAX_SERIES) return;
          m = new Map();
          points.set(key, m);
        }
        m.set(x, Number(y));
      });
    }
  }
  const xs = Float64Array.from(times).sort();
  const keys = [...points.keys()].sort();
  const data = [xs, ...keys.map((k) => Array.from(xs, (x) => points.get(k).get(x) ?? null))];
  return { data, keys, truncated: seen > MAX_POINTS, timeName: fields[t].name };
}

export class Chart {
  constructor(container) {
    this.container = container;
    this.plot = null;
  }

  draw(fields, batches) {
    const { data, keys, truncated, timeName } = seriesFrom(fields, batches);
    this.plot?.destroy();
    this.container.replaceChildren();
    const width = Math.max(280, this.container.clientWidth || 800);
    const opts = {
      title: truncated ? `first ${MAX_POINTS.toLocaleString()} rows` : undefined,
      width,
      height: width < 600 ? 260 : 360,
      scales: { x: { time: true } },
      axes: [{ label: timeName }, {}],
      cursor: { drag: { x: true, y: false } },
      series: [{ label: timeName }, ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 1.5, spanGaps: true }))],
    };
    this.plot = new uPlot(opts, data, this.container);
    this.container.setAttribute("aria-label", `Line chart of ${keys.length} series over ${timeName}, ${data[0].length} points; drag to zoom, double-click to reset`);
    return keys.length;
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(280, this.container.clientWidth), height: this.plot.height });
  }
}
