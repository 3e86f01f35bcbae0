/**
 * `npm run fuzz:safetensors -- --seconds 60 [--seed 1]`: a seeded mutation fuzzer for every
 * file dorascope reads from other programs (a coverage-guided engine such as Jazzer.js downloads
 * a native binary at install, which this project may not do). Four targets, in turn:
 *   safetensors     a model file: bit flips, byte splices, header-length edits, JSON edits, truncations;
 *                   every tensor of each input is read
 *   adapter_config  a PEFT adapter folder whose adapter_config.json is mutated; inspected, then
 *                   merged onto a base and every tensor read
 *   trainer_state   a Trainer run whose trainer_state.json files are mutated; inspected
 *   index           a sharded folder whose model.safetensors.index.json is mutated; every tensor read
 * JSON files get byte mutations and structural ones (a field replaced by a hostile value: NaN,
 * strings for numbers, huge numbers, catastrophic regexes, deep nesting, "../" paths, control
 * characters). Any exception that is not a DorascopeError, an input that takes over
 * `maxInputMs`, or a resident set over `maxRssBytes` is a failure: the input is kept under the
 * temp folder and the run exits non-zero. `test/io/fuzz.test.ts` runs it for a few seconds in CI.
 */
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openSafetensors } from '../src/io/safetensors/reader.js';
import { writeSafetensors, encodeFloat32 } from '../src/io/safetensors/writer.js';
import { openSource } from '../src/io/sources/open-source.js';
import { inspect, formatInspect } from '../src/io/inspect.js';
import { isDorascopeError } from '../src/errors.js';
import { mulberry32 } from '../src/random.js';

export type FuzzTarget = 'safetensors' | 'adapter_config' | 'trainer_state' | 'index';
export const FUZZ_TARGETS: readonly FuzzTarget[] = ['safetensors', 'adapter_config', 'trainer_state', 'index'];

export interface FuzzOptions {
  readonly seconds: number;
  readonly seed: number;
  readonly targets?: readonly FuzzTarget[];
  /** One input taking longer than this is a hang (default 2 s: CI machines are shared). */
  readonly maxInputMs?: number;
  /** The process's resident set may not pass this (default 2 GiB): unbounded allocation. */
  readonly maxRssBytes?: number;
}

export interface FuzzFailure { readonly target: FuzzTarget; readonly input: number; readonly why: string; readonly kept: string }

export interface FuzzResult {
  readonly inputs: Record<FuzzTarget, number>;
  /** Inputs rejected with a DorascopeError (the rest were read fine). */
  readonly typed: Record<FuzzTarget, number>;
  readonly failures: FuzzFailure[];
  readonly maxRssBytes: number;
  readonly dir: string;
}

/** Values a hostile or broken writer might put in any JSON field. */
const HOSTILE: readonly string[] = [
  'NaN', 'Infinity', '-Infinity', '-1', '0', '2.5', '1e9', '1e300', '1e309', '4294967297', '9007199254740993',
  '"10"', '""', '"(.+)+X"', '"(a|aa)+$"', '"("', '"(?=q)q_proj"', '"\\\\1(a)"', '"../../outside.safetensors"', '"/dev/zero"',
  '"\\u001b]0;owned\\u0007\\u202e"', 'null', 'true', '[]', '{}', '[1, 2, 3]', '["q_proj", 7]',
  '{"(.+)+X": 4, "q_proj": 2}', '{"q_proj(": 2}', '{"q_proj": NaN}', '{"q_proj": 1e9}',
  `"${'x'.repeat(100_000)}"`, `${'['.repeat(20_000)}${']'.repeat(20_000)}`, `${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}`,
];

/** Finds test/fixtures from the source tree (bench/) or the compiled one (dist/.bench/bench/). */
function fixture(rel: string): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../../..']) {
    const p = resolve(here, up, 'test/fixtures', rel);
    if (existsSync(p)) return p;
  }
  return undefined;
}

export async function fuzz(o: FuzzOptions): Promise<FuzzResult> {
  const rand = mulberry32(o.seed);
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const maxInputMs = o.maxInputMs ?? 2000;
  const maxRss = o.maxRssBytes ?? 2 * 1024 ** 3;
  const targets = o.targets ?? FUZZ_TARGETS;
  const dir = mkdtempSync(join(tmpdir(), 'dorascope-fuzz-'));
  const zero = () => Object.fromEntries(FUZZ_TARGETS.map((t) => [t, 0])) as Record<FuzzTarget, number>;
  const inputs = zero(), typed = zero();
  const failures: FuzzFailure[] = [];
  let peak = process.memoryUsage().rss;

  // ---- seeds: valid inputs of each kind -------------------------------------------------------
  const seedDir = join(dir, 'seeds');
  mkdirSync(seedDir);
  const stSeeds: Uint8Array[] = [];
  {
    const p = join(seedDir, 'seed.safetensors');
    await writeSafetensors(p, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      { name: 'b', dtype: 'BF16', shape: [4], data: encodeFloat32('BF16', [1, -2, 3, -4]) },
      { name: 'c', dtype: 'F8_E4M3', shape: [], data: new Uint8Array([0x38]) },
      { name: 'z', dtype: 'I64', shape: [0], data: new BigInt64Array(0) },
    ], { k: 'v' });
    stSeeds.push(readFileSync(p));
    const sample = fixture('safetensors-samples/overall.safetensors');
    if (sample) stSeeds.push(readFileSync(sample));
  }
  const W = (i: number, m: string) => `model.layers.${i}.self_attn.${m}.weight`;
  const eye = (n: number) => Float32Array.from({ length: n * n }, (_, k) => (k % (n + 1) === 0 ? 1 : 0.5));
  const base = join(seedDir, 'base');
  mkdirSync(base);
  const baseTensors = [0, 1].flatMap((i) => ['q_proj', 'v_proj'].map((m) => ({ name: W(i, m), dtype: 'F32' as const, shape: [4, 4], data: eye(4) })));
  await writeSafetensors(join(base, 'model.safetensors'), baseTensors, { format: 'pt' });
  // Adapter: rank 2 on q_proj and v_proj of both layers.
  const adapter = join(seedDir, 'adapter');
  mkdirSync(adapter);
  await writeSafetensors(join(adapter, 'adapter_model.safetensors'), [0, 1].flatMap((i) => ['q_proj', 'v_proj'].flatMap((m) => [
    { name: `base_model.model.model.layers.${i}.self_attn.${m}.lora_A.weight`, dtype: 'F32' as const, shape: [2, 4], data: Float32Array.from({ length: 8 }, (_, k) => (k % 5 === 0 ? 1 : 0.25)) },
    { name: `base_model.model.model.layers.${i}.self_attn.${m}.lora_B.weight`, dtype: 'F32' as const, shape: [4, 2], data: Float32Array.from({ length: 8 }, (_, k) => k / 8) },
  ])), { format: 'pt' });
  const adapterJson = JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 2, lora_alpha: 4, use_rslora: false, use_dora: false,
    target_modules: ['q_proj', 'v_proj'], rank_pattern: { 'layers.1.self_attn.q_proj': 2 }, alpha_pattern: { v_proj: 8 },
    layers_to_transform: null, modules_to_save: null, fan_in_fan_out: false, base_model_name_or_path: 'base',
  }, null, 2);
  const stateJson = JSON.stringify({
    global_step: 10, epoch: 1, best_metric: null, log_history: [{ loss: 2.5, step: 5 }, { loss: 2.1, step: 10, grad_norm: 1.5 }],
  }, null, 2);
  const sharded = join(seedDir, 'sharded');
  mkdirSync(sharded);
  const weightMap: Record<string, string> = {};
  for (const [s, part] of [baseTensors.slice(0, 2), baseTensors.slice(2)].entries()) {
    const file = `model-0000${s + 1}-of-00002.safetensors`;
    await writeSafetensors(join(sharded, file), part, { format: 'pt' });
    for (const t of part) weightMap[t.name] = file;
  }
  const indexJson = JSON.stringify({ metadata: { total_size: 128 }, weight_map: weightMap }, null, 2);
  writeFileSync(join(sharded, 'model.safetensors.index.json'), indexJson);
  writeFileSync(join(adapter, 'adapter_config.json'), adapterJson);

  // ---- mutations ------------------------------------------------------------------------------
  function mutateBytes(src: Uint8Array, headerAt: number): Uint8Array {
    let b = new Uint8Array(src); // a copy (Buffer.slice would be a view and corrupt the seed)
    const text = () => new TextDecoder().decode(b.subarray(headerAt));
    for (let k = 1 + int(3); k > 0; k--) {
      switch (int(6)) {
        case 0: { const i = int(b.length); b[i]! ^= 1 << int(8); break; }
        case 1: { const i = int(b.length); b[i] = int(256); break; }
        case 2: b = b.subarray(0, int(b.length + 1)); break;
        case 3: { // safetensors header length (a JSON file gets 8 odd bytes at its start)
          const v = new DataView(b.buffer, b.byteOffset);
          if (b.length >= 8) v.setBigUint64(0, BigInt(int(2 ** 31)) * BigInt(int(4) === 0 ? 2 ** 20 : 1), true);
          break;
        }
        case 4: { // JSON edit: replace a digit or a quote somewhere
          const t = text(); const i = t.search(/[0-9"\]]/u);
          if (i >= 0) b[headerAt + i + int(Math.max(1, Math.min(32, t.length - i)))] = '0123456789",[]{}:-'.charCodeAt(int(18));
          break;
        }
        default: { const extra = new Uint8Array(int(16)).map(() => int(256)); const c = new Uint8Array(b.length + extra.length); c.set(b); c.set(extra, b.length); b = c; }
      }
    }
    return b;
  }

  /** A JSON text with one value (found by its key), a key, or a few bytes replaced. */
  function mutateJson(src: string): string {
    const r = int(10);
    if (r < 3) return new TextDecoder().decode(mutateBytes(new TextEncoder().encode(src), 0));
    // Structural: replace the value after a random "key": with a hostile value (written raw, so
    // NaN and deep nesting reach the parser as Python's json module or a broken writer emits them).
    const keys = [...src.matchAll(/"((?:[^"\\]|\\.)*)"\s*:\s*/gu)];
    if (keys.length === 0) return src;
    const m = pick(keys);
    const at = m.index + m[0].length;
    if (r === 9) return `${src.slice(0, m.index)}"${pick(['__proto__', 'constructor', '(.+)+X', 'a'.repeat(5000)])}": ${src.slice(at)}`;
    const end = valueEnd(src, at);
    return `${src.slice(0, at)}${pick(HOSTILE)}${src.slice(end)}`;
  }

  // ---- one input per target -------------------------------------------------------------------
  async function readAll(path: string, baseArg?: string): Promise<void> {
    const s = await openSource(path, baseArg === undefined ? {} : { base: baseArg });
    try {
      for (const t of s.list()) await s.read(t.name);
    } finally {
      await s.close();
    }
  }

  const work = join(dir, 'work');
  async function one(target: FuzzTarget, n: number): Promise<string> {
    rmSync(work, { recursive: true, force: true });
    mkdirSync(work);
    switch (target) {
      case 'safetensors': {
        const p = join(work, 'input.safetensors');
        writeFileSync(p, mutateBytes(pick(stSeeds), 8));
        const f = await openSafetensors(p);
        try {
          for (const t of f.tensors) await f.readRaw(t.name);
        } finally {
          await f.close();
        }
        return p;
      }
      case 'adapter_config': {
        const a = join(work, 'adapter');
        cpSync(adapter, a, { recursive: true });
        writeFileSync(join(a, 'adapter_config.json'), mutateJson(adapterJson));
        formatInspect(await inspect(a, n % 2 === 0 ? { base } : {}));
        await readAll(a, base);
        return a;
      }
      case 'trainer_state': {
        const run = join(work, 'run');
        for (const step of [5, 10]) {
          const ck = join(run, `checkpoint-${step}`);
          mkdirSync(ck, { recursive: true });
          copyFileSync(join(base, 'model.safetensors'), join(ck, 'model.safetensors'));
          writeFileSync(join(ck, 'trainer_state.json'), mutateJson(stateJson.replace('"global_step": 10', `"global_step": ${step}`)));
        }
        formatInspect(await inspect(run));
        return run;
      }
      case 'index': {
        const s = join(work, 'sharded');
        cpSync(sharded, s, { recursive: true });
        writeFileSync(join(s, 'model.safetensors.index.json'), mutateJson(indexJson));
        await readAll(s);
        return s;
      }
    }
  }

  // The seeds themselves must read: otherwise every mutant is rejected for the same reason and the run proves nothing.
  for (const [i, s] of stSeeds.entries()) {
    const sp = join(seedDir, `seed-${i}.safetensors`);
    writeFileSync(sp, s);
    const f = await openSafetensors(sp);
    for (const t of f.tensors) await f.readRaw(t.name);
    await f.close();
  }
  await readAll(adapter, base);
  await readAll(sharded);

  const keep = (target: FuzzTarget, n: number, path: string, why: string) => {
    const kept = join(dir, `fail-${target}-${n}`);
    cpSync(path, kept, { recursive: true });
    failures.push({ target, input: n, why, kept });
  };
  const end = Date.now() + o.seconds * 1000;
  let n = 0;
  while (Date.now() < end && failures.length === 0) {
    const target = targets[n % targets.length]!;
    const t0 = Date.now();
    let path = work;
    try {
      path = await one(target, n);
    } catch (e) {
      if (!isDorascopeError(e)) {
        keep(target, n, work, `threw ${(e as Error)?.stack ?? String(e)}`);
        break;
      }
      typed[target]++;
    }
    inputs[target]++;
    const ms = Date.now() - t0;
    if (ms > maxInputMs) keep(target, n, path, `took ${ms} ms (limit ${maxInputMs} ms)`);
    const rss = process.memoryUsage().rss;
    peak = Math.max(peak, rss);
    if (rss > maxRss) keep(target, n, path, `resident set ${rss} bytes (limit ${maxRss})`);
    n++;
  }
  if (failures.length === 0) rmSync(dir, { recursive: true, force: true });
  return { inputs, typed, failures, maxRssBytes: peak, dir };
}

/** The end of the JSON value starting at `i` (scalars to the next , } ] or line break; containers by depth). */
function valueEnd(s: string, i: number): number {
  let depth = 0, inStr = false;
  for (let j = i; j < s.length; j++) {
    const c = s[j]!;
    if (inStr) {
      if (c === '\\') j++;
      else if (c === '"') { inStr = false; if (depth === 0) return j + 1; }
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') { if (depth === 0) return j; depth--; if (depth === 0) return j + 1; }
    else if ((c === ',' || c === '\n') && depth === 0) return j;
  }
  return s.length;
}

// Run as a script: `node dist/.bench/bench/fuzz-safetensors.js --seconds 60 --seed 1`.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const arg = (k: string, d: number) => { const i = process.argv.indexOf(k); return i > 0 ? Number(process.argv[i + 1]) : d; };
  const seconds = arg('--seconds', 30), seed = arg('--seed', 1);
  const r = await fuzz({ seconds, seed });
  for (const f of r.failures) console.error(`FAIL: ${f.target} input ${f.input} ${f.why}\nkept as ${f.kept}`);
  const total = FUZZ_TARGETS.reduce((a, t) => a + r.inputs[t], 0);
  const per = FUZZ_TARGETS.map((t) => `${t} ${r.inputs[t]} (${r.typed[t]} typed errors)`).join(', ');
  console.log(`fuzz: ${total} inputs in ${seconds} s (seed ${seed}): ${per}; peak RSS ${(r.maxRssBytes / 2 ** 20).toFixed(0)} MiB; ${r.failures.length} crashes, hangs or blow-ups`);
  if (r.failures.length > 0) process.exit(1);
}
