// riskstream analysts' UI: the metric explorer (inline SVG chart) and the rules page.
// Loaded before app.js; uses its helpers (h, s, api, show, input, go, fmtNum, fmtTime) at call time.
"use strict";

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
