// riskstream analysts' UI: vanilla JS over the JSON API, no build step, no external assets.
"use strict";

const KEY_STORE = "riskstream.apiKey";
const ANALYST_STORE = "riskstream.analyst";
const PAGE = 25;
const ACTIONS = ["block", "review", "tag", "allow"];
const STATUSES = ["open", "confirmed_fraud", "false_positive"];
const STATUS_TEXT = { open: "Open", confirmed_fraud: "Confirmed fraud", false_positive: "False positive" };
const SVG_NS = "http://www.w3.org/2000/svg";

let pipeline = null;

// ---- small DOM helpers (text only: data never goes through innerHTML) ----------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function view() { return document.getElementById("view"); }

function show(...nodes) {
  const v = view();
  v.replaceChildren(...nodes);
}

function toast(text) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.classList.add("on");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove("on"), 3500);
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(".000Z", "Z");
}

function fmtNum(x) {
  if (x === null || x === undefined) return "—";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return x.toLocaleString("en-US");
  return x.toLocaleString("en-US", { maximumFractionDigits: 2 });
}

function badge(kind, text) { return h("span", { class: `badge ${kind}` }, text); }

// ---- the API ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, body: JSON.stringify(options.json) };
  }
  const resp = await fetch(path, { ...options, headers });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) {
    const msg = (body && body.error) || `HTTP ${resp.status}`;
    if (resp.status === 401) askForKey(msg);
    throw new ApiError(resp.status, msg);
  }
  return body;
}

function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

// ---- sign in ---------------------------------------------------------------------------

function askForKey(message) {
  const login = document.getElementById("login");
  login.hidden = false;
  view().hidden = true;
  document.getElementById("login-error").textContent =
    sessionStorage.getItem(KEY_STORE) ? message || "" : "";
  document.getElementById("api-key").focus();
}

function setupLogin() {
  document.getElementById("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = document.getElementById("api-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    document.getElementById("api-key").value = "";
    document.getElementById("login").hidden = true;
    view().hidden = false;
    start();
  });
  const out = document.getElementById("sign-out");
  out.addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    pipeline = null;
    out.hidden = true;
    askForKey("");
  });
}

// ---- routing ---------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/cases";
  const [path, query] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query || "") };
}

function go(path, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString() : "";
  location.hash = q ? `${path}?${q}` : path;
}

async function route() {
  if (!pipeline) return;
  document.getElementById("toast").classList.remove("on");
  const { parts, params } = parseHash();
  const section = parts[0] || "cases";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (section === "cases" && parts[1]) await renderCase(parts[1]);
    else if (section === "metrics") await renderMetrics(params);
    else if (section === "rules") await renderRules();
    else if (section === "lab") await renderLab(params);
    else if (section === "models") await renderModels();
    else await renderQueue(params);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) show(errorBox(err));
  }
}

// ---- the case queue ------------------------------------------------------------------

function select(id, label, options, value) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("select", { id, name: id },
      h("option", { value: "" }, "Any"),
      options.map((o) => h("option", { value: o, selected: o === value }, STATUS_TEXT[o] || o))));
}

function input(id, label, value, attrs = {}) {
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    h("input", { id, name: id, type: "text", value: value || "", ...attrs }));
}

async function renderQueue(params) {
  document.title = "riskstream — case queue";
  const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
  const filters = {
    rule: params.get("rule") || "", action: params.get("action") || "",
    status: params.get("status") || "", from: params.get("from") || "", to: params.get("to") || "",
  };
  const q = new URLSearchParams({ limit: PAGE, offset });
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  const form = h("form", { class: "filters card", "aria-label": "Filter cases" },
    select("f-rule", "Rule", pipeline.rules, filters.rule),
    select("f-action", "Action", ACTIONS, filters.action),
    select("f-status", "Status", STATUSES, filters.status),
    input("f-from", "Event time from", filters.from, { placeholder: "2026-01-01T00:00:00Z" }),
    input("f-to", "to", filters.to, { placeholder: "ISO-8601 or epoch ms" }),
    h("div", { class: "field actions" }, h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", class: "ghost", onclick: () => go("/cases") }, "Clear")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    go("/cases", { rule: val("f-rule"), action: val("f-action"), status: val("f-status"), from: val("f-from"), to: val("f-to") });
  });
  let page;
  try { page = await api(`/v1/cases?${q}`); } catch (err) { show(h("h1", {}, "Case queue"), form, errorBox(err)); return; }
  const rows = page.items.map((c) => h("tr", {},
    h("td", {}, h("a", { href: `#/cases/${encodeURIComponent(c.case_id)}`, class: "case-link" }, fmtTime(c.event_time))),
    h("td", {}, c.rule),
    h("td", {}, badge(c.action, c.action)),
    h("td", { class: "num" }, fmtNum(c.score)),
    h("td", {}, badge(c.status, STATUS_TEXT[c.status] || c.status)),
    h("td", { class: "event-brief" }, eventBrief(c.event))));
  const from = page.total ? offset + 1 : 0;
  const to = Math.min(offset + page.items.length, page.total);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: offset <= 0, onclick: () => go("/cases", { ...filters, offset: Math.max(0, offset - PAGE) }) }, "← Newer"),
    h("span", {}, `${fmtNum(from)}–${fmtNum(to)} of ${fmtNum(page.total)}`),
    h("button", { type: "button", disabled: offset + PAGE >= page.total, onclick: () => go("/cases", { ...filters, offset: offset + PAGE }) }, "Older →"));
  const table = page.items.length
    ? h("table", { class: "grid" },
      h("caption", { class: "sr-only" }, "Cases, newest event first"),
      h("thead", {}, h("tr", {}, ["Event time (UTC)", "Rule", "Action", "Score", "Status", "Event"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows))
    : h("p", { class: "empty" }, "No case matches these filters.");
  show(h("h1", {}, "Case queue"), form, table, pager);
}

function eventBrief(event) {
  const skip = new Set([pipeline.time_field, pipeline.id_field]);
  const keys = Object.keys(event || {}).filter((k) => !skip.has(k)).slice(0, 4);
  return keys.map((k) => `${k}=${event[k]}`).join("  ·  ");
}

// ---- one case ------------------------------------------------------------------------

function rawValue(k, v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  if (k === pipeline.time_field && typeof v === "number") return `${v} (${fmtTime(v)})`;
  return String(v);
}

function kvTable(caption, obj, sensitive, raw) {
  const rows = Object.entries(obj || {}).map(([k, v]) => h("tr", {},
    h("th", { scope: "row" }, k, sensitive && sensitive.includes(k) ? h("span", { class: "hint" }, " (sensitive)") : null),
    h("td", { class: typeof v === "number" ? "num" : "" }, raw ? rawValue(k, v) : fmtNum(v))));
  return h("table", { class: "kv" }, h("caption", {}, caption),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 2, class: "empty" }, "none"))));
}

async function renderCase(id) {
  const c = await api(`/v1/cases/${encodeURIComponent(id)}`);
  document.title = `riskstream — case ${c.rule}`;
  const analyst = h("input", { id: "analyst", name: "analyst", type: "text", required: true, autocomplete: "name", value: sessionStorage.getItem(ANALYST_STORE) || "" });
  const note = h("textarea", { id: "note", name: "note", rows: 3, maxlength: 4000 });
  const msg = h("p", { class: "error", role: "alert" });
  const decide = async (decision) => {
    const who = analyst.value.trim();
    if (!who) { msg.textContent = "Enter your name as the analyst first."; analyst.focus(); return; }
    if (decision === "note" && !note.value.trim()) { msg.textContent = "Write a note first."; note.focus(); return; }
    sessionStorage.setItem(ANALYST_STORE, who);
    try {
      await api(`/v1/cases/${encodeURIComponent(id)}/decision`, { method: "POST", json: { decision, analyst: who, note: note.value.trim() || null } });
      toast(decision === "note" ? "Note saved" : `Marked as ${STATUS_TEXT[decision].toLowerCase()}`);
      await renderCase(id);
    } catch (err) { msg.textContent = err.message; }
  };
  const panel = h("section", { class: "card decide", "aria-labelledby": "decide-title" },
    h("h2", { id: "decide-title" }, "Decision"),
    h("div", { class: "field" }, h("label", { for: "analyst" }, "Analyst"), analyst),
    h("div", { class: "field" }, h("label", { for: "note" }, "Note (optional)"), note),
    msg,
    h("div", { class: "buttons" },
      h("button", { type: "button", class: "danger", onclick: () => decide("confirmed_fraud") }, "Confirmed fraud"),
      h("button", { type: "button", class: "ok", onclick: () => decide("false_positive") }, "False positive"),
      h("button", { type: "button", class: "ghost", onclick: () => decide("note") }, "Add note")));
  const rule = c.rule_spec || {};
  const history = c.decisions.length
    ? h("ol", { class: "history" }, c.decisions.map((d) => h("li", {},
      badge(d.decision, STATUS_TEXT[d.decision] || "Note"), " ", h("strong", {}, d.analyst), ` · ${fmtTime(d.at_ms)}`,
      d.note ? h("p", {}, d.note) : null)))
    : h("p", { class: "empty" }, "No decision yet.");
  show(
    h("p", { class: "crumbs" }, h("a", { href: "#/cases" }, "← Case queue")),
    h("h1", {}, `Case: ${c.rule} `, badge(c.action, c.action), " ", badge(c.status, STATUS_TEXT[c.status] || c.status)),
    h("dl", { class: "facts" },
      h("dt", {}, "Case id"), h("dd", {}, h("code", {}, c.case_id)),
      h("dt", {}, "Event id"), h("dd", {}, c.event_id || "—"),
      h("dt", {}, "Event time"), h("dd", {}, fmtTime(c.event_time)),
      h("dt", {}, "Score"), h("dd", {}, fmtNum(c.score))),
    h("div", { class: "cols" },
      h("div", {},
        h("section", { class: "card", "aria-labelledby": "rule-title" },
          h("h2", { id: "rule-title" }, "Rule ", h("code", {}, c.rule)),
          h("pre", { class: "expr" }, rule.when || "(no longer in the spec)"),
          rule.description ? h("p", {}, rule.description) : null),
        h("section", { class: "card" }, kvTable("Features at the event", c.features)),
        h("section", { class: "card" }, kvTable("Event", c.event, pipeline.sensitive, true))),
      h("div", {}, panel,
        h("section", { class: "card", "aria-labelledby": "hist-title" }, h("h2", { id: "hist-title" }, "History"), history))));
}

// ---- start -----------------------------------------------------------------------------------

async function start() {
  try {
    pipeline = await api("/v1/pipeline");
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) show(errorBox(err));
    return;
  }
  document.getElementById("pipeline-name").textContent = pipeline.name;
  document.getElementById("engine-state").textContent = pipeline.runner === "none" ? "store only" : `engine ${pipeline.runner}`;
  document.getElementById("sign-out").hidden = !sessionStorage.getItem(KEY_STORE);
  await route();
}

window.addEventListener("hashchange", () => { route().then(() => view().focus({ preventScroll: true })); });
document.addEventListener("DOMContentLoaded", () => { setupLogin(); start(); });
