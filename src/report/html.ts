/**
 * The report page: one self-contained HTML file. Everything from users' files is HTML-escaped as
 * text; figure data travels as JSON in <script type="application/json"> with <, >, &, U+2028/2029
 * escaped so no label can close the script element (OWASP XSS prevention, rule 3.1).
 */
import { showInvisible } from '../io/escape.js';
import type { Figure } from './figures/common.js';
import { VERSION } from '../version.js';

export function escapeHtml(s: string): string {
  // Bidi and control characters from tensor names are shown escaped, not obeyed (Trojan Source).
  return showInvisible(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

export function jsonForScript(v: unknown): string {
  // Figure labels come from users' files: their bidi and control characters are shown escaped too.
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' ? showInvisible(x) : x)).replace(/</g, '\\u003c').replace(/>/g, '\\u003e').replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/** The summary table: `notes` gives a header's tooltip (its `title`), keyed by column name. */
export interface TableData { columns: string[]; rows: (string | number | null)[][]; notes?: Record<string, string> }

/** One result card: a run's headline numbers, and the paper's value with the verdict where the method maps to it. */
export interface ResultCard {
  run: string; method: string;
  /** What the numbers are over (modules, checkpoints, n). */
  caption: string;
  /** Lines of "label: value" under the run's name (r and slope with their intervals, and what they pool). */
  lines: [string, string][];
  paper?: { lines: [string, string][]; verdict: 'agrees' | 'opposite' | 'inconclusive'; rule: string } | undefined;
}

/** Provenance: facts about this page, tables of the inputs and timings, and each raw manifest.json. */
export interface Provenance { facts: [string, string][]; tables: { title: string; table: TableData }[]; raw: { label: string; text: string }[] }

export interface PageInput {
  title: string; figures: Figure[]; table: TableData;
  cards?: ResultCard[];
  provenance: Provenance;
  /** Inline plotly.js source, or a URL (`--plotly-src`). */
  plotly: { inline: string } | { src: string };
}

/** The height a figure will take, reserved before it draws (so undrawn figures below the screen stay below it). */
function figureHeight(f: Figure): number {
  const h = f.layout.height;
  return typeof h === 'number' && Number.isFinite(h) && h > 0 ? Math.round(h) : 450;
}

function tableCells(t: TableData): { th: string; tr: string } {
  const th = t.columns.map((c, i) => {
    const note = t.notes?.[c];
    return `<th data-col="${i}"${note ? ` title="${escapeHtml(note)}"` : ''}>${escapeHtml(c)}</th>`;
  }).join('');
  const tr = t.rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c === null ? 'n/a' : String(c))}</td>`).join('')}</tr>`).join('\n');
  return { th, tr };
}

const dl = (lines: [string, string][]): string => `<dl>${lines.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('')}</dl>`;

function cardHtml(c: ResultCard): string {
  const verdict = c.paper
    ? `<span class="verdict ${c.paper.verdict}" title="${escapeHtml(c.paper.rule)}">${escapeHtml(c.paper.verdict)}</span> <small>vs the paper</small>`
    : '';
  return `<div class="card" data-run="${escapeHtml(c.run)}"${c.paper ? ` data-verdict="${c.paper.verdict}"` : ''}><h3>${escapeHtml(c.run)} <small>(${escapeHtml(c.method)})</small></h3>`
    + `${dl([...c.lines, ...(c.paper?.lines ?? [])])}<p class="cap">${escapeHtml(c.caption)}</p>${verdict}</div>`;
}

function provenanceHtml(p: Provenance): string {
  const tables = p.tables.map(({ title, table }) => {
    const { th, tr } = tableCells(table);
    return `<h3>${escapeHtml(title)}</h3><table class="prov"><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
  }).join('\n');
  const raw = p.raw.map((r) => `<details><summary>${escapeHtml(r.label)}</summary><pre>${escapeHtml(r.text)}</pre></details>`).join('\n');
  return `${dl(p.facts)}\n${tables}\n${raw}`;
}

export function renderPage(p: PageInput): string {
  // plotly.js loads at the end of <body>: some of its WebGL modules (to-px, via gl-text) measure CSS units by
  // appending to document.body as they load, which is null in <head>.
  // CSP: with plotly inlined nothing may load; with --plotly-src the user chose an external copy (a relative
  // path or URL cannot be named as a CSP source expression, so scripts from file:/http(s): are allowed then).
  const plotlyTag = 'inline' in p.plotly
    ? `<script>${p.plotly.inline.replace(/<\/script/gi, '<\\/script')}</script>`
    : `<script src="${escapeHtml(p.plotly.src)}"></script>`;
  const { th, tr } = tableCells(p.table);
  const prov = provenanceHtml(p.provenance);
  const cards = (p.cards ?? []).map(cardHtml).join('\n');
  const figs = p.figures.map((f) => `<section><h2>${escapeHtml(f.title)}</h2><div class="fig" id="${escapeHtml(f.id)}" style="min-height:${figureHeight(f)}px"></div></section>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="dorascope ${escapeHtml(VERSION)}"><title>${escapeHtml(p.title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'${'src' in p.plotly ? " 'self' file: https: http:" : ''}; style-src 'unsafe-inline'; img-src data: blob:; worker-src blob:">
<style>body{font-family:system-ui,sans-serif;margin:1.5em}h2{font-size:1em}h3{font-size:.95em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}th{background:#eee}#summary th{cursor:pointer}th[title]{text-decoration:underline dotted}dt{font-weight:bold}
.cards{display:flex;flex-wrap:wrap;gap:1em;margin:1em 0}.card{border:1px solid #ccc;border-radius:6px;padding:.6em 1em;min-width:16em;max-width:24em}.card .cap{font-size:.8em;color:#666;margin:.4em 0 0}.card h3{margin:.1em 0 .4em;font-size:1.05em}.card dl{display:grid;grid-template-columns:auto auto;gap:.1em .8em;margin:0}.card dt{font-weight:normal;color:#555}.card dd{margin:0;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;margin-top:.5em;padding:.1em .6em;border-radius:1em;font-weight:bold}.agrees{background:#d8f0dc;color:#14532d}.opposite{background:#f8d7d7;color:#7f1d1d}.inconclusive{background:#eee;color:#444}
.prov td{font-size:.9em}pre{white-space:pre-wrap;word-break:break-all;font-size:.8em;background:#f6f6f6;padding:.5em}</style>
</head><body>
<h1>${escapeHtml(p.title)}</h1>
${cards ? `<section class="cards" id="cards">${cards}</section>` : ''}
<h2>Summary</h2>
<table id="summary"><thead><tr>${th}</tr></thead><tbody>
${tr}
</tbody></table>
<p><label><input type="checkbox" id="shared"> shared axes (Figure 2: every panel on the first panel's ranges)</label></p>
${figs}
<h2>Provenance</h2>${prov}
${plotlyTag}
<script type="application/json" id="figdata">${jsonForScript(p.figures)}</script>
<script>
(function () {
  var figs = JSON.parse(document.getElementById('figdata').textContent);
  // The axes each subplot links to when "shared axes" is on (layout.meta.shareable; figures/scatter.ts).
  var shared = figs.map(function (f) { return (f.layout.meta && f.layout.meta.shareable) || {}; });
  // Figures draw when they come near the screen (IntersectionObserver), one per task in page order, so the
  // first screen shows without waiting for the figures below it (each costs up to a second or so in software
  // WebGL at 70B scale). window.dorascope.drawAll() draws the rest (image export, tests, the benchmark);
  // <html data-shown> is set when the figures near the first screen are drawn, data-drawn when all are.
  var t0 = performance.now(), timings = [], left = figs.length, chain = Promise.resolve(), done = {}, drawn = {}, finish;
  var ready = new Promise(function (res) { finish = res; });
  function draw(f) {
    if (done[f.id]) return done[f.id];
    return (done[f.id] = chain = chain.then(function () {
      return new Promise(function (res) { setTimeout(res, 0); });
    }).then(function () {
      var t = performance.now();
      return Plotly.newPlot(f.id, f.data, f.layout, { responsive: true, displaylogo: false }).then(function () {
        timings.push({ id: f.id, ms: performance.now() - t });
        drawn[f.id] = true;
        if (--left === 0) { document.documentElement.setAttribute('data-drawn', String(performance.now() - t0)); finish(timings); }
      });
    }).catch(function (e) {
      document.documentElement.setAttribute('data-drawn', 'error');
      console.error('dorascope: figure ' + f.id + ' failed to draw: ' + e);
      finish(timings); // never leave a caller of drawAll() waiting
    }));
  }
  function drawAll() { figs.forEach(draw); return ready; }
  if (figs.length === 0) { document.documentElement.setAttribute('data-drawn', '0'); document.documentElement.setAttribute('data-shown', '0'); finish(timings); }
  else if (typeof IntersectionObserver === 'undefined') drawAll().then(function () { document.documentElement.setAttribute('data-shown', String(performance.now() - t0)); });
  else {
    var byId = {}, first = true;
    figs.forEach(function (f) { byId[f.id] = f; });
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { if (e.isIntersecting) { io.unobserve(e.target); draw(byId[e.target.id]); } });
      if (first) {
        first = false;
        chain.then(function () { document.documentElement.setAttribute('data-shown', String(performance.now() - t0)); });
      }
    }, { rootMargin: '0px 0px 200px 0px' });
    figs.forEach(function (f) { io.observe(document.getElementById(f.id)); });
  }
  window.dorascope = { ready: ready, timings: timings, drawAll: drawAll };
  document.getElementById('shared').addEventListener('change', function (e) {
    figs.forEach(function (f, i) {
      var upd = {};
      Object.keys(shared[i]).forEach(function (k) {
        var v = e.target.checked ? shared[i][k] : null;
        if (drawn[f.id]) upd[k + '.matches'] = v;
        else if (f.layout[k]) f.layout[k].matches = v; // not drawn yet: it will draw with the current choice
      });
      if (Object.keys(upd).length) Plotly.relayout(f.id, upd);
    });
  });
  // Sortable summary table: click a header; numbers sort numerically.
  document.querySelectorAll('#summary th').forEach(function (th) {
    th.addEventListener('click', function () {
      var i = +th.dataset.col, body = document.querySelector('#summary tbody');
      var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
      Array.from(body.rows).sort(function (a, b) {
        var x = a.cells[i].textContent, y = b.cells[i].textContent, nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      }).forEach(function (r) { body.appendChild(r); });
    });
  });
})();
</script>
</body></html>
`;
}
