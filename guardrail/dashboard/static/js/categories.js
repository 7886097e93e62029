// Category list and editor, with the playground that judges the draft before it is saved.
import { api, badge, clear, errorBox, fmtScore, h, mount, notice } from "./dom.js";
import { t } from "./i18n.js";

export async function renderList(main) {
  const res = await api("GET", "/categories");
  mount(main, 
    h("div", { class: "toolbar" }, h("h1", {}, t("categories")),
      h("a", { href: "#/categories/new", class: "button primary right", dataset: { testid: "cat-new" } }, t("newCategory"))),
    h("table", { class: "table", dataset: { testid: "cat-table" } },
      h("thead", {}, h("tr", {}, ...["id", "name", "threshold", "status", "kind", ""].map((k) => h("th", {}, k ? t(k) : "")))),
      h("tbody", {}, res.items.map((c) => h("tr", { dataset: { testid: "cat-row", id: c.id } },
        h("td", {}, h("code", {}, c.id)), h("td", {}, c.name), h("td", { class: "num" }, fmtScore(c.threshold)),
        h("td", {}, c.enabled ? badge(t("enabled"), "ok") : badge(t("disabled"), "muted")),
        h("td", {}, c.default ? t("defaultCat") : t("customCat")),
        h("td", {}, h("a", { href: `#/categories/${c.id}`, dataset: { testid: "cat-edit-" + c.id } }, t("edit"))))))));
}

const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);

function field(label, input) { return h("label", { class: "field" }, h("span", {}, label), input); }

export async function renderEditor(main, { id }) {
  const isNew = id === "new";
  const res = await api("GET", "/categories");
  const saved = isNew ? null : res.items.find((c) => c.id === id);
  if (!isNew && !saved) { mount(main, notice("error", `${t("error")}: ${id}`)); return; }
  const c = saved || { id: "", name: "", definition: "", threshold: 0.5, enabled: true, default: false, examples: { positive: [], negative: [] } };

  const f = {
    id: h("input", { type: "text", value: c.id, disabled: !isNew, required: true, pattern: "[a-z][a-z0-9_]{1,63}", dataset: { testid: "cat-id" } }),
    name: h("input", { type: "text", value: c.name, required: true, maxLength: 100, dataset: { testid: "cat-name" } }),
    definition: h("textarea", { rows: 4, required: true, maxLength: 1000, value: c.definition, dataset: { testid: "cat-definition" } }),
    threshold: h("input", { type: "number", min: 0, max: 1, step: 0.01, value: c.threshold, required: true, dataset: { testid: "cat-threshold" } }),
    enabled: h("input", { type: "checkbox", checked: c.enabled, dataset: { testid: "cat-enabled" } }),
    positive: h("textarea", { rows: 3, value: (c.examples.positive || []).join("\n"), dataset: { testid: "cat-positive" } }),
    negative: h("textarea", { rows: 3, value: (c.examples.negative || []).join("\n"), dataset: { testid: "cat-negative" } }),
  };
  const draft = () => ({ name: f.name.value.trim(), definition: f.definition.value.trim(), threshold: Number(f.threshold.value),
    enabled: f.enabled.checked, examples: { positive: lines(f.positive.value), negative: lines(f.negative.value) } });
  const status = h("div", { class: "status", dataset: { testid: "cat-status" } });

  const form = h("form", { class: "card editor", dataset: { testid: "cat-form" }, onsubmit: async (ev) => {
    ev.preventDefault();
    clear(status);
    try {
      if (isNew) {
        await api("POST", "/categories", { id: f.id.value.trim(), ...draft() });
        location.hash = `#/categories/${f.id.value.trim()}`;
        return;
      }
      const updated = await api("PATCH", `/categories/${encodeURIComponent(c.id)}`, draft());
      Object.assign(c, updated);
      status.append(notice("ok", t("saved")));
    } catch (err) { status.append(errorBox(err)); }
  } },
    h("h1", {}, isNew ? t("newCategory") : `${c.name}`, " ", isNew ? null : h("code", {}, c.id)),
    field(t("id"), f.id), field(t("name"), f.name), field(t("definition"), f.definition),
    h("div", { class: "row" }, field(t("threshold"), f.threshold), h("label", { class: "check" }, f.enabled, " ", t("enabled"))),
    field(t("positives"), f.positive), field(t("negatives"), f.negative),
    c.default ? h("p", { class: "muted small" }, t("defaultNote")) : null,
    h("div", { class: "toolbar" },
      h("button", { type: "submit", class: "primary", dataset: { testid: "cat-save" } }, t("save")),
      !isNew && !c.default ? h("button", { type: "button", class: "danger", dataset: { testid: "cat-delete" }, onclick: async () => {
        if (!window.confirm(t("confirmDelete"))) return;
        try { await api("DELETE", `/categories/${encodeURIComponent(c.id)}`); location.hash = "#/categories"; }
        catch (err) { mount(status, errorBox(err)); }
      } }, t("delete")) : null),
    status);

  mount(main, h("a", { href: "#/categories", class: "button", dataset: { testid: "back" } }, "← ", t("back")),
    h("div", { class: "editor-grid" }, form, playground(c, isNew, draft)));
}

function verdictCell(v) {
  if (!v) return h("td", { class: "num muted" }, "–");
  return h("td", { class: "num" + (v.flagged ? " flagged" : "") }, fmtScore(v.score), v.flagged ? " ⚑" : "");
}

function playground(c, isNew, draft) {
  const text = h("textarea", { rows: 3, maxLength: 2048, dataset: { testid: "pg-text" }, placeholder: t("testText") });
  const direction = h("select", { dataset: { testid: "pg-direction" }, "aria-label": t("direction") },
    h("option", { value: "input" }, t("input")), h("option", { value: "output" }, t("output")));
  const out = h("div", { dataset: { testid: "pg-result" } });
  const run = h("button", { type: "button", class: "primary", dataset: { testid: "pg-run" }, onclick: async () => {
    const d = draft();
    delete out.dataset.done;
    mount(out, h("p", { class: "muted" }, t("running")));
    run.disabled = true;
    try {
      const res = await api("POST", "/playground", { category_id: isNew ? null : c.id, name: d.name, definition: d.definition,
        threshold: d.threshold, text: text.value.trim() || null, direction: direction.value, examples: d.examples });
      mount(out, ...results(res));
      out.dataset.done = "1";
    } catch (err) { mount(out, errorBox(err)); }
    run.disabled = false;
  } }, t("tryDraft"));
  return h("section", { class: "card playground", dataset: { testid: "playground" } }, h("h2", {}, t("playground")),
    field(t("testText"), text), h("div", { class: "toolbar" }, direction, run), out);
}

function results(res) {
  const parts = [];
  const head = h("tr", {}, h("th", {}, t("text")), h("th", {}, t("expected")), h("th", { class: "num" }, t("before")),
    h("th", { class: "num" }, t("after")), h("th", {}, t("change")));
  if (res.text) {
    parts.push(h("table", { class: "table", dataset: { testid: "pg-text-result" } }, h("thead", {}, head.cloneNode(true)),
      h("tbody", {}, h("tr", {}, h("td", { class: "text-cell" }, res.text.text), h("td", {}, "–"),
        verdictCell(res.text.before), verdictCell(res.text.after), h("td", {}, "")))));
  }
  const s = res.summary;
  if (!s.total) { parts.push(h("p", { class: "muted" }, t("noExamples"))); return parts; }
  if (s.degraded) parts.push(notice("error", t("degradedWarn", { n: s.degraded })));
  parts.push(h("p", { dataset: { testid: "pg-summary" } }, t("summary", { b: s.before_correct ?? "–", a: s.after_correct, t: s.total })));
  parts.push(h("table", { class: "table", dataset: { testid: "pg-examples" } }, h("thead", {}, head),
    h("tbody", {}, res.examples.map((e) => h("tr", { class: "change-" + e.change, dataset: { testid: "pg-example", change: e.change } },
      h("td", { class: "text-cell" }, e.text), h("td", {}, t(e.expected)), verdictCell(e.before), verdictCell(e.after),
      h("td", {}, badge(t(e.change), e.change)))))));
  return parts;
}
