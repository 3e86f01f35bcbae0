/**
 * The report's provenance: who made the page and how, each analysis folder's inputs (base and runs, with
 * their sizes on disk as manifest.json records them) and timings, as readable tables; each manifest.json
 * in full behind a disclosure.
 */
import { resolve } from 'node:path';
import { VERSION } from '../version.js';
import type { Analysis } from './load.js';
import type { Provenance } from './html.js';

/** 1234567 → "1.23 MB" (SI units, as file managers show them); null → "n/a". */
export function formatBytes(n: unknown): string {
  if (typeof n !== 'number' || !Number.isFinite(n)) return 'n/a';
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000, u = 0;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

interface ManifestRun { run?: unknown; path?: unknown; method?: unknown; checkpoints?: { bytes?: unknown }[] }
interface Manifest {
  tool?: unknown; version?: unknown; created?: unknown; command?: unknown;
  base?: { path?: unknown; kind?: unknown; bytes?: unknown }; runs?: ManifestRun[]; tensors?: unknown;
  timings?: { seconds?: unknown; bytes_read?: unknown; workers?: unknown };
}

const str = (v: unknown): string | null => (v === undefined || v === null ? null : Array.isArray(v) ? v.map(String).join(' ') : String(v));

function sumBytes(cks: { bytes?: unknown }[] | undefined): number | null {
  if (!Array.isArray(cks) || cks.length === 0) return null;
  let total = 0;
  for (const c of cks) { if (typeof c?.bytes !== 'number') return null; total += c.bytes; }
  return total;
}

export function provenance(analyses: readonly Analysis[], command: readonly string[] | undefined): Provenance {
  const facts: [string, string][] = [
    ['report made by', `dorascope ${VERSION}`], ['date', new Date().toISOString()],
    ['command', (command ?? process.argv.slice(1)).join(' ')],
  ];
  const inputs: (string | number | null)[][] = [];
  const timings: (string | number | null)[][] = [];
  analyses.forEach((a, i) => {
    const folder = analyses.length > 1 ? `${i + 1}: ${resolve(a.dir)}` : resolve(a.dir);
    const m = (a.manifest ?? {}) as Manifest;
    if (m.base) inputs.push([folder, 'base', str(m.base.path), str(m.base.kind), null, formatBytes(m.base.bytes)]);
    for (const r of Array.isArray(m.runs) ? m.runs : []) {
      inputs.push([folder, `run ${str(r.run) ?? '?'} (${str(r.method) ?? '?'})`, str(r.path), null,
        Array.isArray(r.checkpoints) ? r.checkpoints.length : null, formatBytes(sumBytes(r.checkpoints))]);
    }
    if (!m.base && !Array.isArray(m.runs)) inputs.push([folder, 'analysis folder', resolve(a.dir), null, null, 'n/a (no manifest.json)']);
    const t = m.timings ?? {};
    timings.push([folder, [str(m.tool), str(m.version)].filter(Boolean).join(' ') || null, str(m.command), str(m.created),
      typeof t.seconds === 'number' ? `${t.seconds.toFixed(1)} s` : null, formatBytes(t.bytes_read), str(m.tensors), str(t.workers)]);
  });
  return {
    facts,
    tables: [
      { title: 'Inputs', table: { columns: ['analysis folder', 'input', 'path', 'kind', 'checkpoints', 'size on disk'], rows: inputs,
        notes: { 'size on disk': 'As manifest.json records it: a file\'s size, or the sum of the files in a checkpoint folder (weights, config, optimizer state).' } } },
      { title: 'Analyses', table: { columns: ['analysis folder', 'analysed with', 'command', 'created', 'time', 'read', 'tensors', 'workers'], rows: timings } },
    ],
    raw: analyses.map((a, i) => ({ label: `manifest.json${analyses.length > 1 ? ` of folder ${i + 1}` : ''} (raw)`,
      text: a.manifest ? JSON.stringify(a.manifest, null, 2) : '(none)' })),
  };
}
