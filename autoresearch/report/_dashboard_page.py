"""The dashboard's one page. Its script builds every element with ``createElement`` and
``textContent``: text from the run (descriptions, reasons, diffs, logs) is never HTML."""

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>autoresearch dashboard</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style nonce="{{NONCE}}">
body{font:14px/1.45 system-ui,sans-serif;margin:1.2em auto;max-width:1200px;padding:0 1em}
h1{font-size:1.35em;margin:.2em 0}h2{font-size:1.05em;margin:1.2em 0 .3em}
#summary,#confirm{color:#444}img{max-width:100%;border:1px solid #eee}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #eee;padding:.2em .5em;
text-align:left;vertical-align:top}tr.row{cursor:pointer}tr.row:hover{background:#f6f9ff}
.keep{color:#1a6e1a;font-weight:600}.discard{color:#777}.running{color:#0a6aa1}
.crash,.timeout,.oom,.invalid,.gate_failed,.interrupted{color:#b00}
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:24em;white-space:pre-wrap}
#live{font-size:.85em;color:#888}
</style></head><body>
<h1 id="title">autoresearch</h1>
<div id="summary"></div><div id="confirm"></div><div id="live"></div>
<p><img id="plot" alt="progress"></p>
<h2>In flight</h2><div id="inflight">nothing</div>
<h2>Experiments</h2>
<table><thead><tr><th>#</th><th>id</th><th>status</th><th id="metric">value</th><th>runs</th>
<th>description</th><th>reason</th></tr></thead><tbody id="rows"></tbody></table>
<h2 id="detail-title">Experiment (click a row)</h2>
<h3>diff</h3><pre id="diff"></pre><h3>log (end)</h3><pre id="log"></pre>
<script nonce="{{NONCE}}">
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
const headers = token ? {"X-Autoresearch-Token": token} : {};
const q = token ? "&token=" + encodeURIComponent(token) : "";
let version = null;
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function fmt(v) { return v === null || v === undefined ? "-" : Number(v).toPrecision(6); }
async function show(id) {
  const r = await fetch("api/experiments/" + id, {headers});
  if (!r.ok) return;
  const d = await r.json();
  document.getElementById("detail-title").textContent =
    "Experiment " + d.id + " (" + d.status + "): " + d.description;
  document.getElementById("diff").textContent = d.diff || "(no diff)";
  document.getElementById("log").textContent = d.log_tail || "(no log)";
}
function render(s) {
  document.getElementById("title").textContent = s.tag ?
    s.title + " · run " + s.tag + " (" + s.state + ")" : "autoresearch";
  document.getElementById("summary").textContent = s.summary || s.message || "";
  document.getElementById("confirm").textContent = s.confirm || "";
  document.getElementById("metric").textContent = s.metric || "value";
  if (s.tag) document.getElementById("plot").src = "api/progress.png?v=" + s.version + q;
  const body = document.getElementById("rows");
  body.replaceChildren();
  for (const r of [...s.rows].reverse()) {
    const tr = el("tr", null, "row");
    tr.dataset.id = r.id;
    tr.id = "exp-" + r.id;
    tr.append(el("td", r.index), el("td", r.id), el("td", r.status, r.status),
      el("td", fmt(r.value) + (r.se ? " ± " + Number(r.se).toPrecision(2) : "")),
      el("td", r.runs), el("td", r.description), el("td", r.reason));
    tr.addEventListener("click", () => show(r.id));
    body.append(tr);
  }
  const box = document.getElementById("inflight");
  box.replaceChildren();
  if (!s.running || !s.running.length) box.textContent = "nothing";
  for (const r of s.running || []) {
    box.append(el("div", "experiment " + r.id + ": " + r.description, "running"));
    box.append(el("pre", r.log_tail || "(no output yet)"));
  }
}
async function poll() {
  try {
    const r = await fetch("api/state", {headers});
    if (r.ok) {
      const s = await r.json();
      if (s.version !== version) { version = s.version; render(s); }
      document.getElementById("live").textContent =
        "live · updated " + new Date().toLocaleTimeString();
    }
  } catch (e) {
    document.getElementById("live").textContent = "disconnected: " + e;
  }
  setTimeout(poll, {{POLL_MS}});
}
poll();
</script></body></html>
"""
