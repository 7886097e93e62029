// Overview: volume, flag rates per category, latency p50/p95 and cache hit rate for a time range.
import { api, badge, fmtBucket, fmtInt, fmtMs, fmtPct, h, isoToLocal, localToIso, mount, query } from "./dom.js";
import { t } from "./i18n.js";

const PALETTE = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7a8a", "#6e7781",
  "#fb8500", "#023e8a"];
let charts = [];
let state = { range: "24h", since: "", until: "" };

function kpi(label, value, testid) {
  return h("div", { class: "kpi", dataset: { testid } }, h("div", { class: "kpi-label" }, label),
    h("div", { class: "kpi-value" }, value));
}

function chartCard(title, testid) {
  const canvas = h("canvas", { role: "img", "aria-label": title });
  return [h("section", { class: "card chart", dataset: { testid } }, h("h2", {}, title), h("div", { class: "canvas-box" }, canvas)), canvas];
}

function lineChart(canvas, labels, datasets, yOpts = {}) {
  const Chart = window.Chart;
  if (!Chart) return;
  charts.push(new Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: { animation: false, responsive: true, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
      scales: { y: { beginAtZero: true, ...yOpts } }, plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } } },
  }));
}

function rangeForm(main, params) {
  const presets = ["1h", "24h", "7d", "30d", "90d", "custom"];
  const since = h("input", { type: "datetime-local", value: state.since, dataset: { testid: "ov-since" }, "aria-label": t("since") });
  const until = h("input", { type: "datetime-local", value: state.until, dataset: { testid: "ov-until" }, "aria-label": t("until") });
  const custom = h("span", { class: "custom-range" + (state.range === "custom" ? "" : " hidden") },
    t("since"), " ", since, " ", t("until"), " ", until,
    h("button", { type: "button", dataset: { testid: "ov-apply" }, onclick: () => {
      state = { range: "custom", since: since.value, until: until.value };
      render(main, params);
    } }, t("apply")));
  const buttons = presets.map((p) => h("button", { type: "button", class: "seg" + (state.range === p ? " active" : ""),
    dataset: { testid: "range-" + p }, onclick: () => {
      if (p === "custom") { custom.classList.remove("hidden"); return; }
      state = { range: p, since: "", until: "" };
      render(main, params);
    } }, t(p === "custom" ? "custom" : "r" + p)));
  return h("div", { class: "toolbar" }, h("span", { class: "muted" }, t("range")), ...buttons, custom);
}

let generation = 0;

export async function render(main, params) {
  const mine = ++generation;
  const offset = -new Date().getTimezoneOffset() * 60;
  const q = state.range === "custom"
    ? { range: "custom", since: localToIso(state.since), until: localToIso(state.until), offset_s: offset }
    : { range: state.range, offset_s: offset };
  const d = await api("GET", "/overview" + query(q));
  if (mine !== generation || !main.isConnected) return; // a newer render owns the page
  for (const c of charts) c.destroy();
  charts = [];
  const tot = d.totals;
  const labels = d.buckets.map((b) => fmtBucket(b.t, d.step_s));
  const names = d.category_names || {};

  const [volCard, volCanvas] = chartCard(t("volumeChart"), "chart-volume");
  const [catCard, catCanvas] = chartCard(t("categoryRateChart"), "chart-categories");
  const [latCard, latCanvas] = chartCard(t("latencyChart"), "chart-latency");
  const [cacheCard, cacheCanvas] = chartCard(t("cacheChart"), "chart-cache");
  const catRows = Object.entries(d.categories).sort((a, b) => b[1].flagged - a[1].flagged).map(([id, c]) =>
    h("tr", {}, h("td", {}, names[id] || id, " ", h("code", {}, id)), h("td", { class: "num" }, fmtInt(c.flagged)),
      h("td", { class: "num" }, fmtPct(tot.judgements ? c.flagged / tot.judgements : 0))));

  mount(main, 
    rangeForm(main, params),
    h("p", { class: "muted small" }, `${isoToLocal(d.since).replace("T", " ")} – ${isoToLocal(d.until).replace("T", " ")}`),
    h("div", { class: "kpis" },
      kpi(t("judgements"), fmtInt(tot.judgements), "kpi-judgements"),
      kpi(t("flagRate"), `${fmtPct(tot.flag_rate)} (${fmtInt(tot.flagged)})`, "kpi-flag-rate"),
      kpi(t("p50"), fmtMs(tot.p50_ms), "kpi-p50"),
      kpi(t("p95"), fmtMs(tot.p95_ms), "kpi-p95"),
      kpi(t("cacheHitRate"), fmtPct(tot.cache_hit_rate), "kpi-cache")),
    h("div", { class: "grid" }, volCard, catCard, latCard, cacheCard),
    h("section", { class: "card" }, h("h2", {}, t("perCategory")),
      catRows.length ? h("table", { class: "table", dataset: { testid: "category-table" } },
        h("thead", {}, h("tr", {}, h("th", {}, t("category")), h("th", { class: "num" }, t("flagged")), h("th", { class: "num" }, t("flagRate")))),
        h("tbody", {}, catRows)) : badge("0", "muted")));

  lineChart(volCanvas, labels, [
    { label: t("judgements"), data: d.buckets.map((b) => b.judgements), borderColor: PALETTE[0], backgroundColor: PALETTE[0] + "33", fill: true, tension: 0.2 },
    { label: t("flagged"), data: d.buckets.map((b) => b.flagged), borderColor: PALETTE[1], backgroundColor: PALETTE[1], tension: 0.2 },
  ]);
  lineChart(catCanvas, labels, Object.entries(d.categories).map(([id, c], i) => ({
    label: names[id] || id, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length], tension: 0.2,
    data: c.series.map((n, j) => (d.buckets[j].judgements ? (100 * n) / d.buckets[j].judgements : null)),
  })), { ticks: { callback: (v) => v + "%" } });
  lineChart(latCanvas, labels, [
    { label: "p50", data: d.buckets.map((b) => b.p50_ms), borderColor: PALETTE[2], backgroundColor: PALETTE[2], tension: 0.2, spanGaps: true },
    { label: "p95", data: d.buckets.map((b) => b.p95_ms), borderColor: PALETTE[3], backgroundColor: PALETTE[3], tension: 0.2, spanGaps: true },
  ]);
  lineChart(cacheCanvas, labels, [
    { label: t("cacheHitRate"), data: d.buckets.map((b) => (b.judgements ? (100 * b.cached) / b.judgements : null)),
      borderColor: PALETTE[4], backgroundColor: PALETTE[4], tension: 0.2, spanGaps: true },
  ], { max: 100, ticks: { callback: (v) => v + "%" } });
}
