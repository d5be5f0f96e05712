// riskstream rule lab: write a condition (validated as you type), backtest it over the
// archive, propose it; a second analyst approves; every version can be rolled back to.
"use strict";

function pct(x) { return x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`; }

function hitsChart(perDay) {
  const W = 960, H = 240, L = 56, R = 16, T = 12, B = 40;
  const max = niceMax(Math.max(1, ...perDay.map((d) => d.hits)));
  const bw = (W - L - R) / Math.max(1, perDay.length);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart hits", role: "img", "aria-labelledby": "hits-desc" },
    s("title", { id: "hits-desc" }, `hits per day over ${perDay.length} days`));
  for (let i = 0; i <= 4; i++) {
    const v = (max * i) / 4;
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: L - 8, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmtNum(v)));
  }
  perDay.forEach((d, i) => {
    const x = L + i * bw;
    svg.append(s("rect", { x: x + bw * 0.15, y: y(d.hits), width: Math.max(1, bw * 0.7), height: Math.max(0, H - B - y(d.hits)), class: "bar" },
      s("title", {}, `${d.day}: ${fmtNum(d.hits)} hits of ${fmtNum(d.events)} events, ${fmtNum(d.true_positives)} true positives`)));
    svg.append(s("rect", { x: x + bw * 0.15, y: y(d.true_positives), width: Math.max(1, bw * 0.7), height: Math.max(0, H - B - y(d.true_positives)), class: "bar tp" }));
    svg.append(s("text", { x: x + bw / 2, y: H - B + 18, class: "axis", "text-anchor": "middle" }, d.day.slice(5)));
  });
  svg.append(s("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "baseline" }));
  return svg;
}

function resultTable(r) {
  const cols = [["Candidate", r]];
  if (r.live) cols.push(["Live version", r.live]);
  const row = (label, f) => h("tr", {}, h("th", { scope: "row" }, label), cols.map(([, x]) => h("td", { class: "num" }, f(x))));
  return h("table", { class: "grid metrics-table", "aria-label": "Backtest result" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), cols.map(([n]) => h("th", { scope: "col" }, n)))),
    h("tbody", {},
      row("Events", (x) => fmtNum(x.events ?? r.events)),
      row("Hits", (x) => fmtNum(x.hits)),
      row("Hit rate", (x) => pct(x.hit_rate)),
      row("Labelled", (x) => fmtNum(x.labelled)),
      row("True positives", (x) => fmtNum(x.true_positives)),
      row("False positives", (x) => fmtNum(x.false_positives)),
      row("Precision", (x) => pct(x.precision)),
      row("Recall", (x) => pct(x.recall))));
}

async function pollJob(id, status) {
  for (;;) {
    const job = await api(`/v1/rules/backtest/${encodeURIComponent(id)}`);
    if (job.state === "done") return job.result;
    if (job.state === "failed") throw new Error(job.error);
    status.textContent = `Backtesting… ${fmtNum(job.events_done)} events replayed`;
    await new Promise((res) => setTimeout(res, 250));
  }
}

async function versionsTable(name, refresh) {
  const data = await api(`/v1/rules/${encodeURIComponent(name)}/versions`);
  if (!data.versions.length) return h("p", { class: "hint" }, "No versions yet.");
  const rows = data.versions.map((v) => h("tr", { "data-version": v.version },
    h("td", { class: "num" }, `v${v.version}`),
    h("td", {}, badge(v.status, v.status)),
    h("td", {}, h("code", { class: "expr-inline" }, v.body.when)),
    h("td", {}, v.author), h("td", {}, fmtTime(v.at_ms)), h("td", {}, v.approved_by || "—"),
    h("td", { class: "num" }, v.summary ? `${fmtNum(v.summary.hits)} hits, precision ${pct(v.summary.precision)}` : "—"),
    h("td", {}, v.note || ""),
    h("td", {},
      v.status === "proposed" ? h("button", { type: "button", class: "primary", onclick: async () => {
        try { await api(`/v1/rules/${encodeURIComponent(name)}/versions/${v.version}/approve`, { method: "POST" }); toast(`v${v.version} approved: live`); refresh(); }
        catch (err) { toast(err.message); }
      } }, "Approve") : null,
      v.status === "superseded" ? h("button", { type: "button", class: "ghost", onclick: async () => {
        try { await api(`/v1/rules/${encodeURIComponent(name)}/rollback`, { method: "POST", json: { version: v.version } }); toast(`rolled back to v${v.version}`); refresh(); }
        catch (err) { toast(err.message); }
      } }, `Roll back to v${v.version}`) : null)));
  return h("table", { class: "grid versions", "aria-label": "Versions" },
    h("thead", {}, h("tr", {}, ["Version", "Status", "Condition", "Author", "Time", "Approved by", "Backtest", "Note", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows));
}

async function renderLab(params) {
  document.title = "riskstream — rule lab";
  const name = h("input", { id: "l-name", type: "text", value: params.get("rule") || "candidate", pattern: "[A-Za-z_][A-Za-z0-9_]*" });
  const when = h("textarea", { id: "l-when", rows: 3, placeholder: "card.count(1h) >= 5 and amount > 300" });
  const action = h("select", { id: "l-action" }, ACTIONS.map((a) => h("option", { value: a, selected: a === "review" }, a)));
  const score = h("input", { id: "l-score", type: "number", value: "50", min: "0", max: "1000" });
  const from = h("input", { id: "l-from", type: "text", placeholder: "ISO-8601 or epoch ms (optional)" });
  const to = h("input", { id: "l-to", type: "text", placeholder: "ISO-8601 or epoch ms (optional)" });
  const check = h("p", { id: "l-check", class: "hint", role: "status" }, "Write a condition.");
  const status = h("p", { id: "l-status", class: "hint", role: "status" });
  const result = h("div", { id: "l-result" });
  const versions = h("div", { id: "l-versions" });
  const backtestBtn = h("button", { type: "button", class: "primary", disabled: true }, "Backtest");
  const proposeBtn = h("button", { type: "button", class: "ok", disabled: true }, "Propose");
  let last = null;
  let timer = null;
  const fill = async (rule) => {
    const data = await api("/v1/rules");
    const r = data.rules.find((x) => x.name === rule);
    if (r && !when.value) { when.value = r.when; action.value = r.action; score.value = String(r.score); }
  };
  const refresh = async () => {
    try { versions.replaceChildren(h("h2", {}, `Versions of ${name.value}`), await versionsTable(name.value, refresh)); }
    catch (err) { versions.replaceChildren(errorBox(err)); }
  };
  const validate = async () => {
    last = null; proposeBtn.disabled = true;
    if (!when.value.trim()) { check.textContent = "Write a condition."; check.className = "hint"; backtestBtn.disabled = true; return; }
    try {
      const v = await api("/v1/rules/validate", { method: "POST", json: { when: when.value } });
      if (v.valid) {
        check.textContent = `Valid · features: ${(v.features || []).join(", ") || "none"}`;
        check.className = "hint valid";
      } else {
        check.textContent = `Invalid: ${v.error}`;
        check.className = "error";
      }
      backtestBtn.disabled = !v.valid;
    } catch (err) { check.textContent = err.message; check.className = "error"; }
  };
  when.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(validate, 200); });
  name.addEventListener("change", refresh);
  backtestBtn.addEventListener("click", async () => {
    backtestBtn.disabled = true; proposeBtn.disabled = true; result.replaceChildren();
    status.textContent = "Backtesting…";
    try {
      const job = await api("/v1/rules/backtest", { method: "POST", json: { name: name.value, when: when.value, from: from.value || null, to: to.value || null } });
      const r = await pollJob(job.job, status);
      last = r;
      status.textContent = `Backtest done: ${fmtNum(r.hits)} hits in ${fmtNum(r.events)} events`;
      result.replaceChildren(
        h("h2", {}, "Hits per day"), hitsChart(r.per_day),
        h("h2", {}, "Precision and recall"), resultTable(r),
        r.diff ? h("p", { class: "hint", id: "l-diff" }, `Against the live version: ${fmtNum(r.diff.new_hits)} new hits, ${fmtNum(r.diff.lost_hits)} lost hits`) : null,
        Object.keys(r.overlap).length ? h("p", { class: "hint" }, `Shared hits with live rules: ${Object.entries(r.overlap).map(([k, n]) => `${k} ${fmtNum(n)}`).join(", ")}`) : null);
      proposeBtn.disabled = false;
    } catch (err) { status.textContent = ""; result.replaceChildren(errorBox(err)); }
    backtestBtn.disabled = false;
  });
  proposeBtn.addEventListener("click", async () => {
    try {
      const p = await api("/v1/rules/proposals", { method: "POST", json: { name: name.value, when: when.value, action: action.value, score: Number(score.value), backtest: last } });
      status.textContent = p.four_eyes ? `Proposed as v${p.version}: a second analyst approves it` : `v${p.version} is live`;
      proposeBtn.disabled = true;
      refresh();
    } catch (err) { status.textContent = ""; toast(err.message); }
  });
  show(h("h1", {}, "Rule lab"),
    h("form", { class: "card lab", "aria-label": "Rule editor", onsubmit: (ev) => ev.preventDefault() },
      h("div", { class: "field" }, h("label", { for: "l-name" }, "Rule name"), name),
      h("div", { class: "field wide" }, h("label", { for: "l-when" }, "Condition"), when, check),
      h("div", { class: "field" }, h("label", { for: "l-action" }, "Action"), action),
      h("div", { class: "field" }, h("label", { for: "l-score" }, "Score"), score),
      h("div", { class: "field" }, h("label", { for: "l-from" }, "Backtest from"), from),
      h("div", { class: "field" }, h("label", { for: "l-to" }, "Backtest to"), to),
      h("div", { class: "field actions" }, backtestBtn, proposeBtn)),
    status, result, versions);
  await fill(name.value);
  if (when.value) validate();
  refresh();
}
