// API keys: issue (the secret is shown once), list, revoke.
import { api, badge, errorBox, fmtTime, h, mount, notice } from "./dom.js";
import { t } from "./i18n.js";

export async function render(main, _ctx, issued) {
  const res = await api("GET", "/keys");
  const name = h("input", { type: "text", maxLength: 200, placeholder: t("name"), dataset: { testid: "key-name" }, "aria-label": t("name") });
  const kind = h("select", { dataset: { testid: "key-kind" }, "aria-label": t("kind") },
    h("option", { value: "judge" }, t("judgeKind")), h("option", { value: "admin" }, t("adminKind")));
  const status = h("div", { class: "status" });
  const form = h("form", { class: "toolbar card", dataset: { testid: "key-form" }, onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const k = await api("POST", "/keys", { name: name.value.trim(), kind: kind.value });
      await render(main, _ctx, k);
    } catch (err) { mount(status, errorBox(err)); }
  } }, h("strong", {}, t("issueKey")), name, kind, h("button", { type: "submit", class: "primary", dataset: { testid: "key-issue" } }, t("issue")));

  const shown = issued ? h("section", { class: "card secret", dataset: { testid: "key-issued" } },
    notice("warn", t("keyShownOnce")),
    h("code", { class: "secret-value", dataset: { testid: "key-secret" } }, issued.key), " ",
    h("button", { type: "button", onclick: () => navigator.clipboard && navigator.clipboard.writeText(issued.key) }, t("copy"))) : null;

  const rows = res.items.map((k) => h("tr", { dataset: { testid: "key-row", id: k.id, revoked: String(k.revoked) } },
    h("td", {}, k.name || "–", k.id === res.current_key_id ? h("span", { class: "muted" }, " ", t("currentKey")) : null),
    h("td", {}, k.kind === "admin" ? t("adminKind") : t("judgeKind")),
    h("td", {}, h("code", {}, k.prefix, "…")),
    h("td", { class: "nowrap" }, fmtTime(k.created_at)),
    h("td", { class: "nowrap" }, fmtTime(k.last_used_at)),
    h("td", {}, k.revoked ? badge(t("revoked"), "muted") : badge(t("active"), "ok")),
    h("td", {}, k.revoked ? null : h("button", { type: "button", class: "danger", dataset: { testid: "key-revoke" }, onclick: async () => {
      if (!window.confirm(t("confirmRevoke", { p: k.prefix }))) return;
      try { await api("DELETE", `/keys/${encodeURIComponent(k.id)}`); await render(main, _ctx); }
      catch (err) { mount(status, errorBox(err)); }
    } }, t("revoke")))));
  mount(main, h("h1", {}, t("keys")), form, shown, status,
    h("table", { class: "table", dataset: { testid: "key-table" } },
      h("thead", {}, h("tr", {}, ...["name", "kind", "prefix", "created", "lastUsed", "status", ""].map((k) => h("th", {}, k ? t(k) : "")))),
      h("tbody", {}, rows)));
}
