// The interactive part of `edgevpr report`: SVG scatter plots with Pareto fronts, and a
// sortable table. Data comes from the JSON block the page embeds; no network access.
"use strict";
const DATA = JSON.parse(document.getElementById("edgevpr-data").textContent);
const COLOURS = {fp32: "#1f77b4", fp16: "#2ca02c", int8: "#d62728", int4: "#9467bd", mixed: "#ff7f0e"};
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}
function human(v) {
  if (v >= 1e9) return (v / 1e9).toPrecision(3) + "G";
  if (v >= 1e6) return (v / 1e6).toPrecision(3) + "M";
  if (v >= 1e3) return (v / 1e3).toPrecision(3) + "k";
  return Number(v.toPrecision(3)).toString();
}
function paretoFront(points) {
  const order = points.map((p, i) => i).sort((a, b) => points[a].x - points[b].x || points[b].y - points[a].y);
  const front = []; let best = -Infinity;
  for (const i of order) if (points[i].y > best) { front.push(i); best = points[i].y; }
  return front;
}
function scatter(id, title, points, xLabel, options) {
  const box = document.getElementById(id);
  box.innerHTML = "";
  const heading = document.createElement("h3"); heading.textContent = title; box.appendChild(heading);
  if (!points.length) { box.appendChild(document.createTextNode("no runs")); return; }
  const W = 460, H = 300, L = 55, B = 40, T = 10, R = 15;
  const svg = el("svg", {width: W, height: H, class: "plot", "data-points": points.length}, box);
  const log = options.log && points.every(p => p.x > 0);
  const fx = log ? Math.log10 : (v => v);
  const categories = options.categories;
  let xs = points.map(p => categories ? categories.indexOf(p.x) : fx(p.x));
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const pad = (x1 - x0) * 0.06; x0 -= pad; x1 += pad;
  const ys = points.map(p => p.y);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  y0 = Math.max(0, y0 - 5); y1 = Math.min(100, y1 + 5); if (y0 === y1) y1 = y0 + 1;
  const sx = v => L + (v - x0) / (x1 - x0) * (W - L - R);
  const sy = v => H - B - (v - y0) / (y1 - y0) * (H - B - T);
  el("line", {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#333"}, svg);
  el("line", {x1: L, y1: T, x2: L, y2: H - B, stroke: "#333"}, svg);
  for (let k = 0; k <= 4; k++) {
    const yv = y0 + (y1 - y0) * k / 4;
    el("text", {x: L - 6, y: sy(yv) + 4, "text-anchor": "end", "font-size": 10}, svg).textContent = yv.toFixed(0);
    if (categories) continue;
    const xv = x0 + (x1 - x0) * k / 4;
    el("text", {x: sx(xv), y: H - B + 14, "text-anchor": "middle", "font-size": 10}, svg).textContent =
      human(log ? Math.pow(10, xv) : xv);
  }
  if (categories) categories.forEach((c, i) => {
    el("text", {x: sx(i), y: H - B + 14, "text-anchor": "middle", "font-size": 10}, svg).textContent = c;
  });
  el("text", {x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", "font-size": 11}, svg).textContent = xLabel + (log ? " (log)" : "");
  el("text", {x: 12, y: (T + H - B) / 2, "text-anchor": "middle", "font-size": 11,
              transform: `rotate(-90 12 ${(T + H - B) / 2})`}, svg).textContent = "Recall@1 (%)";
  if (options.front) {
    const front = paretoFront(points.map((p, i) => ({x: xs[i], y: p.y})));
    const path = front.map((i, k) => `${k ? "L" : "M"}${sx(xs[i])},${sy(points[i].y)}`).join(" ");
    el("path", {d: path, fill: "none", stroke: "#555", "stroke-dasharray": "4 3", class: "front",
                "data-front": front.length}, svg);
  }
  points.forEach((p, i) => {
    const colour = COLOURS[p.row.precision] || "#777";  // a run timed on a busy machine is drawn hollow
    const dot = el("circle", {cx: sx(xs[i]), cy: sy(p.y), r: 5, fill: p.row.busy ? "white" : colour, stroke: colour,
                              "stroke-width": p.row.busy ? 2 : 0, "fill-opacity": 0.8, class: "point"}, svg);
    el("title", {}, dot).textContent = `${label(p.row)}\nR@1 ${p.y.toFixed(1)}, ${xLabel} ${categories ? p.x : human(p.x)}` +
      (p.row.busy ? "\ntimed on a busy machine: latency likely inflated" : "");
  });
}
function label(row) {
  return `${row.backbone}+${row.aggregator} D=${row.descriptor_dim}x${row.descriptor_bits}b ${row.precision} ${row.index_spec} ${row.image_size}`;
}
function selectedRows() {
  const dataset = document.getElementById("dataset").value;
  return DATA.rows.filter(r => dataset === "*" || r.dataset === dataset);
}
function mapSize() { return Math.max(1, Number(document.getElementById("mapsize").value) || 1); }
function projected(row, n) {
  const matching = row.matching_ms * n / row.num_database;
  return {total: row.extraction_ms + matching + row.rerank_ms,
          database: (row.database_bytes / row.num_database + row.patch_bytes) * n + row.index_fixed_bytes};
}
function draw() {
  const rows = selectedRows(), n = mapSize();
  const pts = f => rows.map(r => ({x: f(r), y: r.recall_1, row: r}));
  scatter("p-bytes", "Pareto: recall vs model bytes", pts(r => r.model_bytes), "model bytes", {log: true, front: true});
  scatter("p-extract", "Pareto: recall vs extraction latency", pts(r => r.extraction_ms), "extraction ms", {log: true, front: true});
  scatter("p-total", `Pareto: recall vs extraction + matching at N = ${n}`, pts(r => projected(r, n).total), "total ms", {log: true, front: true});
  scatter("p-db", `Pareto: recall vs database memory at N = ${n}`, pts(r => projected(r, n).database), "database bytes", {log: true, front: true});
  scatter("p-dim", "Recall vs descriptor size", pts(r => r.descriptor_dim), "descriptor dimensions", {log: true});
  const precisions = ["fp32", "fp16", "int8", "int4", "mixed"].filter(p => rows.some(r => r.precision === p));
  scatter("p-precision", "Recall vs precision", pts(r => r.precision), "precision", {categories: precisions});
  const bits = [32, 16, 8, 1].filter(b => rows.some(r => r.descriptor_bits === b));
  scatter("p-descbits", "Recall vs descriptor bits per dimension", pts(r => r.descriptor_bits), "bits", {categories: bits});
  drawBits(rows);
  fillTable(rows);
}
function drawBits(rows) {
  const box = document.getElementById("p-bits");
  box.innerHTML = "<h3>Bits per layer (mixed precision)</h3>";
  const mixed = rows.filter(r => r.layer_bits && r.layer_bits.length);
  if (!mixed.length) { box.appendChild(document.createTextNode("no mixed-precision runs in this store")); return; }
  for (const row of mixed) {
    const W = 460, H = 120, svg = el("svg", {width: W, height: H, class: "plot"}, box);
    const w = (W - 20) / row.layer_bits.length;
    row.layer_bits.forEach((b, i) => {
      const h = b / 16 * (H - 20);
      const bar = el("rect", {x: 10 + i * w, y: H - 10 - h, width: Math.max(1, w - 1), height: h, fill: "#ff7f0e"}, svg);
      el("title", {}, bar).textContent = `layer ${i}: ${b} bits`;
    });
  }
}
const COLUMNS = [["backbone", "backbone"], ["aggregator", "aggregator"], ["descriptor_dim", "D"], ["descriptor_bits", "bits/dim"], ["precision", "precision"],
  ["index_spec", "index"], ["image_size", "image"], ["dataset", "dataset"], ["recall_1", "R@1"], ["recall_5", "R@5"],
  ["recall_10", "R@10"], ["auc_pr", "AUC-PR"], ["model_bytes", "model bytes"], ["extraction_ms", "extraction ms"], ["matching_ms", "matching ms"], ["rerank_ms", "re-rank ms"],
  ["database_bytes", "database bytes"], ["params", "params"], ["flops", "FLOPs"], ["int8_kernels", "int8 kernels"], ["busy", "timed busy"]];
let sortKey = "recall_1", sortDown = true;
function fillTable(rows) {
  const table = document.getElementById("runs");
  table.innerHTML = "";
  const head = table.createTHead().insertRow();
  for (const [key, title] of COLUMNS) {
    const th = document.createElement("th");
    th.textContent = title + (key === sortKey ? (sortDown ? " \u25bc" : " \u25b2") : "");
    th.dataset.key = key;
    th.addEventListener("click", () => { sortDown = key === sortKey ? !sortDown : true; sortKey = key; fillTable(selectedRows()); });
    head.appendChild(th);
  }
  const sorted = rows.slice().sort((a, b) => {
    const x = a[sortKey], y = b[sortKey];
    const order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return sortDown ? -order : order;
  });
  const body = table.createTBody();
  for (const row of sorted) {
    const tr = body.insertRow();
    for (const [key] of COLUMNS) {
      const v = row[key];
      const digits = key.startsWith("recall") ? 1 : key.endsWith("_ms") ? 2 : key === "auc_pr" ? 3 : 0;
      tr.insertCell().textContent = typeof v === "boolean" ? (v ? "yes" : "") :
        typeof v === "number" ? v.toFixed(digits) : (v ?? "");
    }
  }
}
function setup() {
  const select = document.getElementById("dataset");
  for (const d of ["*", ...new Set(DATA.rows.map(r => r.dataset))]) {
    const option = document.createElement("option"); option.value = d; option.textContent = d === "*" ? "all datasets" : d;
    select.appendChild(option);
  }
  if (DATA.datasets.length === 1) select.value = DATA.datasets[0];
  document.getElementById("mapsize").value = DATA.map_size;
  select.addEventListener("change", draw);
  document.getElementById("mapsize").addEventListener("change", draw);
  draw();
}
setup();
