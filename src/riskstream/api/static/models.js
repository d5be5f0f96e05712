// riskstream models: each model's training report (test metrics next to the rules, plots)
// and its current drift (PSI of the score and the top features against the training set).
"use strict";

const PSI_TEXT = { stable: "stable", drifting: "drifting", shifted: "shifted" };

function fmtP(x) { return x === null || x === undefined ? "—" : x.toFixed(3); }

// The plots need the API key: fetched, then shown as data: URLs (the page's CSP allows them).
async function plot(entry, file, alt) {
  const img = h("img", { alt, class: "plot" });
  try {
    const headers = {};
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers.Authorization = `Bearer ${key}`;
    const resp = await fetch(`/v1/models/${encodeURIComponent(entry)}/report/${file}`, { headers });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const blob = await resp.blob();
    img.src = await new Promise((ok, fail) => {
      const r = new FileReader();
      r.onload = () => ok(r.result);
      r.onerror = () => fail(r.error);
      r.readAsDataURL(blob);
    });
  } catch (err) {
    return h("p", { class: "error" }, `${alt}: ${err.message}`);
  }
  return img;
}

function scoreChart(scores) {
  const W = 640, H = 200, L = 56, R = 12, T = 10, B = 36;
  const counts = scores.counts;
  const max = niceMax(Math.max(1, ...counts));
  const bw = (W - L - R) / Math.max(1, counts.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart scores", role: "img", "aria-label": "live score distribution" });
  for (let i = 0; i <= 2; i++) {
    const v = (max * i) / 2;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmtNum(v)));
  }
  counts.forEach((c, i) => {
    const lo = i === 0 ? 0 : scores.bounds[i - 1];
    const x = L + i * bw;
    svg.append(s("rect", { x: x + bw * 0.1, y: y(c), width: Math.max(1, bw * 0.8), height: Math.max(0, H - B - y(c)), class: "bar" },
      s("title", {}, `${lo}–${scores.bounds[i]}: ${fmtNum(c)} events`)));
    svg.append(s("text", { x: x + bw / 2, y: H - B + 16, class: "axis", "text-anchor": "middle" }, String(scores.bounds[i])));
  });
  return svg;
}

function driftTable(m) {
  if (!m.drift) return h("p", { class: "hint" }, "No live engine: drift is measured while the engine scores.");
  const rows = Object.entries(m.drift.psi).map(([col, v]) => h("tr", {},
    h("th", { scope: "row" }, h("code", {}, col)),
    h("td", { class: "num" }, v.toFixed(4)),
    h("td", {}, h("span", { class: `psi ${m.drift.status[col]}` }, PSI_TEXT[m.drift.status[col]]))));
  return h("div", {},
    h("p", {}, `Population stability index against the training set, over ${fmtNum(m.drift.events)} events scored since the model loaded (< 0.1 stable, 0.1–0.25 drifting, above shifted).`),
    rows.length
      ? h("table", { class: "grid drift", "aria-label": `Drift of ${m.entry}` },
        h("thead", {}, h("tr", {}, ["Input", "PSI", "Reading"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, rows))
      : h("p", { class: "hint" }, "No events scored yet."));
}

function reportTable(m) {
  const t = m.test;
  const par = t.precision_at_recall || {};
  const rules = Object.entries(t.rules || {}).map(([name, p]) => h("tr", {},
    h("th", { scope: "row" }, `rule ${name}`), h("td", { class: "num" }, fmtP(p.precision)), h("td", { class: "num" }, fmtP(p.recall)), h("td", { class: "num" }, fmtNum(p.hits))));
  return h("div", {},
    h("ul", { class: "tiles" },
      h("li", {}, h("span", {}, "AUC-PR"), " ", h("strong", {}, fmtP(t.auc_pr))),
      Object.entries(par).map(([r, p]) => h("li", {}, h("span", {}, `precision at ${r}% recall`), " ", h("strong", {}, fmtP(p)))),
      h("li", {}, h("span", {}, "test events"), " ", h("strong", {}, `${fmtNum(t.events)} (${fmtNum(t.fraud)} fraud)`))),
    h("table", { class: "grid", "aria-label": `Rules on the test events of ${m.entry}` },
      h("thead", {}, h("tr", {}, ["On the same test events", "Precision", "Recall", "Hits"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rules)));
}

async function renderModels() {
  document.title = "riskstream — models";
  const data = await api("/v1/models");
  if (!data.models.length) {
    show(h("h1", {}, "Models"), h("p", {}, "The spec has no models: train one with riskstream train -c SPEC --model NAME, then add models: {NAME: {version: latest}}."));
    return;
  }
  const cards = [];
  for (const m of data.models) {
    if (m.error) { cards.push(h("section", { class: "card" }, h("h2", {}, m.entry), errorBox(m.error))); continue; }
    const plots = await Promise.all([
      plot(m.entry, "pr.png", "precision/recall on the test range"),
      plot(m.entry, "calibration.png", "calibration on the test range"),
      plot(m.entry, "importance.png", "feature importance"),
    ]);
    cards.push(h("section", { class: "card model", "aria-labelledby": `m-${m.entry}` },
      h("h2", { id: `m-${m.entry}` }, `model.${m.entry}`, " ",
        badge(m.shadow ? "tag" : "review", m.shadow ? "shadow" : "live"),
        h("span", { class: "hint" }, ` ${m.model} v${m.version}, trained ${m.trained || "—"}`)),
      h("h3", {}, "Report (held-out test range)"), reportTable(m),
      h("div", { class: "plots" }, plots),
      h("h3", {}, "Current drift"), driftTable(m),
      m.scores && m.scores.events ? h("div", {}, h("h3", {}, "Live scores"), scoreChart(m.scores)) : null));
  }
  show(h("h1", {}, "Models"), ...cards);
}
