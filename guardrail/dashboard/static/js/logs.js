// Log explorer: filters in the URL hash, keyset pages, CSV export, and one judgement in detail.
import { api, badge, errorBox, fmtMs, fmtScore, fmtTime, h, isoToLocal, localToIso, mount, query } from "./dom.js";
import { t } from "./i18n.js";

const FILTERS = ["since", "until", "category", "flagged", "direction", "q"];
let pager = { key: null, cursors: [null], page: 0 };
let categoryNames = {};

async function loadCategories() {
  const res = await api("GET", "/categories");
  categoryNames = Object.fromEntries(res.items.map((c) => [c.id, c.name]));
  return res.items;
}

function filtersFrom(params) {
  const f = {};
  for (const k of FILTERS) if (params.get(k)) f[k] = params.get(k);
  return f;
}

function select(name, value, options, label) {
  return h("select", { name, "aria-label": label, dataset: { testid: "f-" + name } },
    options.map(([v, text]) => h("option", { value: v, selected: v === (value || "") }, text)));
}

function filterForm(f, cats) {
  const form = h("form", { class: "toolbar filters", dataset: { testid: "log-filters" }, onsubmit: (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const k of FILTERS) {
      let v = (data.get(k) || "").trim();
      if ((k === "since" || k === "until") && v) v = localToIso(v);
      if (v) next[k] = v;
    }
    location.hash = "#/logs" + query(next);
  } },
    h("label", {}, t("since"), h("input", { type: "datetime-local", name: "since", value: isoToLocal(f.since), dataset: { testid: "f-since" } })),
    h("label", {}, t("until"), h("input", { type: "datetime-local", name: "until", value: isoToLocal(f.until), dataset: { testid: "f-until" } })),
    select("category", f.category, [["", `${t("category")}: ${t("all")}`], ...cats.map((c) => [c.id, `${c.name} (${c.id})`])], t("category")),
    select("flagged", f.flagged, [["", `${t("flagged")}: ${t("all")}`], ["true", t("onlyFlagged")], ["false", t("notFlagged")]], t("flagged")),
    select("direction", f.direction, [["", `${t("direction")}: ${t("all")}`], ["input", t("input")], ["output", t("output")]], t("direction")),
    h("input", { type: "search", name: "q", value: f.q || "", placeholder: t("search"), maxLength: 200, dataset: { testid: "f-q" }, "aria-label": t("search") }),
    h("button", { type: "submit", class: "primary", dataset: { testid: "f-apply" } }, t("filter")),
    h("a", { href: "#/logs", class: "button", dataset: { testid: "f-reset" } }, t("reset")));
  return form;
}

function row(j, backQuery) {
  const cats = (j.flagged_categories || []).map((c) => badge(categoryNames[c] || c, "flag"));
  const text = j.text === null ? h("span", { class: "muted" }, `(${j.text_mode})`) : j.text;
  return h("tr", { class: "clickable", dataset: { testid: "log-row", id: j.id }, tabIndex: 0,
    onclick: () => { location.hash = `#/logs/${j.id}${backQuery}`; },
    onkeydown: (ev) => { if (ev.key === "Enter") location.hash = `#/logs/${j.id}${backQuery}`; } },
    h("td", { class: "nowrap" }, fmtTime(j.created_at)),
    h("td", {}, t(j.direction)),
    h("td", {}, j.flagged ? badge(t("flagged"), "flag") : badge("OK", "ok")),
    h("td", {}, cats),
    h("td", { class: "text-cell", dataset: { testid: "log-text" } }, text),
    h("td", { class: "num nowrap" }, fmtMs(j.latency_ms)));
}

export async function renderList(main, { params, session }) {
  const f = filtersFrom(params);
  const key = JSON.stringify([session.tenant && session.tenant.id, f]);
  if (pager.key !== key) pager = { key, cursors: [null], page: 0 };
  const cats = await loadCategories();
  const res = await api("GET", "/judgements" + query({ ...f, cursor: pager.cursors[pager.page], limit: 50 }));
  pager.cursors[pager.page + 1] = res.next_cursor;
  const backQuery = query(f);
  const go = (delta) => { pager.page += delta; renderList(main, { params, session }).catch((e) => mount(main, errorBox(e))); };
  const table = res.items.length
    ? h("table", { class: "table logs", dataset: { testid: "log-table" } },
      h("thead", {}, h("tr", {}, ...["time", "direction", "flagged", "flaggedCats", "text", "latency"].map((k) => h("th", {}, t(k))))),
      h("tbody", {}, res.items.map((j) => row(j, backQuery))))
    : h("p", { class: "muted", dataset: { testid: "log-empty" } }, t("noRows"));
  mount(main, 
    filterForm(f, cats),
    h("div", { class: "toolbar" },
      h("button", { type: "button", disabled: pager.page === 0, dataset: { testid: "page-prev" }, onclick: () => go(-1) }, t("prev")),
      h("span", { class: "muted", dataset: { testid: "page-no" } }, String(pager.page + 1)),
      h("button", { type: "button", disabled: !res.next_cursor, dataset: { testid: "page-next" }, onclick: () => go(1) }, t("next")),
      h("a", { class: "button right", href: "/dashboard/api/judgements.csv" + query(f), download: "", dataset: { testid: "export-csv" } }, t("exportCsv"))),
    table);
  main.dataset.rows = String(res.items.length);
}

function meta(label, value, testid) {
  return [h("dt", {}, label), h("dd", { dataset: { testid } }, value)];
}

export async function renderDetail(main, { id, params }) {
  await loadCategories();
  const j = await api("GET", "/judgements/" + encodeURIComponent(id));
  const scores = Object.entries(j.scores || {});
  mount(main, 
    h("a", { href: "#/logs" + query(filtersFrom(params)), class: "button", dataset: { testid: "back" } }, "← ", t("back")),
    h("h1", {}, t("detail")),
    h("section", { class: "card" }, h("dl", { class: "meta" },
      meta(t("id"), h("code", {}, j.id), "d-id"),
      meta(t("time"), fmtTime(j.created_at), "d-time"),
      meta(t("direction"), t(j.direction), "d-direction"),
      meta(t("flagged"), j.flagged ? badge(t("flagged"), "flag") : badge("OK", "ok"), "d-flagged"),
      meta(t("model"), j.model, "d-model"),
      meta(t("latency"), fmtMs(j.latency_ms), "d-latency"),
      meta(t("cached"), j.cached ? t("yes") : t("no"), "d-cached"),
      meta(t("apiKey"), j.api_key_id || "–", "d-key"),
      meta(t("textMode"), j.text_mode, "d-mode"))),
    h("section", { class: "card" }, h("h2", {}, t("text")),
      h("pre", { class: "judged-text", dataset: { testid: "d-text" } }, j.text ?? `(${j.text_mode}: ${j.text_sha256})`),
      j.prompt ? [h("h2", {}, t("prompt")), h("pre", { class: "judged-text", dataset: { testid: "d-prompt" } }, j.prompt)] : null,
      h("h2", {}, t("reason")), h("p", { dataset: { testid: "d-reason" } }, j.reason || "–")),
    h("section", { class: "card" }, h("h2", {}, t("score")),
      h("table", { class: "table", dataset: { testid: "d-scores" } },
        h("thead", {}, h("tr", {}, h("th", {}, t("category")), h("th", { class: "num" }, t("score")), h("th", {}, ""),
          h("th", { class: "num" }, t("threshold")), h("th", {}, t("flagged")))),
        h("tbody", {}, scores.map(([cid, s]) => h("tr", { dataset: { testid: "d-score-row", category: cid } },
          h("td", {}, (s && s.name) || categoryNames[cid] || cid, " ", h("code", {}, cid)),
          h("td", { class: "num" }, fmtScore(s && s.score)),
          h("td", {}, h("meter", { min: 0, max: 1, value: (s && s.score) || 0, low: (s && s.threshold) || 0.5, high: (s && s.threshold) || 0.5, optimum: 0 })),
          h("td", { class: "num" }, fmtScore(s && s.threshold)),
          h("td", {}, s && s.flagged ? badge(t("flagged"), "flag") : "–")))))));
}
