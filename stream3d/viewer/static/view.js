// stream3d view: polls /api/state and follows the run store without reloading the page.
// No network beyond this server (the lab PC is offline); text goes in through textContent only.
"use strict";

const POLL_MS = 1000;
const KINDS = ["raw", "popout", "height", "thickness", "render"];
const $ = (id) => document.getElementById(id);
let state = null;
let shown = -1;        // frame index t on screen
let shownKey = "";     // t + status: pictures are reloaded when either changes
let turn = 0;          // quarter turns of the 3D render
let statusOf = {};     // t -> status name, from the last info.json

function fmt(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  if (digits === undefined && Number.isInteger(v)) return String(v);
  if (Math.abs(v) >= 1e5) return v.toExponential(2);
  if (Math.abs(v) > 0 && Math.abs(v) < 0.1) return v.toPrecision(2);
  return v.toFixed(digits === undefined ? 2 : digits);
}

function drawBars(scales) {
  for (const bar of document.querySelectorAll(".bar")) {
    const s = scales[bar.dataset.scale];
    if (!s || bar.dataset.drawn === JSON.stringify(s)) continue;
    bar.dataset.drawn = JSON.stringify(s);
    bar.replaceChildren();
    const ramp = document.createElement("div");
    ramp.className = "ramp";
    ramp.style.background = "linear-gradient(to right, " + s.colors.join(", ") + ")";
    const ticks = document.createElement("div");
    ticks.className = "ticks";
    const mid = (s.min + s.max) / 2;
    for (const v of [s.min, mid, s.max]) {
      const span = document.createElement("span");
      span.textContent = fmt(v, s.unit === "nm" ? 1 : 0);
      ticks.appendChild(span);
    }
    const unit = document.createElement("span");
    unit.textContent = s.unit;
    ticks.appendChild(unit);
    bar.append(ramp, ticks);
  }
}

function showFrame(t) {
  if (t < 0) return;
  fetch("/frame/" + t + "/info.json", {cache: "no-store"})
    .then((r) => r.ok ? r.json() : Promise.reject(r.status))
    .then((info) => {
      statusOf[t] = info.status;
      const key = t + ":" + info.status + ":" + turn;
      if (key !== shownKey) {
        shownKey = key;
        for (const kind of KINDS) {
          const img = $("img-" + kind);
          img.dataset.loaded = "0";
          const q = kind === "render" ? "&turn=" + turn : "";
          img.src = "/frame/" + t + "/" + kind + ".png?s=" + info.status + q;
        }
      }
      shown = t;
      document.body.dataset.shown = String(t);
      $("shown-frame").textContent = t + " (" + info.status + ")";
      fillInfo(info);
    })
    .catch(() => {});
}

function fillInfo(info) {
  const rows = [
    ["store index t", info.t], ["detector frame", info.frame_id], ["status", info.status],
    ["timestamp", fmt(info.timestamp, 3) + " s"], ["data loss", fmt(info.loss, 4)],
  ];
  if (info.material_nm3 !== undefined) {
    rows.push(["material", fmt(info.material_nm3, 1) + " nm³"], ["objects", info.objects],
              ["highest face", fmt(info.top_nm, 1) + " nm"],
              ["lowest face", fmt(info.bottom_nm, 1) + " nm"]);
  }
  const body = $("info").tBodies[0];
  body.replaceChildren();
  for (const [k, v] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = String(v);
  }
}

// A small line plot: series = [{xs, ys, color, label}], axis labels from the data range.
function plot(canvas, series, xlabel) {
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 44, R = 8, T = 18, B = 22;
  g.clearRect(0, 0, W, H);
  g.font = "11px sans-serif";
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) {
    s.xs.forEach((x, i) => {
      const y = s.ys[i];
      if (y === null || !Number.isFinite(y)) return;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    });
  }
  g.strokeStyle = "#999";
  g.strokeRect(L, T, W - L - R, H - T - B);
  if (!Number.isFinite(x0)) { g.fillStyle = "#999"; g.fillText("no data yet", L + 8, T + 20); return; }
  if (y0 > 0 && y0 < 0.5 * y1) y0 = 0;
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y1 = y0 + 1; }
  const px = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const py = (y) => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  g.fillStyle = "#444";
  g.fillText(fmt(y1), 2, T + 8); g.fillText(fmt(y0), 2, H - B);
  g.fillText(fmt(x0, 0), L, H - 6); g.fillText(fmt(x1, 0) + " " + xlabel, W - R - 70, H - 6);
  let lx = L + 6;
  for (const s of series) {
    g.strokeStyle = s.color; g.lineWidth = 1.5; g.beginPath();
    let pen = false;
    s.xs.forEach((x, i) => {
      const y = s.ys[i];
      if (y === null || !Number.isFinite(y)) { pen = false; return; }
      if (pen) g.lineTo(px(x), py(y)); else g.moveTo(px(x), py(y));
      pen = true;
    });
    if (s.dots) s.xs.forEach((x, i) => { if (Number.isFinite(s.ys[i])) g.fillRect(px(x) - 1, py(s.ys[i]) - 1, 2, 2); });
    g.stroke();
    g.fillStyle = s.color; g.fillText(s.label, lx, T - 5); lx += g.measureText(s.label).width + 14;
  }
}

function drawPlots(st) {
  const h = st.history;
  const t0 = h.length ? h[0][0] : 0;
  const ts = h.map((r) => r[0] - t0);
  plot($("plot-counts"), [
    {xs: ts, ys: h.map((r) => r[1]), color: "#1f77b4", label: "stored"},
    {xs: ts, ys: h.map((r) => r[2]), color: "#2ca02c", label: "refined"},
  ], "s");
  const rate = h.map((r, i) => {
    let j = i; while (j > 0 && r[0] - h[j - 1][0] <= 10) j--;
    return i > j ? (r[2] - h[j][2]) / (r[0] - h[j][0]) : null;
  });
  plot($("plot-rate"), [
    {xs: ts, ys: h.map((r) => r[1] - r[2]), color: "#d62728", label: "lag (frames)"},
    {xs: ts, ys: rate, color: "#9467bd", label: "refined frames/s"},
  ], "s");
  plot($("plot-loss"), [{xs: st.loss.t, ys: st.loss.v, color: "#ff7f0e", label: "loss", dots: true}],
       "frame");
}

function update(st) {
  state = st;
  $("path").textContent = st.path;
  for (const k of ["frames", "refined", "lag", "skipped", "failed"]) $(k).textContent = st[k];
  $("latest").textContent = st.latest >= 0 ? st.latest : "none";
  $("fps").textContent = fmt(st.fps, 2);
  const rs = $("run-state");
  rs.textContent = st.writing ? "being written" : "finished";
  rs.className = "chip " + (st.writing ? "writing" : "finished");
  document.body.dataset.latest = String(st.latest);
  document.body.dataset.frames = String(st.frames);
  const slider = $("slider");
  slider.max = String(Math.max(0, st.frames - 1));
  drawBars(st.scales);
  drawPlots(st);
  const newest = st.latest >= 0 ? st.latest : st.frames - 1;
  if ($("follow").checked && newest >= 0) {
    slider.value = String(newest);
    showFrame(newest);
  } else if (shown >= 0 && statusOf[shown] !== "refined") {
    showFrame(shown);  // its pictures change when it is reconstructed
  }
}

function poll() {
  fetch("/api/state", {cache: "no-store"})
    .then((r) => r.json())
    .then(update)
    .catch(() => { const rs = $("run-state"); rs.textContent = "connection lost"; rs.className = "chip lost"; })
    .finally(() => setTimeout(poll, POLL_MS));
}

for (const kind of KINDS) {
  const img = $("img-" + kind);
  img.addEventListener("load", () => { img.dataset.loaded = "1"; });
  img.addEventListener("error", () => { img.dataset.loaded = "error"; });
}
$("slider").addEventListener("input", (e) => {
  $("follow").checked = false;
  showFrame(Number(e.target.value));
});
$("follow").addEventListener("change", () => { if (state) update(state); });
$("turn").addEventListener("click", () => { turn = (turn + 1) % 4; showFrame(shown); });
poll();
