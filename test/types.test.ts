/**
 * The published declarations (dist/*.d.ts, what `"types"` in package.json points at) compile in a consumer's
 * project with `skipLibCheck: false` and the default libs (DOM included): nothing in them may pull in a
 * dependency's declarations that do not compile on their own (TensorFlow.js's need @types/long and clash with
 * lib.dom's WebGPU types). Runs against dist/ (`npm test` builds first).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const CONSUMER = `
import * as ds from 'dorascope';
import { analyze, openSource, openAdapter, openMergedAdapter, mergeAdapter, mergeFactors, renderReport, renderCompare, train, reproduce,
  selectBackend, verdict, PAPER_FIGURE2, DorascopeError, type AnalyzeOptions, type TensorSource, type LoraFactors, type TrainOptions } from 'dorascope';
const options: AnalyzeOptions = { base: 'base', runs: [{ path: 'run', label: 'ft' }], modules: ['q_proj'], product: 'js' };
const trainOptions: TrainOptions = { method: 'dora', steps: 10, out: 'runs/dora', backend: 'wasm' };
export async function use(): Promise<number | null> {
  const s: TensorSource = await openSource('model.safetensors');
  await s.close();
  const { summary } = await analyze(options);
  const f: LoraFactors | undefined = undefined;
  void [f, openAdapter, openMergedAdapter, mergeAdapter, mergeFactors, renderReport, renderCompare, train, reproduce, selectBackend, trainOptions];
  const v: 'agrees' | 'opposite' | 'inconclusive' = verdict(PAPER_FIGURE2[0]!.sign, summary.runs[0]?.overall.r_ci95);
  if (v === 'opposite') throw new DorascopeError('E_USAGE', 'x');
  return Object.keys(ds).length + (summary.runs[0]?.overall.pearson_r ?? 0);
}
`;

describe('published types', () => {
  it('compile in a strict consumer with skipLibCheck: false', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dorascope-types-'));
    try {
      writeFileSync(join(dir, 'use.ts'), CONSUMER);
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
        compilerOptions: {
          strict: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', noEmit: true, skipLibCheck: false,
          types: ['node'], typeRoots: [join(root, 'node_modules/@types')], paths: { dorascope: [join(root, 'dist/index.d.ts')] },
        },
        files: ['use.ts'],
      }));
      let output = '';
      try {
        execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { encoding: 'utf8', stdio: 'pipe' });
      } catch (e) {
        output = `${(e as { stdout?: string }).stdout ?? ''}${(e as { stderr?: string }).stderr ?? ''}`;
      }
      expect(output.split('\n').slice(0, 20).join('\n')).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
