//! The status page of the admin API: one self-contained HTML document (no CDN, no build step)
//! that polls `/status` every two seconds and shows containers, traffic and a chart of the last
//! five minutes. Traffic comes from the history sitecar keeps (`traffic.history`), so a page opened
//! now shows what happened before; CPU % comes from differences between polls.

pub const STATUS_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>sitecar status</title>
<style>
 body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
 header h1{font-size:18px;margin:0}
 main{padding:20px 24px;max-width:1200px}
 .badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;font-size:12px;background:#888;color:#fff}
 .ready,.running,.ok{background:#1f9d55}.starting,.restarting,.backing-off,.waiting{background:#d69e2e}
 .unhealthy,.stopped,.stopping,.bad,.down{background:#e3342f}
 .cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:12px;margin-bottom:18px}
 .card{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 2px #0001}
 .card .v{font-size:22px;font-weight:600}.card .k{color:#667;font-size:12px}
 table{width:100%;border-collapse:collapse;background:#fff;border-radius:8px;box-shadow:0 1px 2px #0001;overflow:hidden}
 th,td{text-align:left;padding:8px 10px;border-bottom:1px solid #eef}th{background:#fafbfc;color:#556;font-weight:600;font-size:12px}
 td.n{text-align:right;font-variant-numeric:tabular-nums}
 h2{font-size:15px;margin:22px 0 8px}
 svg{background:#fff;border-radius:8px;box-shadow:0 1px 2px #0001;width:100%;height:auto}
 #err{color:#e3342f;font-weight:600}
 small{color:#667}
</style></head>
<body>
<header><h1>sitecar</h1><span>main <span id="main" class="badge">…</span></span>
<span id="listen"></span><span id="err"></span><small id="updated"></small></header>
<main>
<div class="cards">
 <div class="card"><div class="v" id="rps">–</div><div class="k">requests / s, last minute</div></div>
 <div class="card"><div class="v" id="errors">–</div><div class="k">5xx share, last minute</div></div>
 <div class="card"><div class="v" id="p50">–</div><div class="k">p50 latency, last minute</div></div>
 <div class="card"><div class="v" id="p99">–</div><div class="k">p99 latency, last minute</div></div>
 <div class="card"><div class="v" id="active">–</div><div class="k">in flight</div></div>
 <div class="card"><div class="v" id="total">–</div><div class="k">requests since start</div></div>
</div>
<h2>Containers</h2>
<table><thead><tr><th>name</th><th>role</th><th>state</th><th>health</th><th class="n">restarts</th>
<th class="n">uptime</th><th class="n">pid</th><th class="n">CPU</th><th class="n">memory</th><th>last exit</th></tr></thead>
<tbody id="containers"></tbody></table>
<h2>Requests per second, last 5 minutes <small>(<span style="color:#3869d4">all</span>, <span style="color:#e3342f">5xx</span>; 5-second buckets)</small></h2>
<svg id="chart" viewBox="0 0 640 170">
 <g id="axes" stroke="#99a" stroke-width="1"><line x1="50" y1="10" x2="50" y2="140"/><line x1="50" y1="140" x2="630" y2="140"/></g>
 <g id="ticks" font-size="11" fill="#667"></g>
 <g id="bars"></g>
</svg>
</main>
<script>
"use strict";
const token = (location.hash.match(/token=([^&]+)/) || [])[1];
const headers = token ? {Authorization: "Bearer " + decodeURIComponent(token)} : {};
let cpuPrev = {};
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}[c]));
function dur(ms){ if(ms==null) return "–"; let s=Math.floor(ms/1000); if(s<60) return s+" s"; let m=Math.floor(s/60); if(m<60) return m+" min"; return Math.floor(m/60)+" h "+(m%60)+" min"; }
function ms(s){ return s==null ? "–" : s==="+Inf" ? "> 10 s" : "≤ "+Math.round(s*1000)+" ms"; }
function num(v){ return v>=100 ? v.toFixed(0) : v>=10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/,"") || "0"; }
// The chart: x from 5 minutes ago (x=50) to now (x=630), y from 0 (y=140) to the largest rate.
function chart(h, now){
  const span = 300000, b = h.bucket_seconds || 5;
  const w = 580*b*1000/span;
  const pts = (h.buckets||[]).map(k => ({x: 50 + 580*Math.max(0, 1 - (now - k.end_ms)/span) - w, all: k.requests/b, bad: k.server_errors/b})).filter(p => p.x >= 50);
  const max = Math.max(1, ...pts.map(p => p.all));
  const y = v => (140 - v*125/max).toFixed(1);
  // A bar per 5-second bucket: all requests in blue, the 5xx among them in red.
  $("bars").innerHTML = pts.map(p =>
    `<rect class="all" x="${p.x.toFixed(1)}" y="${y(p.all)}" width="${(w-1).toFixed(1)}" height="${(140-y(p.all)).toFixed(1)}" fill="#3869d4"/>` +
    (p.bad ? `<rect class="bad" x="${p.x.toFixed(1)}" y="${y(p.bad)}" width="${(w-1).toFixed(1)}" height="${(140-y(p.bad)).toFixed(1)}" fill="#e3342f"/>` : "")).join("");
  const ticks = [[0,"0"],[max/2,num(max/2)],[max,num(max)]].map(([v,t]) => `<text x="44" y="${+y(v)+4}" text-anchor="end">${t}</text>`);
  ticks.push(`<text x="50" y="158" text-anchor="start">−5 min</text>`, `<text x="340" y="158" text-anchor="middle">−2.5 min</text>`, `<text x="630" y="158" text-anchor="end">now</text>`);
  $("ticks").innerHTML = ticks.join("");
}
function render(st){
  $("main").textContent = st.main; $("main").className = "badge " + st.main;
  $("listen").textContent = (st.proxy && st.proxy.listen || []).join("  ");
  const now = st.now_ms || Date.now(), t = st.traffic;
  if(t){
    $("total").textContent = t.requests; $("active").textContent = t.active;
    const h = t.history || {}, m = h.last_minute || {};
    if(m.seconds){
      $("rps").textContent = num(m.requests / m.seconds);
      $("errors").textContent = m.requests ? (m.server_errors*100/m.requests).toFixed(1)+" %" : "0 %";
      $("p50").textContent = ms(m.p50); $("p99").textContent = ms(m.p99);
    }
    chart(h, now);
  }
  const rows = (st.containers||[]).map(c => {
    let cpu = "–";
    if(c.cpu_seconds!=null && cpuPrev[c.name] && cpuPrev[c.name].pid===c.pid){
      const dt=(now-cpuPrev[c.name].at)/1000; if(dt>0) cpu=((c.cpu_seconds-cpuPrev[c.name].cpu)*100/dt).toFixed(1)+" %";
    }
    if(c.cpu_seconds!=null) cpuPrev[c.name] = {cpu:c.cpu_seconds, at:now, pid:c.pid};
    const health = c.healthy==null ? "–" : c.healthy ? "<span class='badge ok'>healthy</span>" : "<span class='badge bad'>failing</span>";
    const exit = c.last_exit ? Object.entries(c.last_exit).map(([k,v])=>k+" "+v).join("") : "–";
    const mem = c.rss_bytes!=null ? (c.rss_bytes/1048576).toFixed(1)+" MiB" : "–";
    return `<tr data-container="${esc(c.name)}"><td><b>${esc(c.name)}</b></td><td>${c.is_main?"main":"sidecar"}</td>`+
      `<td><span class="badge ${esc(c.phase)}">${esc(c.phase)}</span></td><td>${health}</td><td class="n restarts">${c.restarts}</td>`+
      `<td class="n">${c.started_at_ms?dur(now-c.started_at_ms):"–"}</td><td class="n">${c.pid??"–"}</td><td class="n">${cpu}</td><td class="n">${mem}</td><td>${esc(exit)}</td></tr>`;
  });
  $("containers").innerHTML = rows.join("");
  $("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
}
async function tick(){
  try{ const r = await fetch("/status",{headers, cache:"no-store"}); if(!r.ok) throw new Error(r.status); $("err").textContent=""; render(await r.json()); }
  catch(e){ $("err").textContent = "sitecar is not answering ("+e.message+")"; }
}
tick(); setInterval(tick, 2000);
</script></body></html>
"##;
