// DOM and HTTP helpers. All text reaches the page through text nodes or element properties, never
// through innerHTML: the judged texts in the log are attacker-controlled.
import { currentLang, errorText, t } from "./i18n.js";

export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k in el && k !== "list") el[k] = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) { el.replaceChildren(); return el; }

// Replace an element's children (null and false children are skipped, unlike Element.append).
export function mount(el, ...children) { el.replaceChildren(); append(el, children); return el; }

let csrf = null;
export function setCsrf(token) { csrf = token; }

export class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf || "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch("/dashboard/api" + path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const e = data && data.error ? data.error : {};
    if (r.status === 401 && path !== "/login") window.dispatchEvent(new CustomEvent("gr-signed-out", { detail: e.code }));
    throw new ApiError(r.status, e.code || "http_" + r.status, e.message || r.statusText);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? "?" + s : "";
}

const locale = () => (currentLang() === "en" ? "en-GB" : "ja-JP");
export function fmtTime(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(locale(), { year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
export function fmtBucket(epochS, stepS) {
  const d = new Date(epochS * 1000);
  const opts = stepS >= 86400 ? { month: "2-digit", day: "2-digit" } : { month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
  return d.toLocaleString(locale(), opts);
}
export const fmtPct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(1) + "%");
export const fmtMs = (x) => (x === null || x === undefined ? "–" : Math.round(x) + " ms");
export const fmtScore = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));
export const fmtInt = (x) => Number(x || 0).toLocaleString(locale());

export function notice(kind, text) {
  return h("p", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, text);
}

export function errorBox(err) {
  return notice("error", `${t("error")}: ${errorText(err.code, err.message || String(err))}`);
}

// <input type="datetime-local"> value (local time) <-> ISO 8601 with offset.
export function localToIso(v) { return v ? new Date(v).toISOString() : ""; }
export function isoToLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function badge(text, kind) { return h("span", { class: "badge " + (kind || "") }, text); }
