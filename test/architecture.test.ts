/**
 * The layers import only downward. Every `import … from`, `export … from`, side-effect
 * `import '…'` and `import('…')` in src/**\/*.ts is read; each file is mapped to its layer
 * (its first folder under src/, or `root` for the helpers beside index.ts); an edge whose
 * target layer is not in ALLOWED[source layer] fails the test, listed with both files.
 * Type-only imports count: a type ties the layers together as much as a value does.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

/**
 * What each layer may import (besides itself). Data flows io → analysis → report, and
 * train → io; compute (the tfjs backend and kernels) sits below analysis and train; methods
 * (one plug-in per fine-tuning method: merge math) sits below io; cli and reproduce on top;
 * index.ts is the public API, which picks from every layer but cli. The root helpers
 * (errors.ts, optional.ts, progress.ts, random.ts, version.ts) import nothing above themselves.
 */
const ALLOWED: Record<string, readonly string[]> = {
  root: [],
  compute: ['root'],
  methods: ['root'],
  io: ['root', 'methods'],
  analysis: ['root', 'compute', 'methods', 'io'],
  report: ['root', 'methods', 'io', 'analysis'],
  train: ['root', 'compute', 'methods', 'io'],
  reproduce: ['root', 'compute', 'methods', 'io', 'analysis', 'report', 'train'],
  index: ['root', 'compute', 'methods', 'io', 'analysis', 'report', 'train', 'reproduce'],
  cli: ['root', 'compute', 'methods', 'io', 'analysis', 'report', 'train', 'reproduce'],
};

export interface Edge { from: string; to: string }

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    return d.isDirectory() ? tsFiles(p) : d.name.endsWith('.ts') ? [p] : [];
  });
}

/** Module specifiers of a source text; comments are dropped first so prose that mentions import('x') is not an edge. */
export function specifiers(text: string): { specs: string[]; nonLiteral: number } {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[\s;{}])\/\/.*$/gm, '$1');
  const specs: string[] = [];
  for (const re of [
    /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s+['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ]) for (const m of code.matchAll(re)) specs.push(m[1]!);
  // `import(variable)` hides an edge from this test and from the compiler.
  const nonLiteral = [...code.matchAll(/(?<!typeof\s)\bimport\s*\(\s*(?!['"])/g)].length;
  return { specs, nonLiteral };
}

/** src-relative path ('analysis/analyze.ts') → layer. */
export function layerOf(rel: string): string {
  const parts = rel.split('/');
  if (parts.length > 1) return parts[0]!;
  return rel === 'index.ts' ? 'index' : 'root';
}

/** Edges that run against ALLOWED, as 'from (layer) → to (layer)' lines. */
export function backwardEdges(edges: readonly Edge[]): string[] {
  const bad: string[] = [];
  for (const { from, to } of edges) {
    const a = layerOf(from);
    const b = layerOf(to);
    if (a === b) continue;
    const allowed = ALLOWED[a];
    if (allowed === undefined || !allowed.includes(b)) bad.push(`${from} (${a}) → ${to} (${b})`);
  }
  return bad;
}

/** Every cycle's files, found by Tarjan's strongly connected components (self-imports included). */
export function cycles(edges: readonly Edge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const { from, to } of edges) {
    if (!next.has(from)) next.set(from, []);
    if (!next.has(to)) next.set(to, []);
    next.get(from)!.push(to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter); low.set(v, counter); counter++;
    stack.push(v); onStack.add(v);
    for (const w of next.get(v)!) {
      if (!index.has(w)) { visit(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); scc.push(w); } while (w !== v);
      if (scc.length > 1 || next.get(v)!.includes(v)) out.push(scc.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** Files whose dynamic import loads a package file by URL, not one of ours, and why. */
const NON_LITERAL_OK: Record<string, string> = {
  'compute/backend.ts': "tfjs-core's register_all_gradients.js, by file URL through the resolve hook",
};

function srcGraph(): { edges: Edge[]; unresolved: string[]; nonLiteral: string[] } {
  const edges: Edge[] = [];
  const unresolved: string[] = [];
  const nonLiteral: string[] = [];
  const files = new Set(tsFiles(SRC).map((f) => relative(SRC, f).split(sep).join('/')));
  for (const from of files) {
    const { specs, nonLiteral: n } = specifiers(readFileSync(join(SRC, from), 'utf8'));
    if (n > 0 && NON_LITERAL_OK[from] === undefined) nonLiteral.push(from);
    for (const spec of specs) {
      if (!spec.startsWith('.')) continue; // a package, not one of ours
      const to = relative(SRC, resolve(SRC, dirname(from), spec)).split(sep).join('/').replace(/\.js$/, '.ts');
      if (!files.has(to)) unresolved.push(`${from} → ${spec}`);
      else edges.push({ from, to });
    }
  }
  return { edges, unresolved, nonLiteral };
}

describe('architecture: imports run one way', () => {
  it('the checker reports a backward edge and a cycle (it can fail)', () => {
    expect(backwardEdges([
      { from: 'io/peft/merged-source.ts', to: 'analysis/analyze.ts' },
      { from: 'analysis/analyze.ts', to: 'io/types.ts' },
      { from: 'errors.ts', to: 'progress.ts' },
      { from: 'progress.ts', to: 'io/atomic.ts' },
    ])).toEqual([
      'io/peft/merged-source.ts (io) → analysis/analyze.ts (analysis)',
      'progress.ts (root) → io/atomic.ts (io)',
    ]);
    expect(cycles([
      { from: 'a.ts', to: 'b.ts' }, { from: 'b.ts', to: 'c.ts' }, { from: 'c.ts', to: 'a.ts' }, { from: 'c.ts', to: 'd.ts' },
    ])).toEqual([['a.ts', 'b.ts', 'c.ts']]);
    expect(specifiers(`import type { A } from './a.js';\nexport { b } from "../b.js";\n// import('./c.js')\nconst m = await import('./d.js');\nimport './e.js';`).specs.sort())
      .toEqual(['../b.js', './a.js', './d.js', './e.js']);
    expect(specifiers('const m = await import(spec);').nonLiteral).toBe(1);
  });

  const graph = srcGraph();

  it('reads a plausible graph (every relative import resolves to a src file)', () => {
    expect(graph.unresolved).toEqual([]);
    expect(graph.edges.length).toBeGreaterThan(100);
  });

  it('every layer imports only the layers below it', () => {
    const bad = backwardEdges(graph.edges);
    if (bad.length > 0) console.error(`imports against the layer flow:\n  ${bad.join('\n  ')}`);
    expect(bad).toEqual([]);
  });

  it('no import cycle among src files', () => {
    const found = cycles(graph.edges);
    if (found.length > 0) console.error(`import cycles:\n  ${found.map((c) => c.join(' ↔ ')).join('\n  ')}`);
    expect(found).toEqual([]);
  });

  it('every dynamic import names its module literally (the compiler and this test can follow it)', () => {
    expect(graph.nonLiteral).toEqual([]);
  });
});
