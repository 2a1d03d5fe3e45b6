// Railgun's live dashboard: polls /stats and draws SVG plots. No
// dependencies; everything ships in the package.
"use strict";
(function () {
  const OUTCOMES = ["same", "delta", "full", "raw", "direct", "refused", "error"];
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const interval = Math.max(0.1, parseFloat(params.get("interval") || "2"));
  const keep = 300;  // samples kept for the plots
  const history = [];

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const key in attrs) node.setAttribute(key, attrs[key]);
    if (parent) parent.appendChild(node);
    return node;
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  // The edge counts what clients were served; an origin role alone
  // still shows its link bytes.
  function totals(doc) {
    const roles = doc.roles || {};
    const main = roles.edge || roles.origin || { total: {} };
    const t = main.total || {};
    const served = t.body_bytes_served || t.body_bytes_from_origin || 0;
    const link = t.body_bytes_on_link || 0;
    return {
      time: doc.time,
      requests: OUTCOMES.reduce((s, o) => s + ((t.outcomes || {})[o] || 0), 0),
      outcomes: t.outcomes || {},
      saved: Math.max(0, served - link),
      ratio: served ? 100 * link / served : 0,
    };
  }

  function linePlot(svg, values, cls, format) {
    svg.textContent = "";
    const w = 400, h = 150, pad = 4;
    const max = Math.max(1e-9, ...values);
    const step = values.length > 1 ? (w - 2 * pad) / (values.length - 1) : 0;
    const points = values.map((v, i) =>
      (pad + i * step).toFixed(1) + "," + (h - pad - (h - 2 * pad) * v / max).toFixed(1));
    el("polyline", { class: "line " + cls, points: points.join(" "),
                     "data-count": values.length }, svg);
    const label = el("text", { x: 6, y: 12 }, svg);
    label.textContent = "max " + format(max) + ", now " + format(values[values.length - 1] || 0);
  }

  function barPlot(svg, outcomes) {
    svg.textContent = "";
    const w = 400, h = 150, slot = w / OUTCOMES.length;
    const max = Math.max(1, ...OUTCOMES.map((o) => outcomes[o] || 0));
    OUTCOMES.forEach((o, i) => {
      const n = outcomes[o] || 0;
      const height = (h - 30) * n / max;
      el("rect", { class: "bar " + o, x: i * slot + 6, y: h - 16 - height,
                   width: slot - 12, height: height, "data-outcome": o, "data-value": n }, svg);
      const name = el("text", { x: i * slot + 6, y: h - 4 }, svg);
      name.textContent = o;
      const value = el("text", { x: i * slot + 6, y: h - 20 - height }, svg);
      value.textContent = String(n);
    });
  }

  function rows(table, data) {
    const body = table.querySelector("tbody");
    body.textContent = "";
    for (const cells of data) {
      const tr = document.createElement("tr");
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function render(doc) {
    history.push(totals(doc));
    if (history.length > keep) history.shift();
    const now = history[history.length - 1];
    document.getElementById("requests-total").textContent = String(now.requests);
    document.getElementById("saved-total").textContent = bytes(now.saved);
    document.getElementById("ratio-now").textContent = now.ratio.toFixed(2) + " %";
    document.getElementById("samples").textContent = String(history.length);
    linePlot(document.getElementById("plot-saved"), history.map((s) => s.saved), "saved", bytes);
    linePlot(document.getElementById("plot-ratio"), history.map((s) => s.ratio), "ratio",
             (v) => v.toFixed(2) + " %");
    barPlot(document.getElementById("plot-outcomes"), now.outcomes);
    const hosts = [], links = [];
    let up = 0, size = 0;
    for (const [role, r] of Object.entries(doc.roles || {})) {
      for (const [host, c] of Object.entries(r.hosts || {})) {
        const served = c.body_bytes_served || c.body_bytes_from_origin || 0;
        const requests = OUTCOMES.reduce((s, o) => s + ((c.outcomes || {})[o] || 0), 0);
        const link = c.body_bytes_on_link || 0;
        hosts.push([role, host, requests, bytes(served), bytes(link),
                    (served ? 100 * link / served : 0).toFixed(2) + " %"]);
      }
      for (const pool of r.links || []) {
        if (role === "edge") { up += pool.up; size += pool.size; }
        const rtts = pool.links.filter((l) => l.rtt_seconds !== null)
          .map((l) => (1000 * l.rtt_seconds).toFixed(2) + " ms");
        const streams = pool.links.reduce((s, l) => s + l.open_streams, 0);
        const failures = Object.entries(pool.failures || {}).map(([k, v]) => k + " " + v);
        links.push([role, pool.address, pool.size ? pool.up + "/" + pool.size : String(pool.up),
                    rtts.join(", ") || "–", streams, failures.join(", ") || "–"]);
      }
    }
    rows(document.getElementById("hosts"), hosts);
    rows(document.getElementById("links"), links);
    document.getElementById("links-up").textContent = size ? up + "/" + size : "–";
    const status = document.getElementById("status");
    const ready = Object.values(doc.roles || {}).every((r) => r.ready);
    status.textContent = (ready ? "ready" : "not ready") + " · " + doc.hostname +
      " · v" + doc.version + " · updated " + new Date(doc.time * 1000).toLocaleTimeString();
    status.className = ready ? "status" : "status bad";
  }

  async function poll() {
    try {
      const response = await fetch("stats", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
    } catch (e) {
      const status = document.getElementById("status");
      status.textContent = "cannot read /stats: " + e.message;
      status.className = "status bad";
    }
    setTimeout(poll, interval * 1000);
  }

  document.getElementById("interval").textContent = String(interval);
  poll();
})();
