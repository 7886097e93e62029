// Boot, sign-in, the page shell (navigation, tenant, language) and hash routing.
import { api, clear, errorBox, h, mount, notice, setCsrf } from "./dom.js";
import { t, toggleLang } from "./i18n.js";
import * as overview from "./overview.js";
import * as logs from "./logs.js";
import * as categories from "./categories.js";
import * as keys from "./keys.js";

const root = document.getElementById("app");
let session = null;
let expiryTimer = null;

const ROUTES = [
  [/^#\/overview$/, overview.render, "overview"],
  [/^#\/logs$/, logs.renderList, "logs"],
  [/^#\/logs\/([A-Za-z0-9_-]+)$/, logs.renderDetail, "logs"],
  [/^#\/categories$/, categories.renderList, "categories"],
  [/^#\/categories\/([a-z][a-z0-9_]*)$/, categories.renderEditor, "categories"],
  [/^#\/keys$/, keys.render, "keys"],
];

function langButton(onToggle) {
  return h("button", { type: "button", class: "link lang", dataset: { testid: "lang" },
    onclick: () => { toggleLang(); onToggle(); } }, t("lang"));
}

async function boot(message) {
  document.title = t("title");
  let state;
  try {
    state = await api("GET", "/session");
  } catch (err) {
    mount(root, notice("error", String(err.message || err)));
    return;
  }
  setCsrf(state.csrf);
  if (!state.signed_in) {
    session = null;
    const expired = ["session_expired", "session_revoked"].includes(state.reason);
    renderLogin(message || (expired ? t("sessionExpired") : null));
    return;
  }
  session = state;
  scheduleExpiry();
  if (!location.hash || location.hash === "#/" || location.hash === "#/login") location.hash = "#/overview";
  renderShell();
}

function scheduleExpiry() {
  clearTimeout(expiryTimer);
  const ms = session.expires_at * 1000 - Date.now();
  expiryTimer = setTimeout(() => boot(t("sessionExpired")), Math.max(0, Math.min(ms, 2 ** 31 - 1)));
}

function renderLogin(message) {
  const credential = h("input", { type: "password", id: "credential", name: "credential", required: true,
    autocomplete: "off", spellcheck: false, dataset: { testid: "credential" } });
  const tenant = h("input", { type: "text", id: "tenant-id", name: "tenant_id", autocomplete: "off",
    dataset: { testid: "tenant-id" } });
  const status = h("div", { class: "status" }, message ? notice("warn", message) : null);
  const form = h("form", { class: "card login", dataset: { testid: "login-form" }, onsubmit: async (ev) => {
    ev.preventDefault();
    clear(status);
    try {
      const res = await api("POST", "/login", { credential: credential.value, tenant_id: tenant.value.trim() || null });
      credential.value = "";
      session = res;
      setCsrf(res.csrf);
      scheduleExpiry();
      location.hash = "#/overview";
      renderShell();
    } catch (err) {
      status.append(errorBox(err));
    }
  } },
    h("h1", {}, t("title")),
    h("p", { class: "muted" }, t("signInHelp")),
    h("label", { htmlFor: "credential" }, t("credential")), credential,
    h("label", { htmlFor: "tenant-id" }, t("tenantIdOpt")), tenant,
    h("button", { type: "submit", class: "primary", dataset: { testid: "signin" } }, t("signIn")),
    status,
    langButton(() => renderLogin(message)));
  mount(root, h("main", { class: "login-page" }, form));
  credential.focus();
}

async function tenantPicker() {
  const label = h("span", { class: "tenant", dataset: { testid: "tenant-name" } },
    session.tenant ? session.tenant.name : "–");
  if (session.role !== "platform_admin") return h("div", { class: "tenant-box" }, t("tenant"), ": ", label);
  const select = h("select", { dataset: { testid: "tenant-select" }, "aria-label": t("tenant"),
    onchange: async () => {
      const res = await api("POST", "/tenant", { tenant_id: select.value });
      session = res;
      setCsrf(res.csrf);
      renderShell();
    } });
  try {
    const list = await api("GET", "/tenants");
    for (const tn of list.items) {
      select.append(h("option", { value: tn.id, selected: session.tenant && tn.id === session.tenant.id },
        `${tn.name} (${tn.id.slice(0, 8)})`));
    }
  } catch (err) { /* the picker stays empty; the page below shows the error */ }
  return h("div", { class: "tenant-box" }, t("tenant"), ": ", select);
}

async function renderShell() {
  const nav = h("nav", { "aria-label": "main" },
    ...["overview", "logs", "categories", "keys"].map((name) =>
      h("a", { href: "#/" + name, dataset: { nav: name, testid: "nav-" + name } }, t(name))));
  const signOut = h("button", { type: "button", class: "link", dataset: { testid: "signout" }, onclick: async () => {
    await api("POST", "/logout").catch(() => null);
    session = null;
    location.hash = "#/login";
    boot();
  } }, t("signOut"));
  const header = h("header", { class: "top" },
    h("strong", { class: "brand" }, t("title")), nav,
    h("div", { class: "right" }, await tenantPicker(), langButton(renderShell), signOut));
  const main = h("main", { id: "view" });
  mount(root, header, main);
  route();
}

let routed = null;

async function route(ev) {
  const main = document.getElementById("view");
  if (!main || !session) return;
  // renderShell already routed to this hash; the hashchange event that follows it is a repeat.
  if (ev && ev.type === "hashchange" && routed === location.hash) return;
  routed = location.hash;
  const hash = location.hash.split("?")[0];
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  for (const [re, render, section] of ROUTES) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === section);
    delete main.dataset.ready;
    // Each navigation renders into its own view. A slower, older render that finishes after a newer
    // navigation (reset, then filter at once) mounts into a view no longer on the page, so it
    // cannot overwrite the newer result.
    const view = h("div", { class: "view" }, h("p", { class: "muted" }, t("loading")));
    mount(main, view);
    try {
      await render(view, { id: m[1], params, session });
    } catch (err) {
      if (err.status === 401) return;
      mount(view, notice("error", `${t("error")}: ${err.message}`));
    }
    if (view.isConnected) main.dataset.ready = hash;
    return;
  }
  location.hash = "#/overview";
}

window.addEventListener("hashchange", route);
window.addEventListener("gr-signed-out", () => { if (session) { session = null; boot(); } });
boot();
