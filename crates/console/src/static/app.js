// The console page: devices as a graph and a table, refreshed every 2 s. Every text from the
// daemon (device names are outside input) goes in through textContent, never as markup.
"use strict";
const SVG = "http://www.w3.org/2000/svg";

function node(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function draw(d) {
  const status = document.getElementById("status");
  const svg = document.getElementById("topology");
  const body = document.querySelector("#devices tbody");
  svg.replaceChildren();
  body.replaceChildren();
  if (d.daemon !== "online") {
    status.className = "offline";
    status.textContent = "the local daemon is offline";
    return;
  }
  status.className = "";
  status.textContent = d.local.deviceName + " and " + d.trusted.length + " trusted devices";
  const cx = 240, cy = 160, r = 110;
  const peers = d.trusted;
  peers.forEach((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(peers.length, 1);
    const x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    svg.append(node("line", { x1: cx, y1: cy, x2: x, y2: y, stroke: p.online ? "#2a8" : "#ccc",
      "stroke-dasharray": p.online ? "" : "4 4" }));
    const g = node("g", { "data-udid": p.udid, "data-state": p.online ? "online" : "offline" });
    g.append(node("circle", { cx: x, cy: y, r: 18, class: p.online ? "online" : "offline" }));
    g.append(node("text", { x: x, y: y + 32, "text-anchor": "middle" }, p.deviceName));
    svg.append(g);
  });
  const me = node("g", { "data-udid": d.local.udid, "data-state": "local" });
  me.append(node("circle", { cx, cy, r: 22, class: "local" }));
  me.append(node("text", { x: cx, y: cy + 38, "text-anchor": "middle" }, d.local.deviceName));
  svg.append(me);
  for (const p of peers) {
    const tr = document.createElement("tr");
    tr.dataset.udid = p.udid;
    for (const t of [p.deviceName, p.networkId || "", p.online ? "online" : "offline"]) {
      const td = document.createElement("td");
      td.textContent = t;
      tr.append(td);
    }
    body.append(tr);
  }
}

async function refresh() {
  try {
    const r = await fetch("/api/devices", { credentials: "same-origin" });
    draw(await r.json());
  } catch (e) {
    draw({ daemon: "offline" });
  }
}

refresh();
setInterval(refresh, 2000);
