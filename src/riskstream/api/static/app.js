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

// ---- metric explorer ---------------------------------------------------------------------

function isoOf(ms) { return new Date(ms).toISOString().replace(".000Z", "Z"); }

async function renderMetrics(params) {
  document.title = "riskstream — metric explorer";
  const names = Object.keys(pipeline.metrics);
  const end = pipeline.watermark ? Math.ceil((pipeline.watermark + 1) / 60000) * 60000 : Date.now();
  const state = {
    metric: params.get("metric") || names[0] || "", key: params.get("key") || "",
    from: params.get("from") || isoOf(end - 3600000), to: params.get("to") || isoOf(end),
    step: params.get("step") || "", show: params.get("show") || "count",
  };
  const form = h("form", { class: "filters card", "aria-label": "Metric query" },
    h("div", { class: "field" }, h("label", { for: "m-metric" }, "Metric"),
      h("select", { id: "m-metric" }, names.map((n) => h("option", { value: n, selected: n === state.metric }, n)))),
    input("m-key", "Key", state.key, { required: true, placeholder: "e.g. a card id" }),
    input("m-from", "From", state.from), input("m-to", "To", state.to),
    h("div", { class: "field" }, h("label", { for: "m-step" }, "Step"),
      h("select", { id: "m-step" }, ["", "1s", "10s", "1m", "5m", "15m", "1h", "6h", "1d", "1w"].map((o) =>
        h("option", { value: o, selected: o === state.step }, o || "auto")))),
    h("div", { class: "field" }, h("label", { for: "m-show" }, "Chart"),
      h("select", { id: "m-show" }, ["count", "sum"].map((o) => h("option", { value: o, selected: o === state.show }, o)))),
    h("div", { class: "field actions" }, h("button", { type: "submit", class: "primary" }, "Show")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const val = (id) => form.querySelector(`#${id}`).value.trim();
    go("/metrics", { metric: val("m-metric"), key: val("m-key"), from: val("m-from"), to: val("m-to"), step: val("m-step"), show: val("m-show") });
  });
  const meta = pipeline.metrics[state.metric];
  const intro = h("p", { class: "hint" }, meta ? `Key: ${meta.dimension.join(" | ")}${meta.value ? ` · value: ${meta.value}` : ""} · stats: ${meta.stats.join(", ")}` : "");
  if (!state.key || !meta) { show(h("h1", {}, "Metric explorer"), form, intro, h("p", { class: "empty" }, "Choose a metric and a key.")); return; }
  const base = `/v1/metrics/${encodeURIComponent(state.metric)}/${encodeURIComponent(state.key)}`;
  const q = new URLSearchParams({ from: state.from, to: state.to });
  const sq = new URLSearchParams({ from: state.from, to: state.to });
  if (state.step) sq.set("step", state.step);
  let total, series;
  try {
    [total, series] = await Promise.all([api(`${base}?${q}`), api(`${base}/series?${sq}`)]);
  } catch (err) { show(h("h1", {}, "Metric explorer"), form, intro, errorBox(err)); return; }
  const stats = Object.entries(total.stats).filter(([k]) => k !== "distribution");
  const tiles = h("ul", { class: "tiles", "aria-label": "Stats over the range" },
    stats.map(([k, v]) => h("li", {}, h("span", { class: "tile-label" }, k), h("span", { class: "tile-value" }, fmtNum(v)))));
  const field = state.show === "sum" && series.buckets.some((b) => b.sum !== null) ? "sum" : "count";
  show(h("h1", {}, "Metric explorer"), form, intro,
    h("section", { class: "card", "aria-labelledby": "res-title" },
      h("h2", { id: "res-title" }, `${state.metric} · `, h("code", {}, state.key)),
      h("p", { class: "hint" }, `Effective range ${total.effective.from_iso} → ${total.effective.to_iso}`,
        ` · resolution ${total.resolution}${total.exact ? "" : " (rounded to retained buckets)"} · ${total.buckets} stitched segment(s)`),
      tiles),
    h("section", { class: "card", "aria-labelledby": "chart-title" },
      h("h2", { id: "chart-title" }, `${field} per ${series.step} (from the ${series.tier} tier)`),
      barChart(series, field)));
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function barChart(series, field) {
  const W = 960, H = 300, L = 64, R = 16, T = 12, B = 48;
  const data = series.buckets;
  const values = data.map((b) => (b[field] === null ? 0 : b[field]));
  const max = niceMax(Math.max(0, ...values));
  const bw = (W - L - R) / Math.max(1, data.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-labelledby": "chart-desc" },
    s("title", { id: "chart-desc" }, `${field} per ${series.step} for ${series.metric} ${series.key}: ${data.length} steps, max ${fmtNum(Math.max(0, ...values))}`));
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: L - 8, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmtNum(v)));
  }
  const labelEvery = Math.max(1, Math.ceil(data.length / 8));
  data.forEach((b, i) => {
    const v = values[i];
    const x = L + i * bw;
    if (!b.retained) svg.append(s("rect", { x, y: T, width: bw, height: H - T - B, class: "gone" }));
    const bar = s("rect", { x: x + bw * 0.1, y: y(v), width: Math.max(1, bw * 0.8), height: Math.max(0, H - B - y(v)), class: "bar" },
      s("title", {}, `${fmtTime(b.start)}: ${fmtNum(v)}${b.retained ? "" : " (not retained)"}`));
    svg.append(bar);
    if (i % labelEvery === 0) {
      const label = new Date(b.start).toISOString().slice(series.step_ms >= 86400000 ? 0 : 11, series.step_ms >= 86400000 ? 10 : 19);
      svg.append(s("text", { x: x + bw / 2, y: H - B + 18, class: "axis", "text-anchor": "middle" }, label));
    }
  });
  svg.append(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "baseline" }),
    s("text", { x: L, y: H - 8, class: "axis" }, `UTC · ${fmtTime(series.from)} → ${fmtTime(series.to)}`));
  return svg;
}

// ---- rules ---------------------------------------------------------------------------------

async function renderRules() {
  document.title = "riskstream — rules";
  const data = await api("/v1/rules");
  const max = Math.max(1, ...data.rules.map((r) => r.hits));
  const rows = data.rules.map((r) => h("tr", {},
    h("th", { scope: "row" }, h("a", { href: `#/cases?rule=${encodeURIComponent(r.name)}` }, r.name)),
    h("td", {}, h("code", { class: "expr-inline" }, r.when)),
    h("td", {}, badge(r.action, r.action)),
    h("td", { class: "num" }, fmtNum(r.score)),
    h("td", {}, r.enabled ? "yes" : "no"),
    h("td", { class: "num" }, fmtNum(r.hits),
      h("span", { class: "meter", "aria-hidden": "true" }, h("span", { style: `width:${(100 * r.hits) / max}%` }))),
    h("td", { class: "num" }, fmtNum(r.hits_this_run))));
  const text = h("textarea", { id: "v-when", rows: 2, placeholder: "card.count(1m) >= 10 and amount > 500" });
  const result = h("p", { role: "status", class: "hint" });
  const check = h("form", { class: "card", "aria-labelledby": "v-title" },
    h("h2", { id: "v-title" }, "Check a condition"),
    h("div", { class: "field" }, h("label", { for: "v-when" }, "when"), text),
    h("button", { type: "submit", class: "primary" }, "Validate"), result);
  check.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("/v1/rules/validate", { method: "POST", json: { when: text.value } });
      result.className = r.valid ? "ok-text" : "error";
      result.textContent = r.valid
        ? `Valid. Reads features: ${r.features.join(", ") || "none"}; fields: ${r.fields.join(", ") || "none"}.`
        : `Invalid: ${r.error}`;
    } catch (err) { result.className = "error"; result.textContent = err.message; }
  });
  show(h("h1", {}, "Rules"),
    h("table", { class: "grid" }, h("caption", { class: "sr-only" }, "Rules and hit counts"),
      h("thead", {}, h("tr", {}, ["Rule", "When", "Action", "Score", "Enabled", "Hits (all runs)", "This run"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)),
    check);
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
