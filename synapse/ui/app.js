// The operator page: plain JavaScript, no library, no build step, nothing from another host.
// Every value from the service is written with textContent, never parsed as HTML.
"use strict";

const VERDICTS = ["ALLOW", "WARN", "HALT", "DENY"];
const KEEP_ROWS = 200;
const TOKEN_KEY = "sopcos-token";
const $ = (id) => document.getElementById(id);
const seen = new Set();
let streamAbort = null;

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

function say(text) { $("message").textContent = text; }

async function call(method, path, body) {
  const init = { method: method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
    cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(path, init);
  const text = await res.text();
  let doc = null;
  try { doc = text ? JSON.parse(text) : null; } catch (e) { doc = { message: text }; }
  if (!res.ok) {
    const why = doc && doc.message ? doc.message : res.statusText;
    const err = new Error(`${res.status} ${doc && doc.code ? doc.code + ": " : ""}${why}`);
    err.status = res.status;
    throw err;
  }
  return doc;
}

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function verdictBadge(verdict) { return el("span", verdict, { class: "verdict verdict-" + verdict }); }

function shortUrn(urn) { return urn && urn.length > 40 ? urn.slice(0, 30) + "…" + urn.slice(-8) : urn; }

function seconds(value) {
  if (value === null || value === undefined) return "never read";
  return value < 10 ? value.toFixed(1) + " s" : Math.round(value) + " s";
}

// -- overview: readiness, ledger, policies, decision log --------------------------------------------

function setOptions(select, names, first) {
  const keep = select.value;
  select.replaceChildren();
  if (first !== undefined) select.append(el("option", first, { value: "" }));
  for (const name of names) select.append(el("option", name, { value: name }));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function field(dl, term, value) {
  const div = el("div");
  div.append(el("dt", term), el("dd", value === null || value === undefined || value === "" ? "none" : value));
  dl.append(div);
}

function adminButton(label, aria, action) {
  const button = el("button", label, { type: "button", "aria-label": aria });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await action();
      say(aria + ": done");
      await refreshOverview();
    } catch (e) {
      say(aria + ": " + e.message + (e.status === 401 || e.status === 403 ? " (needs an admin token)" : ""));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function renderPolicy(p) {
  const card = el("article", null, { class: "policy", "aria-labelledby": "policy-" + p.policy });
  card.append(el("h3", p.policy, { id: "policy-" + p.policy }));
  const served = p.active !== null;
  const state = el("p", served ? "Served: version " + p.active.version : "Not served: " + p.reason,
    { class: served ? "served" : "not-served" });
  card.append(state);
  const dl = el("dl", null, { class: "facts" });
  field(dl, "Active version", served ? p.active.version : null);
  field(dl, "Active URN", served ? p.active.urn : null);
  field(dl, "Signer", p.signer);
  field(dl, "Authority level", p.authority_level);
  field(dl, "Floor", p.floor);
  field(dl, "Pinned to", p.pinned);
  card.append(dl);
  if (p.pinned) {
    card.append(adminButton("Unpin", "Unpin " + p.policy,
      () => call("DELETE", "/v1/policies/" + encodeURIComponent(p.policy) + "/pin")));
  }
  const table = el("table", null, { class: "artifacts" });
  table.append(el("caption", "Artifacts of " + p.policy));
  const head = el("tr");
  for (const h of ["Version", "State", "URN", "Signer", "Level", "Why not served", "Actions"]) {
    head.append(el("th", h, { scope: "col" }));
  }
  const thead = el("thead");
  thead.append(head);
  table.append(thead);
  const body = el("tbody");
  for (const a of p.artifacts) {
    const row = el("tr", null, { class: a.served ? "artifact-served" : "artifact-not-served" });
    row.append(el("td", a.version), el("td", a.active ? "active" : a.served ? "servable" : "not served: " + a.state),
      el("td", shortUrn(a.urn), { title: a.urn }), el("td", a.kid), el("td", "LVL_" + a.authority_level),
      el("td", a.why_not_served || ""));
    const actions = el("td");
    const what = `${p.policy} ${a.version} (${a.urn})`;
    if (a.state === "active") {
      actions.append(adminButton("Retire", "Retire " + what,
        () => call("POST", "/v1/artifacts/" + encodeURIComponent(a.urn) + "/retire")));
    }
    if (a.served && !a.active) {
      actions.append(adminButton("Roll back to this", "Roll back " + p.policy + " to " + a.version,
        () => call("POST", "/v1/policies/" + encodeURIComponent(p.policy) + "/rollback", { urn: a.urn })));
    }
    row.append(actions);
    body.append(row);
  }
  table.append(body);
  card.append(table);
  return card;
}

function renderOverview(o) {
  $("node").textContent = o.node;
  $("readiness").textContent = o.status + (o.serving_last_known_good ? " (serving the last known good set)" : "");
  $("readiness").className = "readiness-" + o.status;
  const l = o.ledger;
  $("ledger-head").textContent = !l.configured ? "no ledger configured"
    : (l.head_seq === null ? "not read yet" : "entry " + l.head_seq) + (l.reachable ? "" : " (unreachable: " + (l.error || "?") + ")")
      + (l.rolled_back ? " (rolled back: " + l.rolled_back + ")" : "");
  $("follow-lag").textContent = seconds(l.follow_lag_seconds) + " (checked every " + l.follow_interval + " s)";
  $("worker").textContent = o.workers > 1 ? `${o.worker} of ${o.workers} (this page shows this worker's decisions)` : "1";
  const box = $("policies");
  box.replaceChildren(...(o.policies.length ? o.policies.map(renderPolicy) : [el("p", "No policy is stored on this node.")]));
  const names = o.policies.map((p) => p.policy);
  setOptions($("filter-policy"), names, "all policies");
  setOptions($("try-policy"), o.policies.filter((p) => p.active !== null).map((p) => p.policy));
  const log = o.decision_log;
  $("seal").textContent = log === null ? "The decision log is not open."
    : `Stream ${log.stream} (${log.stream_id}): last seal at record ${log.sealed_seq} (${log.sealed_hash}); `
      + `${log.unsealed} record(s) written since.`;
}

async function refreshOverview() {
  try {
    renderOverview(await call("GET", "/v1/overview"));
  } catch (e) {
    say("overview: " + e.message + (e.status === 401 ? " (enter a token with the evaluate scope)" : ""));
  }
}

// -- live decisions --------------------------------------------------------------------------------

function matchesFilter(row) {
  const policy = $("filter-policy").value;
  const verdict = $("filter-verdict").value;
  return (!policy || row.dataset.policy === policy) && (!verdict || row.dataset.verdict === verdict);
}

function applyFilter() {
  for (const row of $("decision-rows").rows) row.hidden = !matchesFilter(row);
}

function smallTable(caption, heads, rows) {
  const table = el("table", null, { class: "explain" });
  table.append(el("caption", caption));
  const head = el("tr");
  for (const h of heads) head.append(el("th", h, { scope: "col" }));
  const thead = el("thead");
  thead.append(head);
  const body = el("tbody");
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) tr.append(el("td", cell === null || cell === undefined ? "" : cell));
    body.append(tr);
  }
  table.append(thead, body);
  return table;
}

// The decision's explanation (synapse/explain.py: from the trace the deciding module wrote): what
// decided, each rule's `when` and outcome, each named condition's value.
function explanationBlock(x) {
  const details = el("details", null, { class: "explanation" });
  details.append(el("summary", "Why: " + (x.summary || "the explanation")));
  if (!Array.isArray(x.rules)) {
    details.append(el("pre", JSON.stringify(x, null, 2)));
    return details;
  }
  if (x.rules.length) {
    details.append(smallTable("Rules, in order", ["Rule", "Then", "When", "Outcome", "Why"],
      x.rules.map((r) => [r.id, r.then, r.when === null ? "not computed" : String(r.when), r.outcome, r.why])));
  }
  if (Array.isArray(x.conditions) && x.conditions.length) {
    details.append(smallTable("Named conditions", ["Condition", "Type", "State", "Value"],
      x.conditions.map((c) => [c.name, c.type, c.state, c.value === null ? "" : String(c.value)])));
  }
  return details;
}

function addDecision(d) {
  if (d.decision_id && seen.has(d.decision_id)) return;
  if (d.decision_id) seen.add(d.decision_id);
  const row = el("tr", null, { class: "decision verdict-row-" + d.verdict });
  row.dataset.policy = d.policy || "";
  row.dataset.verdict = d.verdict;
  const time = d.time ? new Date(d.time * 1000).toLocaleTimeString() : "";
  const verdict = el("td");
  verdict.append(verdictBadge(d.verdict));
  const id = el("td", d.decision_id || "");
  if (d.explanation) id.append(explanationBlock(d.explanation));
  row.append(el("td", time), el("td", d.policy || ""), el("td", d.version || ""), verdict, el("td", d.rule || ""),
    el("td", d.reason || ""), el("td", d.latency_ms === undefined ? "" : d.latency_ms), id);
  row.hidden = !matchesFilter(row);
  const body = $("decision-rows");
  body.prepend(row);
  while (body.rows.length > KEEP_ROWS) body.deleteRow(body.rows.length - 1);
}

function handleEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
  }
  if (!data.length) return;
  const doc = JSON.parse(data.join("\n"));
  if (event === "decision") {
    addDecision(doc);
    countDecision(doc);
  }
  else if (event === "missed") say(`The page missed ${doc.count} decision(s) while it was behind.`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Server-sent events read with fetch (EventSource cannot send the Authorization header).
async function streamDecisions() {
  for (;;) {
    const abort = new AbortController();
    streamAbort = abort;
    try {
      const res = await fetch("/v1/decisions/stream", { headers: headers(), cache: "no-store", signal: abort.signal });
      if (!res.ok) {
        $("stream-state").textContent = "not connected: " + res.status + (res.status === 401 ? " (enter a token)" : "");
      } else {
        $("stream-state").textContent = "live";
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            handleEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
        $("stream-state").textContent = "reconnecting…";
      }
    } catch (e) {
      if (!abort.signal.aborted) $("stream-state").textContent = "reconnecting…";
    }
    if (!abort.signal.aborted) await sleep(2000);
  }
}

async function loadRecent() {
  try {
    const recent = await call("GET", "/v1/decisions/recent");
    for (const d of recent.decisions) addDecision(d);
    renderStats(recent.stats);
  } catch (e) {
    say("recent decisions: " + e.message);
  }
}

// -- charts (inline SVG) ---------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

let shownStats = null;

// A pushed decision counts at once in the charts; the service's own figures replace these every 10 s.
function countDecision(d) {
  if (!shownStats || !d.time) return;
  const size = shownStats.bucket_seconds;
  const start = Math.floor(d.time / size) * size;
  const buckets = shownStats.buckets;
  if (buckets[buckets.length - 1].start < start) {
    buckets.push({ start: start, counts: Object.fromEntries(VERDICTS.map((v) => [v, 0])),
      latency_ms_mean: null, latency_ms_max: null });
    buckets.shift();
  }
  const b = buckets[buckets.length - 1];
  if (b.start !== start || !(d.verdict in b.counts)) return;
  const n = VERDICTS.reduce((sum, v) => sum + b.counts[v], 0);
  b.counts[d.verdict] += 1;
  b.latency_ms_mean = ((b.latency_ms_mean || 0) * n + d.latency_ms) / (n + 1);
  b.latency_ms_max = Math.max(b.latency_ms_max || 0, d.latency_ms);
  renderStats(shownStats);
}

function renderStats(stats) {
  shownStats = stats;
  const buckets = stats.buckets;
  const totals = Object.fromEntries(VERDICTS.map((v) => [v, 0]));
  for (const b of buckets) for (const v of VERDICTS) totals[v] += b.counts[v];
  $("totals").textContent = "In the last hour: " + VERDICTS.map((v) => `${totals[v]} ${v}`).join(", ") + ".";
  const width = 600, height = 110, step = width / buckets.length;
  const counts = $("chart-counts");
  counts.replaceChildren();
  const most = Math.max(1, ...buckets.map((b) => VERDICTS.reduce((n, v) => n + b.counts[v], 0)));
  buckets.forEach((b, i) => {
    let y = height;
    for (const v of VERDICTS) {
      const h = (b.counts[v] / most) * (height - 10);
      if (h > 0) {
        y -= h;
        const rect = svg("rect", { x: i * step + 1, y: y, width: Math.max(1, step - 2), height: h, class: "bar-" + v });
        rect.append(svg("title", {}));
        rect.firstChild.textContent = `${new Date(b.start * 1000).toLocaleTimeString()}: ${b.counts[v]} ${v}`;
        counts.append(rect);
      }
    }
  });
  counts.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  const latency = $("chart-latency");
  latency.replaceChildren();
  const top = Math.max(0.001, ...buckets.map((b) => b.latency_ms_max || 0));
  const points = [];
  buckets.forEach((b, i) => {
    if (b.latency_ms_mean === null) return;
    const x = i * step + step / 2;
    points.push(`${x},${height - (b.latency_ms_mean / top) * (height - 10)}`);
    const dot = svg("circle", { cx: x, cy: height - (b.latency_ms_max / top) * (height - 10), r: 2, class: "latency-max" });
    dot.append(svg("title", {}));
    dot.firstChild.textContent = `${new Date(b.start * 1000).toLocaleTimeString()}: mean ${b.latency_ms_mean} ms, highest ${b.latency_ms_max} ms`;
    latency.append(dot);
  });
  if (points.length) latency.append(svg("polyline", { points: points.join(" "), class: "latency-mean" }));
  latency.append(svg("line", { x1: 0, y1: height, x2: width, y2: height, class: "axis" }));
  const label = svg("text", { x: 4, y: 10, class: "chart-label" });
  label.textContent = `highest: ${top} ms`;
  latency.append(label);
}

async function refreshStats() {
  try {
    renderStats((await call("GET", "/v1/decisions/recent")).stats);
  } catch (e) {
    // the overview refresh reports access problems; nothing more to say here
  }
}

// -- decision log check ----------------------------------------------------------------------------

async function verifyLog() {
  const out = $("verify-result");
  out.textContent = "Checking…";
  try {
    const r = await call("POST", "/v1/decision-log/verify");
    out.replaceChildren(el("p", r.ok ? "Intact." : "NOT intact.", { class: r.ok ? "ok" : "bad" }));
    for (const s of r.streams) {
      const bad = s.first_bad;
      out.append(el("p", bad ? `Stream ${s.stream}: first bad record ${bad.file} line ${bad.line} (seq ${bad.seq}): ${bad.reason}`
        : `Stream ${s.stream}: ${s.records} records (${s.decisions} decisions), ${s.seals} seal(s) by ${s.signer}, `
          + `${s.anchors} ledger anchor(s)`));
      for (const note of s.notes) out.append(el("p", "note: " + note, { class: "note" }));
    }
    for (const note of r.notes) out.append(el("p", "note: " + note, { class: "note" }));
    if (!r.checked_against_ledger) out.append(el("p", "note: not checked against a ledger", { class: "note" }));
  } catch (e) {
    out.textContent = "The check could not run: " + e.message;
  }
}

// -- try a reading ---------------------------------------------------------------------------------

function parseObject(id, what) {
  let value;
  try { value = JSON.parse($(id).value || "{}"); } catch (e) { throw new Error(what + " is not JSON: " + e.message); }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(what + " must be a JSON object");
  return value;
}

async function tryReading(event) {
  event.preventDefault();
  const out = $("try-result");
  try {
    const body = { policy: $("try-policy").value, telemetry: parseObject("try-telemetry", "Telemetry"),
      context: parseObject("try-context", "Context") };
    const d = await call("POST", "/v1/evaluate" + ($("try-explain").checked ? "?explain=true" : ""), body);
    out.replaceChildren();
    const line = el("p");
    line.append(verdictBadge(d.verdict), document.createTextNode(
      ` rule: ${d.rule || "none (the default)"}` + (d.reason ? `; reason: ${d.reason}` : "") + `; decision ${d.decision_id}`));
    out.append(line);
    for (const log of d.logs || []) out.append(el("p", `${log.level}: ${log.message}`, { class: "note" }));
    if (d.explanation) out.append(explanationBlock(d.explanation));
    out.querySelector("details") && out.querySelector("details").setAttribute("open", "");
  } catch (e) {
    out.replaceChildren(el("p", "Not evaluated: " + e.message + " (treat this as DENY)", { class: "bad" }));
  }
}

// -- start -----------------------------------------------------------------------------------------

function restartStream() {
  if (streamAbort) streamAbort.abort();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    say("Token set for this tab.");
    restartStream();
    refreshOverview();
  });
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    say("Token forgotten.");
    restartStream();
  });
  $("filter-policy").addEventListener("change", applyFilter);
  $("filter-verdict").addEventListener("change", applyFilter);
  $("verify-log").addEventListener("click", verifyLog);
  $("try-form").addEventListener("submit", tryReading);
  refreshOverview().then(loadRecent).then(streamDecisions);
  setInterval(refreshOverview, 2000);
  setInterval(refreshStats, 10000);
});
