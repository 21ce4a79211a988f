// The fleet dashboard: one EventSource on /events, every panel redrawn in place from the
// `state` event's JSON (the same panels /api/<panel> serves).
//
// Safety: agent names, reasons and every other value come from the log, i.e. from
// outside. They are only ever set with textContent, createElement/createElementNS and
// setAttribute of non-event attributes; no HTML is ever parsed from data and no handler
// is built from it. The server's Content-Security-Policy (default-src 'self') forbids
// inline script besides.
//
// Charts are inline SVG polylines drawn here: a curve is a list of points, and a
// charting library (none may come from a CDN; a vendored one would be ~100 kB to audit)
// would add nothing a polyline and an area do not already show.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2c6fbb", "#e67e22", "#16a085", "#8e44ad", "#c0392b", "#27ae60",
  "#d35400", "#2980b9", "#7f8c8d", "#f39c12", "#1abc9c", "#9b59b6"];
let latest = null;

// --- small helpers ----------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function num(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits === undefined ? 1 : digits);
}

function pct(value) {
  return value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%";
}

function signClass(value) {
  return value > 0 ? "pos" : value < 0 ? "neg" : "";
}

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", " UTC") : "–";
}

// --- portfolio ----------------------------------------------------------------------------

function renderPortfolio(panel) {
  const fleet = panel.fleet;
  const figures = [
    ["PnL (bps)", num(fleet.pnl_bps), signClass(fleet.pnl_bps)],
    ["deployed PnL (bps)", num(fleet.deployed.pnl_bps), signClass(fleet.deployed.pnl_bps)],
    ["hit rate", pct(fleet.hit_rate)],
    ["deployed max drawdown (bps)", num(fleet.deployed.max_drawdown_bps)],
    ["deployed drawdown now (bps)", num(fleet.deployed.current_drawdown_bps)],
    ["CVaR 95 (bps)", num(fleet.cvar95_bps)],
    ["Sharpe", num(fleet.sharpe, 2)],
    ["regime", fleet.regime || "–"],
    ["mode", panel.mode || "–"],
    ["agents trading", fleet.trading + " / " + fleet.agents],
    ["trades", fleet.trades],
    ["deadletter", fleet.deadletter],
  ];
  const list = document.getElementById("figures");
  clear(list);
  for (const [label, value, cls] of figures) {
    const item = el("div");
    item.append(el("dt", label), el("dd", value, cls));
    list.append(item);
  }
  document.getElementById("as-of").textContent =
    "as of " + when(panel.meta.event_time) + " · " + panel.meta.records + " records";
}

// --- curves -------------------------------------------------------------------------------

function renderCurves(panel) {
  const select = document.getElementById("curve-select");
  const chosen = select.value;
  const names = Object.keys(panel.agents);
  const have = Array.from(select.options).slice(1).map((o) => o.value);
  if (have.join("\n") !== names.join("\n")) {
    while (select.options.length > 1) select.remove(1);
    for (const name of names) {
      const option = el("option", name);
      option.value = name;
      select.append(option);
    }
    select.value = names.includes(chosen) ? chosen : "";
  }
  const curve = select.value ? panel.agents[select.value] : panel.portfolio;
  const box = document.getElementById("curves");
  clear(box);
  box.append(chart(curve.points, "equity_bps", "equity (bps)", false),
    chart(curve.points, "drawdown_bps", "drawdown (bps)", true));
  box.append(el("p", curve.trades + " trades in the window", "muted"));
}

function chart(points, field, title, downward) {
  const width = 600, height = 140, pad = 34;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const label = svg("title");
  label.textContent = title;
  root.append(label);
  const caption = svg("text", { x: 2, y: 11 });
  caption.textContent = title;
  root.append(caption);
  if (points.length === 0) {
    const empty = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" });
    empty.textContent = "no trades yet";
    root.append(empty);
    return root;
  }
  const values = points.map((p) => (downward ? -p[field] : p[field]));
  const lo = Math.min(0, ...values), hi = Math.max(0, ...values);
  const span = hi - lo || 1;
  const x = (i) => pad + (points.length === 1 ? 0 : (i * (width - pad - 4)) / (points.length - 1));
  const y = (v) => 16 + ((hi - v) * (height - 24)) / span;
  root.append(svg("line", { x1: pad, x2: width - 4, y1: y(0), y2: y(0), class: "axis" }));
  for (const v of [hi, lo]) {
    const tick = svg("text", { x: 2, y: y(v) + 3 });
    tick.textContent = num(downward ? -v : v, 0);
    root.append(tick);
  }
  const coords = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
  if (downward) {
    const area = [`${x(0).toFixed(1)},${y(0).toFixed(1)}`, ...coords,
      `${x(values.length - 1).toFixed(1)},${y(0).toFixed(1)}`];
    root.append(svg("polygon", { points: area.join(" "), class: "drawdown" }));
  } else {
    root.append(svg("polyline", { points: coords.join(" "), class: "equity" }));
  }
  return root;
}

// --- allocation ---------------------------------------------------------------------------

function renderAllocation(panel) {
  const bar = document.getElementById("allocation-bar");
  const legend = document.getElementById("allocation-legend");
  clear(bar);
  clear(legend);
  panel.slices.forEach((slice, i) => {
    const colour = slice.cash ? "#cfd6df" : COLOURS[i % COLOURS.length];
    const part = el("span");
    part.style.width = (100 * slice.weight).toFixed(2) + "%";
    part.style.background = colour;
    part.title = `${slice.label}: ${pct(slice.weight)}`;
    bar.append(part);
    const item = el("li");
    const swatch = el("i");
    swatch.style.background = colour;
    item.append(swatch, document.createTextNode(`${slice.label} ${pct(slice.weight)}`));
    legend.append(item);
  });
  if (panel.allocation) {
    legend.append(el("li", `regime ${panel.allocation.regime || "–"}, cap ${pct(panel.allocation.regime_cap)}, at ${when(panel.allocation.ts)}`, "muted"));
  }
}

// --- agents table (sortable) --------------------------------------------------------------

const AGENT_COLUMNS = [
  ["agent", (r) => r.agent],
  ["class", (r) => r.strategy_class],
  ["decision", (r) => r.decision],
  ["reasons", (r) => (r.reasons || []).join("; ")],
  ["PnL bps", (r) => r.stats.pnl_sum_bps, 1],
  ["equity", (r) => lastEquity(r.agent), "spark"],
  ["hit", (r) => r.stats.hit_rate, "pct"],
  ["error rate", (r) => r.stats.error_rate, "pct"],
  ["latency ms", (r) => r.stats.avg_latency_ms, 0],
  ["p95 ms", (r) => r.stats.p95_latency_ms, 0],
  ["cost $", (r) => r.stats.cost_usd, 2],
  ["$ / bps", (r) => r.stats.cost_per_bps_usd, 4],
  ["mult", (r) => r.confidence_mult, 2],
  ["weight", (r) => r.weight, "pct"],
  ["PSR", (r) => r.stats.psr, 2],
  ["DSR", (r) => r.stats.dsr, 2],
  ["retirement", (r) => r.retirement_label],
  ["lag", (r) => r.health.consumer_lag, 0],
  ["errors", (r) => r.health.errors, 0],
  ["deadletter", (r) => r.health.deadletter, 0],
  ["budget burn", (r) => (r.health.budget ? r.health.budget.burn : null), "pct"],
  ["stopped", (r) => r.stopped],
];
let sortColumn = 0;
let sortAscending = true;

function agentPoints(agent) {
  const curve = latest && latest.curves.agents[agent];
  return curve ? curve.points : [];
}

function lastEquity(agent) {
  const points = agentPoints(agent);
  return points.length ? points[points.length - 1].equity_bps : null;
}

// The agent's window equity as a line the width of a cell: which agents are climbing and
// which are falling shows at a glance down the column.
function sparkline(points) {
  const width = 90, height = 22;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" });
  if (points.length < 2) return root;
  const values = points.map((p) => p.equity_bps);
  const lo = Math.min(0, ...values), hi = Math.max(0, ...values), span = hi - lo || 1;
  const coords = values.map((v, i) =>
    `${((i * width) / (values.length - 1)).toFixed(1)},${(1 + ((hi - v) * (height - 2)) / span).toFixed(1)}`);
  const zero = (1 + (hi * (height - 2)) / span).toFixed(1);
  root.append(svg("line", { x1: 0, x2: width, y1: zero, y2: zero, class: "axis" }));
  root.append(svg("polyline", { points: coords.join(" "), class: values[values.length - 1] < 0 ? "down" : "up" }));
  return root;
}

function cellText(value, format) {
  if (format === "pct") return pct(value);
  if (typeof format === "number") return num(value, format);
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1;
  if (b === null || b === undefined) return -1;
  return a < b ? -1 : 1;
}

function renderAgents(panel) {
  const table = document.getElementById("agents");
  const head = table.tHead.rows[0];
  if (head.cells.length === 0) {
    AGENT_COLUMNS.forEach(([title], index) => {
      const th = el("th", title);
      th.addEventListener("click", () => {
        sortAscending = sortColumn === index ? !sortAscending : true;
        sortColumn = index;
        if (latest) renderAgents(latest.agents);
      });
      head.append(th);
    });
  }
  Array.from(head.cells).forEach((th, index) => {
    th.classList.toggle("sorted", index === sortColumn);
    th.classList.toggle("asc", index === sortColumn && sortAscending);
  });
  const read = AGENT_COLUMNS[sortColumn][1];
  const rows = [...panel.rows].sort((a, b) => {
    const order = compare(read(a), read(b));
    return sortAscending ? order : -order;
  });
  const body = table.tBodies[0];
  clear(body);
  for (const row of rows) {
    const tr = el("tr");
    if (row.stopped) tr.className = "stopped";
    for (const [title, get, format] of AGENT_COLUMNS) {
      const value = get(row);
      if (format === "spark") {
        const td = el("td");
        td.title = `${row.agent}: ${num(value)} bps over the window`;
        td.append(sparkline(agentPoints(row.agent)));
        tr.append(td);
        continue;
      }
      const td = el("td", cellText(value, format));
      if (title === "reasons") td.className = "reasons";
      else if (title === "decision" && value) td.className = "text decision-" + value;
      else if (format === undefined) td.className = "text";
      else if (title === "PnL bps") td.className = signClass(value);
      tr.append(td);
    }
    body.append(tr);
  }
}

// --- kill list ------------------------------------------------------------------------------

const HISTORY_COLUMNS = ["ts", "type", "target_type", "target", "source", "actor", "reason",
  "until", "signature_verified", "problem"];

function renderKills(view) {
  const active = document.getElementById("kill-active");
  clear(active);
  const stopped = [...view.agents, ...view.strategy_classes];
  if (stopped.length === 0) active.append(el("li", "nothing is killed", "muted"));
  for (const kill of stopped) active.append(el("li", kill.description));
  const table = document.getElementById("kill-history");
  const head = table.tHead.rows[0];
  if (head.cells.length === 0) for (const name of HISTORY_COLUMNS) head.append(el("th", name));
  const body = table.tBodies[0];
  clear(body);
  for (const row of [...view.history].reverse()) {
    const tr = el("tr");
    for (const name of HISTORY_COLUMNS) {
      const value = name === "ts" || name === "until" ? when(row[name]) : row[name];
      tr.append(el("td", cellText(value), "text"));
    }
    body.append(tr);
  }
}

// --- lineage --------------------------------------------------------------------------------

function lineageItem(nodes, name, seen) {
  const node = nodes[name];
  const item = el("li");
  item.append(el("strong", name));
  if (node) {
    const detail = [node.strategy_class, node.reason, node.spawned_at ? when(node.spawned_at) : null]
      .filter(Boolean).join(" · ");
    if (detail) item.append(el("span", " " + detail, "muted"));
    const children = node.children.filter((child) => !seen.has(child));
    if (children.length) {
      const list = el("ul");
      for (const child of children) {
        seen.add(child);
        list.append(lineageItem(nodes, child, seen));
      }
      item.append(list);
    }
  }
  return item;
}

function renderLineage(view) {
  const tree = document.getElementById("lineage");
  clear(tree);
  const seen = new Set(view.roots);
  for (const root of view.roots) tree.append(lineageItem(view.nodes, root, seen));
  if (view.roots.length === 0) tree.append(el("li", "no agents yet", "muted"));
}

// --- feed -----------------------------------------------------------------------------------

function renderFeed(panel) {
  const feed = document.getElementById("feed");
  clear(feed);
  for (const item of panel.items) {
    const li = el("li");
    li.append(el("time", when(item.ts)));
    if (item.kind === "decision") {
      const d = item.decision;
      li.append(el("strong", d.agent), document.createTextNode(" "),
        el("span", (d.previous ? d.previous + " → " : "") + d.decision, "decision-" + d.decision));
      if (d.reasons.length) li.append(el("span", " — " + d.reasons.join("; "), "muted"));
    } else {
      const k = item.kill;
      li.append(el("strong", k.type), document.createTextNode(` ${k.target_type} `),
        el("strong", k.target), el("span", ` by ${k.actor} (${k.source}) ${k.reason}`, "muted"));
    }
    feed.append(li);
  }
  if (panel.items.length === 0) feed.append(el("li", "nothing yet", "muted"));
}

// --- the whole page -------------------------------------------------------------------------

function render(state) {
  latest = state;
  renderPortfolio(state.portfolio);
  renderCurves(state.curves);
  renderAllocation(state.allocation);
  renderAgents(state.agents);
  renderKills(state.kill_list);
  renderLineage(state.lineage);
  renderFeed(state.feed);
}

function connect() {
  const badge = document.getElementById("connection");
  // EventSource reconnects by itself after a dropped stream or a refused connection (the
  // server asks for a retry after 2 s), but gives up for good on an HTTP error answer (a
  // proxy's 502 while the stack restarts): then the page opens a new one itself.
  const source = new EventSource("/events");
  source.addEventListener("open", () => {
    badge.textContent = "live";
    badge.className = "badge live";
  });
  source.addEventListener("error", () => {
    badge.textContent = "reconnecting…";
    badge.className = "badge down";
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 2000);
  });
  source.addEventListener("state", (event) => render(JSON.parse(event.data)));
}

// --- operator form --------------------------------------------------------------------------

async function sendCommand(event) {
  event.preventDefault();
  const answer = document.getElementById("op-answer");
  const action = document.getElementById("op-action").value;
  const body = {
    target: document.getElementById("op-target").value,
    target_type: document.getElementById("op-target-type").value,
    reason: document.getElementById("op-reason").value,
  };
  const until = document.getElementById("op-until").value;
  if (action === "pause" && until) body.until = new Date(until).toISOString();
  // The token lives only in the form field: never stored, never put in a URL.
  const token = document.getElementById("op-token").value;
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  answer.className = "answer";
  answer.textContent = "sending…";
  try {
    const response = await fetch("/api/commands/" + encodeURIComponent(action), {
      method: "POST", headers, body: JSON.stringify(body),
    });
    const text = await response.text();
    answer.className = response.ok ? "answer" : "answer error";
    answer.textContent = `HTTP ${response.status}\n${text}`;
  } catch (error) {
    answer.className = "answer error";
    answer.textContent = "could not reach the dashboard: " + error;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("curve-select").addEventListener("change", () => {
    if (latest) renderCurves(latest.curves);
  });
  document.getElementById("operator").addEventListener("submit", sendCommand);
  connect();
});
