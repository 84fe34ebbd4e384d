// The console page. Live data comes as server-sent events (/api/events for the devices,
// /api/logs for hilog); changes are JSON POSTs from this origin. Every text from a daemon
// (device names, log lines, keys and values are outside input) goes in through textContent
// or an attribute value, never as markup.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
// What the browser tests and the benchmark read: render times and log lines shown.
const perf = { topologyRenders: [], linesShown: 0, lastDevices: null, maxLagMs: 0 };
window.__oxh = perf;
// Responsiveness: how late a 100 ms timer fires (the longest the page was busy).
{
  let due = performance.now() + 100;
  setInterval(() => {
    const now = performance.now();
    perf.maxLagMs = Math.max(perf.maxLagMs, now - due);
    due = now + 100;
  }, 100);
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function row(cells, attrs) {
  const tr = el("tr", null, attrs);
  for (const c of cells) {
    const td = el("td");
    if (c instanceof Node) td.append(c); else td.textContent = c === undefined || c === null ? "" : String(c);
    tr.append(td);
  }
  return tr;
}

function say(id, text, ok) {
  const p = $(id);
  p.textContent = text;
  p.className = "result " + (ok ? "ok" : "error");
}

function errText(j, status) {
  if (j && j.error) return (j.code ? j.code + " " : "") + j.error;
  return "HTTP " + status;
}

async function getJson(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  return { ok: r.ok, status: r.status, j };
}

async function post(url, body, raw) {
  const r = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": raw ? "application/octet-stream" : "application/json" },
    body: raw ? body : JSON.stringify(body),
  });
  let j = null;
  try { j = await r.json(); } catch (e) { j = null; }
  return { ok: r.ok, status: r.status, j };
}

// ---- tabs ----
for (const b of document.querySelectorAll("#tabs button")) {
  b.addEventListener("click", () => show(b.dataset.panel));
}
function show(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.panel === name);
  for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === "panel-" + name);
  if (name === "device") loadDevice();
  if (name === "bundles") loadBundles();
  if (name === "kv") loadKv();
  if (name === "rdb") loadRdbTables();
  if (name === "transfers") loadSends();
  if (name === "logs" && !logs.source) startLogs();
}

// ---- topology ----
function drawDevices(d) {
  const t0 = performance.now();
  perf.lastDevices = d;
  const status = $("status");
  const g = $("topology");
  const body = document.querySelector("#devices tbody");
  g.replaceChildren();
  body.replaceChildren();
  if (d.daemon !== "online") {
    status.className = "offline";
    status.textContent = "the local daemon is offline";
    return;
  }
  const peers = d.trusted || [];
  const online = peers.filter((p) => p.online).length;
  status.className = "";
  status.textContent = d.local.deviceName + ": " + online + " of " + peers.length + " trusted devices online";
  const W = 640, H = 420, cx = W / 2, cy = H / 2;
  const r = Math.min(W, H) / 2 - 40;
  peers.forEach((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(peers.length, 1) - Math.PI / 2;
    const x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    const state = p.online ? "online" : "offline";
    const link = svg("line", { x1: cx, y1: cy, x2: x, y2: y, stroke: p.online ? "#2a8" : "#ccc",
      "stroke-dasharray": p.online ? "" : "4 4", "data-link": p.udid });
    g.append(link);
    if (p.rttMs !== undefined) {
      g.append(svg("text", { x: (cx + x) / 2, y: (cy + y) / 2 - 3, "text-anchor": "middle", fill: "#555" },
        p.rttMs.toFixed(1) + " ms"));
    }
    const n = svg("g", { "data-udid": p.udid, "data-state": state, class: "device" });
    n.append(svg("circle", { cx: x, cy: y, r: peers.length > 16 ? 10 : 16, class: state }));
    n.append(svg("text", { x: x, y: y + (peers.length > 16 ? 22 : 30), "text-anchor": "middle" }, p.deviceName));
    g.append(n);
    const unbind = el("button", "unbind");
    unbind.addEventListener("click", async () => {
      const res = await post("/api/unbind", { id: p.udid });
      say("bind-result", res.ok ? "unbound " + p.deviceName : errText(res.j, res.status), res.ok);
    });
    body.append(row([p.deviceName, p.networkId || "", state,
      p.rttMs !== undefined ? p.rttMs.toFixed(1) + " ms" : (p.linkError ? p.linkError.error : ""), unbind],
      { "data-udid": p.udid, "data-state": state }));
  });
  const me = svg("g", { "data-udid": d.local.udid, "data-state": "local", class: "device" });
  me.append(svg("circle", { cx, cy, r: 22, class: "local" }));
  me.append(svg("text", { x: cx, y: cy + 38, "text-anchor": "middle" }, d.local.deviceName));
  g.append(me);
  fillDeviceSelect(d);
  perf.topologyRenders.push({ devices: peers.length + 1, ms: performance.now() - t0 });
  if (perf.topologyRenders.length > 100) perf.topologyRenders.shift();
}

function fillDeviceSelect(d) {
  for (const sel of [$("device-select"), $("log-device"), $("send-device")]) {
    const keep = sel.value;
    const fixed = sel.id === "log-device" ? [["local", "this device"], ["all", "all devices"]]
      : sel.id === "send-device" ? [] : [["local", d.local.deviceName + " (this device)"]];
    sel.replaceChildren();
    for (const [v, t] of fixed) sel.append(el("option", t, { value: v }));
    for (const p of d.trusted || []) {
      if (p.online && p.networkId) sel.append(el("option", p.deviceName, { value: p.networkId }));
    }
    if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
  }
}

let events = null;
function startEvents() {
  events = new EventSource("/api/events");
  events.addEventListener("devices", (e) => drawDevices(JSON.parse(e.data)));
  events.onerror = () => {
    // The console itself went away (or restarted): show it, EventSource retries by itself.
    const s = $("status");
    s.className = "offline";
    s.textContent = "the console is unreachable; retrying";
  };
}

$("bind-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await post("/api/bind", { id: $("bind-id").value, pin: $("bind-pin").value });
  say("bind-result", r.ok ? "bound " + r.j.bound.deviceName : errText(r.j, r.status), r.ok);
});
$("discover").addEventListener("click", async () => {
  const body = document.querySelector("#seen tbody");
  body.replaceChildren();
  const res = await getJson("/api/discover");
  if (!res.ok) { say("bind-result", errText(res.j, res.status), false); return; }
  for (const s of res.j.seen) {
    const pin = el("input", null, { size: 8, placeholder: "PIN" });
    const b = el("button", "bind");
    b.addEventListener("click", async () => {
      const r = await post("/api/bind", { id: s.id, pin: pin.value });
      say("bind-result", r.ok ? "bound " + s.deviceName : errText(r.j, r.status), r.ok);
    });
    body.append(row([s.deviceName, s.id, s.trusted ? "yes" : "no", pin, b]));
  }
  if (!res.j.seen.length) say("bind-result", "no devices discovered", true);
});

// ---- one device ----
async function loadDevice() {
  const dev = $("device-select").value || "local";
  const res = await getJson("/api/device?device=" + encodeURIComponent(dev));
  for (const id of ["sas", "missions"]) document.querySelector("#" + id + " tbody").replaceChildren();
  if (!res.ok) { say("device-error", errText(res.j, res.status), false); return; }
  say("device-error", "", true);
  const d = res.j;
  if (Array.isArray(d.sas)) {
    for (const s of d.sas) document.querySelector("#sas tbody").append(row([s.id ?? s.saId, s.name, s.state ?? (s.running ? "running" : "")]));
  } else say("device-error", "SAs: " + errText(d.sas, 0), false);
  if (Array.isArray(d.missions)) {
    for (const m of d.missions) {
      const stop = el("button", "force-stop");
      stop.addEventListener("click", async () => {
        const r = await post("/api/abilities/force-stop", { bundleName: m.element.bundleName, device: dev });
        say("ability-result", r.ok ? "stopped " + m.element.bundleName : errText(r.j, r.status), r.ok);
        loadDevice();
      });
      const cell = el("span");
      cell.append(stop);
      if (m.pid) {
        const logsBtn = el("button", "logs");
        logsBtn.addEventListener("click", () => showPidLogs(String(m.pid)));
        cell.append(" ", logsBtn);
      }
      document.querySelector("#missions tbody").append(row([m.mission ?? "", m.element.bundleName + "/" + m.element.abilityName, m.state, m.pid ?? "", cell],
        { "data-bundle": m.element.bundleName, "data-pid": m.pid ?? "" }));
    }
  }
  const tbody = document.querySelector("#tokens tbody");
  tbody.replaceChildren();
  document.querySelector("#grants tbody").replaceChildren();
  if (Array.isArray(d.tokens)) {
    for (const t of d.tokens) {
      const b = el("button", "grants");
      b.addEventListener("click", () => loadGrants(dev, t.tokenID));
      tbody.append(row([t.tokenID, t.tokenType, t.name, t.apl, b], { "data-token": t.tokenID }));
    }
  } else if (d.tokens) tbody.append(row(["tokens: " + errText(d.tokens, 0)]));
  loadParams();
}
async function loadGrants(dev, id) {
  const body = document.querySelector("#grants tbody");
  body.replaceChildren();
  const res = await getJson("/api/token?device=" + encodeURIComponent(dev) + "&id=" + id);
  if (!res.ok) { body.append(row([errText(res.j, res.status)])); return; }
  for (const p of res.j.token.permStateList) {
    body.append(row([p.permissionName, p.granted ? "granted" : "denied", p.grantFlag], { "data-permission": p.permissionName }));
  }
}
$("device-select").addEventListener("change", loadDevice);
$("device-refresh").addEventListener("click", loadDevice);
$("start-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await post("/api/abilities/start", { bundleName: $("start-bundle").value, abilityName: $("start-ability").value, device: $("device-select").value });
  say("ability-result", r.ok ? "started " + $("start-bundle").value : errText(r.j, r.status), r.ok);
  loadDevice();
});

async function loadParams() {
  const dev = $("device-select").value || "local";
  const body = document.querySelector("#params tbody");
  body.replaceChildren();
  const res = await getJson("/api/params?device=" + encodeURIComponent(dev) + "&q=" + encodeURIComponent($("param-q").value));
  if (!res.ok) { say("param-result", errText(res.j, res.status), false); return; }
  for (const p of res.j.params) {
    const v = el("input", null, { size: 30 });
    v.value = p.value;
    const b = el("button", "set");
    b.addEventListener("click", async () => {
      const r = await post("/api/params/set", { device: dev, name: p.name, value: v.value });
      say("param-result", r.ok ? "set " + p.name : errText(r.j, r.status), r.ok);
    });
    body.append(row([p.name, v, b]));
  }
}
$("param-search").addEventListener("submit", (e) => { e.preventDefault(); loadParams(); });

// ---- KV ----
function kvWhich() { return { app: $("kv-app").value, store: $("kv-store").value }; }
async function loadKv() {
  const w = kvWhich();
  const body = document.querySelector("#kv-entries tbody");
  const res = await getJson("/api/kv?app=" + encodeURIComponent(w.app) + "&store=" + encodeURIComponent(w.store));
  body.replaceChildren();
  if (!res.ok) { say("kv-result", errText(res.j, res.status), false); return; }
  for (const e of res.j.entries) {
    const del = el("button", "delete");
    del.addEventListener("click", async () => {
      const r = await post("/api/kv/delete", { ...kvWhich(), key: e.key });
      say("kv-result", r.ok ? "deleted " + e.key : errText(r.j, r.status), r.ok);
      loadKv();
    });
    body.append(row([e.deviceId ? e.deviceId.slice(0, 8) : "here", e.key, e.value, e.deviceId ? "" : del], { "data-key": e.key }));
  }
}
$("kv-open").addEventListener("submit", (e) => { e.preventDefault(); loadKv(); });
$("kv-put-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await post("/api/kv/put", { ...kvWhich(), key: $("kv-key").value, value: $("kv-value").value });
  say("kv-result", r.ok ? "put " + $("kv-key").value : errText(r.j, r.status), r.ok);
  loadKv();
});
// A sync started from the page: its result per device in `table`, a summary in `result`,
// and a line in Transfers.
async function syncFrom(url, w, table, result) {
  const t = transfer("sync " + w.app + "/" + w.store);
  const r = await post(url, w);
  const body = document.querySelector("#" + table + " tbody");
  body.replaceChildren();
  if (!r.ok) { say(result, errText(r.j, r.status), false); t.done(errText(r.j, r.status), false); return; }
  for (const x of r.j.results) body.append(row([x.networkId.slice(0, 16), x.status], { "data-status": x.status }));
  const good = r.j.results.filter((x) => x.status === "success").length;
  const msg = "synced with " + good + " of " + r.j.results.length + " devices in " + r.j.ms + " ms";
  say(result, msg, good === r.j.results.length);
  t.done(msg, good === r.j.results.length);
}
$("kv-sync").addEventListener("click", async () => {
  await syncFrom("/api/kv/sync", kvWhich(), "kv-sync-results", "kv-result");
  loadKv();
});

// ---- relational stores ----
function rdbWhich() { return { app: $("rdb-app").value, store: $("rdb-store").value, level: $("rdb-level").value }; }
async function loadRdbTables() {
  const span = $("rdb-tables");
  span.replaceChildren();
  const r = await post("/api/rdb/tables", rdbWhich());
  if (!r.ok) { say("rdb-result", errText(r.j, r.status), false); return; }
  for (const t of r.j.tables) {
    const a = el("a", t, { href: "#", "data-table": t });
    a.addEventListener("click", (e) => { e.preventDefault(); $("rdb-sql").value = "SELECT * FROM " + t; rdbQuery(); });
    span.append(a, " ");
  }
}
function drawRows(j) {
  const head = document.querySelector("#rdb-rows thead");
  const body = document.querySelector("#rdb-rows tbody");
  head.replaceChildren(row(j.columns.map(String)));
  body.replaceChildren();
  for (const r of j.rows) body.append(row(r.map((v) => (v === null ? "NULL" : String(v)))));
}
async function rdbQuery() {
  const r = await post("/api/rdb/query", { ...rdbWhich(), sql: $("rdb-sql").value });
  if (!r.ok) { say("rdb-result", errText(r.j, r.status), false); return; }
  drawRows(r.j);
  say("rdb-result", r.j.total + " rows" + (r.j.total > r.j.rows.length ? " (" + r.j.rows.length + " shown)" : ""), true);
}
$("rdb-open").addEventListener("submit", (e) => { e.preventDefault(); loadRdbTables(); });
$("rdb-sql-form").addEventListener("submit", (e) => { e.preventDefault(); rdbQuery(); });
$("rdb-exec").addEventListener("click", async () => {
  const r = await post("/api/rdb/exec", { ...rdbWhich(), sql: $("rdb-sql").value });
  say("rdb-result", r.ok ? "done" + (r.j.result !== null ? ": " + r.j.result : "") : errText(r.j, r.status), r.ok);
  loadRdbTables();
});
$("rdb-sync").addEventListener("click", () => syncFrom("/api/rdb/sync", rdbWhich(), "rdb-sync-results", "rdb-result"));

// ---- bundles ----
async function loadBundles() {
  const body = document.querySelector("#bundles tbody");
  const res = await getJson("/api/device?device=local");
  body.replaceChildren();
  if (!res.ok || !Array.isArray(res.j.bundles)) return;
  for (const b of res.j.bundles) {
    const u = el("button", "uninstall");
    u.addEventListener("click", async () => {
      const r = await post("/api/bundles/uninstall", { bundleName: b });
      say("bundle-verdict", r.ok ? "uninstalled " + b : errText(r.j, r.status), r.ok);
      loadBundles();
    });
    body.append(row([b, u], { "data-bundle": b }));
  }
}
$("install-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = $("bundle-file").files[0];
  if (!f) { say("bundle-verdict", "choose a .hap or .app file", false); return; }
  const t = transfer("install " + f.name);
  const r = await post("/api/bundles/install", await f.arrayBuffer(), true);
  let msg;
  if (r.ok) msg = r.j.verdict + ": " + r.j.result.bundleName + " version " + r.j.result.versionCode;
  else msg = "refused: " + errText(r.j, r.status);
  say("bundle-verdict", msg, r.ok);
  $("bundle-verdict").dataset.verdict = r.ok ? "installed" : "refused";
  t.done(msg, r.ok);
  loadBundles();
});

// ---- logs ----
const MAX_LOG_ROWS = 2000;
const logs = { source: null, paused: false, held: [], shown: 0, dropped: 0, since: performance.now(), rate: 0 };
function startLogs() {
  if (logs.source) logs.source.close();
  const q = new URLSearchParams({ device: $("log-device").value || "local", level: $("log-level").value,
    tag: $("log-tag").value, domain: $("log-domain").value, pid: $("log-pid").value });
  document.querySelector("#log-lines tbody").replaceChildren();
  logs.source = new EventSource("/api/logs?" + q);
  logs.source.addEventListener("log", (e) => {
    const b = JSON.parse(e.data);
    logs.dropped += b.dropped || 0;
    if (logs.paused) {
      logs.held.push(b);
      if (logs.held.length > 200) { logs.dropped += logs.held.shift().lines.length; }
    } else appendLines(b);
  });
  logs.source.addEventListener("logerror", (e) => {
    const b = JSON.parse(e.data);
    $("log-stats").textContent = b.device + ": " + (b.error || (b.detail && b.detail.error) || "error");
  });
}
function appendLines(b) {
  const body = document.querySelector("#log-lines tbody");
  const frag = document.createDocumentFragment();
  for (const l of b.lines) {
    const t = new Date(l.sec * 1000 + Math.floor(l.nsec / 1e6));
    let msg = l.msg;
    // A fault names the pid that died: link it to that process's own lines.
    const fault = (l.level === "E" || l.level === "F") && /pid=(\d+)/.exec(l.msg);
    if (fault) {
      msg = el("span", l.msg + " ");
      const a = el("a", "its lines", { href: "#", "data-pid": fault[1], class: "fault-link" });
      a.addEventListener("click", (e) => { e.preventDefault(); showPidLogs(fault[1]); });
      msg.append(a);
    }
    frag.append(row([b.device === "local" ? "here" : b.device.slice(0, 8), t.toISOString().slice(11, 23), l.pid, l.level,
      l.domain + "/" + l.tag, msg], { class: "level-" + l.level }));
  }
  body.append(frag);
  while (body.rows.length > MAX_LOG_ROWS) body.deleteRow(0);
  logs.shown += b.lines.length;
  perf.linesShown = logs.shown;
}
setInterval(() => {
  const now = performance.now();
  logs.rate = (logs.shown - (logs.lastShown || 0)) / ((now - logs.since) / 1000);
  logs.lastShown = logs.shown;
  logs.since = now;
  perf.logRate = logs.rate;
  if (logs.source) $("log-stats").textContent = logs.shown + " lines shown, " + logs.rate.toFixed(0) + "/s" + (logs.dropped ? ", " + logs.dropped + " dropped (the page fell behind)" : "") + (logs.paused ? " — paused" : "");
}, 1000);
function showPidLogs(pid) {
  $("log-pid").value = pid;
  $("log-level").value = "";
  $("log-tag").value = "";
  $("log-domain").value = "";
  show("logs");
  startLogs();
}
$("log-filter").addEventListener("submit", (e) => { e.preventDefault(); startLogs(); });
$("log-pause").addEventListener("click", () => {
  logs.paused = !logs.paused;
  $("log-pause").textContent = logs.paused ? "Resume" : "Pause";
  if (!logs.paused) { for (const b of logs.held) appendLines(b); logs.held = []; }
});

// ---- transfers ----
function transfer(what) {
  const p = el("progress");
  const res = el("span", "running");
  const tr = row([what, p, res]);
  document.querySelector("#transfers tbody").prepend(tr);
  return {
    done(msg, ok) {
      p.max = 1; p.value = 1;
      res.textContent = msg;
      tr.dataset.state = ok ? "done" : "failed";
    },
  };
}

// ---- file sends ----
let sendPoll = null;
async function loadSends() {
  const res = await getJson("/api/transfers");
  if (!res.ok) return;
  const body = document.querySelector("#sends tbody");
  body.replaceChildren();
  for (const t of res.j.transfers.slice().reverse()) {
    const p = el("progress", null, { max: Math.max(t.total, 1) });
    p.value = t.sent;
    body.append(row([t.what, p, t.sent + " / " + t.total, t.result || t.state], { "data-id": t.id, "data-state": t.state }));
  }
  const running = res.j.transfers.some((t) => t.state === "running");
  if (!running && sendPoll) { clearInterval(sendPoll); sendPoll = null; }
  if (running && !sendPoll) sendPoll = setInterval(loadSends, 300);
}
$("send-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = $("send-file").files[0];
  if (!f) { say("send-result", "choose a file", false); return; }
  const q = new URLSearchParams({ device: $("send-device").value, session: $("send-session").value, name: f.name });
  const r = await post("/api/bus/send?" + q, await f.arrayBuffer(), true);
  say("send-result", r.ok ? "sending " + f.name : errText(r.j, r.status), r.ok);
  loadSends();
});

startEvents();
