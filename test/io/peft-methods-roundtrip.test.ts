/**
 * Every PEFT method dorascope reads, end to end through the CLI: an adapter written here in PEFT's
 * on-disk layout (keys `base_model.model.<module>.<param>`, F32 tensors, adapter_config.json with the
 * fields PEFT's config classes write) → `inspect --json` → `merge` → `analyze` (the exact path where the
 * method has one, and the merge path) → `compare` of two methods' analyses.
 *
 * Every expected number comes from this file: W′ by float64 loops of each method's published update
 * (PEFT `get_delta_weight` of tuners/{lora,adalora,vera,ia3,loha,lokr}/layer.py, DoRA paper eq. 5),
 * written apart from src/ — the Tucker rebuilds and torch.kron by their index definitions — then ΔM and
 * ΔD (DoRA paper §3.2) of W′ against W0 in float64. Both analysis paths must agree with them within
 * 1e-6 relative; the merged file within float32 rounding.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../../src/cli/main.js';
import { fastPathApplies } from '../../src/analysis/adapter-fast-path.js';
import { analyze } from '../../src/analysis/analyze.js';
import { featureAxisFor } from '../../src/analysis/names.js';
import { openMergedAdapter } from '../../src/io/peft/merged-source.js';
import { openSource } from '../../src/io/sources/open-source.js';
import { loadAnalysis } from '../../src/report/load.js';
import { rng } from '../helpers/random.js';
import { exactValues, type TestTensors, writeAdapter, writeModel } from '../helpers/models.js';

const P = 'base_model.model.';
const next = rng(2402);
const prod = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const rand = (shape: number[], scale = 0.5) => ({ shape, data: exactValues(next, prod(shape), scale) });
/** Values 1 + U(−½, ½)-ish (IA³ scales near 1), some negative where `neg` is set. */
const scales = (n: number, neg = false) => Float32Array.from(exactValues(next, n, 0.5), (x, i) => (neg && i % 3 === 0 ? -1 : 1) * (1 + x));

// ---- the base model ----------------------------------------------------------------------------

const Q = 'model.layers.0.self_attn.q_proj.weight';     // Linear (out 8, in 6)
const D = 'model.layers.0.mlp.down_proj.weight';        // Linear (out 6, in 8)
const C2 = 'model.layers.0.conv.weight';                // Conv2d (out 4, in 4, 3, 3)
const C2b = 'model.layers.0.conv_b.weight';             // Conv2d (out 5, in 4, 3, 3)
const C2c = 'model.layers.0.conv_c.weight';             // Conv2d (out 4, in 2, 2, 2)
const C1 = 'model.layers.0.conv1d.weight';              // Conv1d (out 4, in 4, 3)
const GA = 'h.0.attn.c_attn.weight';                    // GPT-2 Conv1D, stored (in 6, out 9)
const GF = 'h.0.mlp.c_fc.weight';                       // GPT-2 Conv1D, stored (in 6, out 9)
const SHAPES: Record<string, number[]> = { [Q]: [8, 6], [D]: [6, 8], [C2]: [4, 4, 3, 3], [C2b]: [5, 4, 3, 3], [C2c]: [4, 2, 2, 2], [C1]: [4, 4, 3], [GA]: [6, 9], [GF]: [6, 9] };
const W0: Record<string, Float32Array> = Object.fromEntries(Object.entries(SHAPES).map(([n, s]) => [n, exactValues(next, prod(s))]));
const mod = (tensor: string) => tensor.replace(/\.weight$/u, '').replace(/^h\./u, 'transformer.h.');

// ---- float64 references, from the formulas -------------------------------------------------------

/** (m × k) @ (k × n), row-major. */
function mm(a: ArrayLike<number>, b: ArrayLike<number>, m: number, k: number, n: number): number[] {
  const o = new Array<number>(m * n).fill(0);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let p = 0; p < k; p++) o[i * n + j]! += a[i * k + p]! * b[p * n + j]!;
  return o;
}
const add = (w: ArrayLike<number>, d: readonly number[], s = 1) => Array.from(w, (x, i) => x + s * d[i]!);

/** Tucker rebuild out[p, q, k, l] = Σ_i Σ_j t[i, j, k, l] · wa[i, p] · wb[j, q] (PEFT's einsum), by its definition. */
function rebuild(t: ArrayLike<number>, ts: number[], wa: ArrayLike<number>, P_: number, wb: ArrayLike<number>, Q_: number): number[] {
  const [ri, rj, kh, kw] = ts as [number, number, number, number];
  const o = new Array<number>(P_ * Q_ * kh * kw).fill(0);
  for (let p = 0; p < P_; p++) for (let q = 0; q < Q_; q++) for (let k = 0; k < kh; k++) for (let l = 0; l < kw; l++) {
    let s = 0;
    for (let i = 0; i < ri; i++) for (let j = 0; j < rj; j++) s += t[((i * rj + j) * kh + k) * kw + l]! * wa[i * P_ + p]! * wb[j * Q_ + q]!;
    o[((p * Q_ + q) * kh + k) * kw + l] = s;
  }
  return o;
}

/** torch.kron of two tensors of the same rank: out[i·y + j] per axis = x[i] · y[j]. */
function kron(x: ArrayLike<number>, xs: number[], y: ArrayLike<number>, ys: number[]): number[] {
  const os = xs.map((d, i) => d * ys[i]!);
  const o = new Array<number>(prod(os)).fill(0);
  const idx = (i: number, s: number[]) => { const r: number[] = []; for (let d = s.length - 1; d >= 0; d--) { r.unshift(i % s[d]!); i = Math.floor(i / s[d]!); } return r; };
  for (let a = 0; a < prod(xs); a++) for (let b = 0; b < prod(ys); b++) {
    const ia = idx(a, xs), ib = idx(b, ys);
    let flat = 0;
    for (let d = 0; d < os.length; d++) flat = flat * os[d]! + ia[d]! * ys[d]! + ib[d]!;
    o[flat] = x[a]! * y[b]!;
  }
  return o;
}

/** ΔM, ΔD of W′ against W0 over output features (rows, or columns of a GPT-2 Conv1D), float64. */
function refDecompose(tensor: string, wt: readonly number[]): { dm: number; dd: number } {
  const s = SHAPES[tensor]!, w0 = W0[tensor]!;
  const rows = s[0]!, cols = prod(s.slice(1));
  const byCols = tensor.startsWith('h.');
  const k = byCols ? cols : rows, len = byCols ? rows : cols;
  let dm = 0, dd = 0;
  for (let n = 0; n < k; n++) {
    let a = 0, b = 0, ab = 0;
    for (let e = 0; e < len; e++) {
      const at = byCols ? e * cols + n : n * cols + e;
      a += w0[at]! * w0[at]!; b += wt[at]! * wt[at]!; ab += w0[at]! * wt[at]!;
    }
    dm += Math.abs(Math.sqrt(b) - Math.sqrt(a));
    dd += 1 - ab / Math.sqrt(a * b);
  }
  return { dm: dm / k, dd: dd / k };
}

// ---- one case per method --------------------------------------------------------------------------

interface Case {
  readonly label: string;
  readonly method: string;
  readonly config: Record<string, unknown>;
  readonly tensors: TestTensors;
  /** Roles inspect must show for each adapted module (sorted). */
  readonly roles: Record<string, string[]>;
  /** W′ in float64 by base tensor. */
  readonly merged: Record<string, number[]>;
  /** Whether analyze's default path uses exact algebra (else it merges). */
  readonly exact: boolean;
  /**
   * The report's trainable-parameter count: a number, null when the config cannot tell it (conv layers with
   * use_effective_conv2d), or undefined where it is not checked (see the IA³ conv case).
   */
  readonly trainable: number | null | undefined;
}

const cases: Case[] = [];
const key = (tensor: string, role: string) => `${P}${mod(tensor)}.${role}`;

{ // LoRA: ΔW = (alpha/r)·B·A (tuners/lora/layer.py get_delta_weight)
  const t: TestTensors = {}, merged: Record<string, number[]> = {};
  for (const x of [Q, D]) {
    const [out, inn] = SHAPES[x] as [number, number];
    const A = rand([2, inn]), B = rand([out, 2]);
    t[key(x, 'lora_A.weight')] = A; t[key(x, 'lora_B.weight')] = B;
    merged[x] = add(W0[x]!, mm(B.data, A.data, out, 2, inn), 4 / 2);
  }
  cases.push({ label: 'lora', method: 'lora', config: { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'down_proj'], use_rslora: false, use_dora: false, fan_in_fan_out: false, bias: 'none' },
    tensors: t, roles: { [mod(Q)]: ['lora_A', 'lora_B'], [mod(D)]: ['lora_A', 'lora_B'] }, merged, exact: true, trainable: 2 * (8 + 6) + 2 * (6 + 8) });
}
{ // rsLoRA: s = alpha/√r
  const A = rand([4, 6]), B = rand([8, 4]);
  cases.push({ label: 'rslora', method: 'lora', config: { peft_type: 'LORA', r: 4, lora_alpha: 3, target_modules: ['q_proj'], use_rslora: true, use_dora: false },
    tensors: { [key(Q, 'lora_A.weight')]: A, [key(Q, 'lora_B.weight')]: B }, roles: { [mod(Q)]: ['lora_A', 'lora_B'] },
    merged: { [Q]: add(W0[Q]!, mm(B.data, A.data, 8, 4, 6), 3 / 2) }, exact: true, trainable: 4 * 14 });
}
{ // DoRA: W′ = m ⊙ V/‖V‖ per output row, V = W + s·B·A (paper eq. 5)
  const A = rand([2, 6]), B = rand([8, 2]);
  const V = add(W0[Q]!, mm(B.data, A.data, 8, 2, 6), 1);
  const m = Float32Array.from({ length: 8 }, (_, i) => (i % 4 === 0 ? -0.75 : 1.5 + i / 8));
  const W = V.map((v, k) => { const i = Math.floor(k / 6); let n = 0; for (let j = 0; j < 6; j++) n += V[i * 6 + j]! ** 2; return (m[i]! / Math.sqrt(n)) * v; });
  cases.push({ label: 'dora', method: 'dora', config: { peft_type: 'LORA', r: 2, lora_alpha: 2, target_modules: ['q_proj'], use_dora: true },
    tensors: { [key(Q, 'lora_A.weight')]: A, [key(Q, 'lora_B.weight')]: B, [key(Q, 'lora_magnitude_vector')]: { shape: [8], data: m } },
    roles: { [mod(Q)]: ['lora_A', 'lora_B', 'lora_magnitude_vector'] }, merged: { [Q]: W }, exact: true, trainable: 2 * 14 + 8 });
}
{ // AdaLoRA: ΔW = B·(A ⊙ E)·lora_alpha/(ranknum + 1e-5), ranknum = init_r (tuners/adalora/layer.py)
  const A = rand([3, 6]), B = rand([8, 3]), E = rand([3, 1], 2);
  const AE = Array.from(A.data, (a, k) => a * E.data[Math.floor(k / 6)]!);
  cases.push({ label: 'adalora', method: 'adalora', config: { peft_type: 'ADALORA', init_r: 3, target_r: 2, lora_alpha: 6, target_modules: ['q_proj'], rank_pattern: null, total_step: 100 },
    tensors: { [key(Q, 'lora_A')]: A, [key(Q, 'lora_B')]: B, [key(Q, 'lora_E')]: E },
    roles: { [mod(Q)]: ['lora_A', 'lora_B', 'lora_E'] }, merged: { [Q]: add(W0[Q]!, mm(B.data, AE, 8, 3, 6), 6 / (3 + 1e-5)) }, exact: true, trainable: 3 * (8 + 6 + 1) });
}
{ // VeRA: ΔW = (λ_b ⊙ B[:out]) @ (λ_d ⊙ A[:, :in]) (tuners/vera/layer.py)
  const r = 4, vA = rand([r, 8]), vB = rand([8, r]);
  const t: TestTensors = { 'base_model.vera_A': vA, 'base_model.vera_B': vB }, merged: Record<string, number[]> = {};
  for (const x of [Q, D]) {
    const [out, inn] = SHAPES[x] as [number, number];
    const lb = rand([out], 1), ld = rand([r], 1);
    t[key(x, 'vera_lambda_b')] = lb; t[key(x, 'vera_lambda_d')] = ld;
    const Bp = Array.from({ length: out * r }, (_, k) => lb.data[Math.floor(k / r)]! * vB.data[k]!);
    const Ap = Array.from({ length: r * inn }, (_, k) => ld.data[Math.floor(k / inn)]! * vA.data[Math.floor(k / inn) * 8 + (k % inn)]!);
    merged[x] = add(W0[x]!, mm(Bp, Ap, out, r, inn));
  }
  cases.push({ label: 'vera', method: 'vera', config: { peft_type: 'VERA', r, target_modules: ['q_proj', 'down_proj'], save_projection: true, projection_prng_key: 0, vera_dropout: 0, d_initial: 0.1 },
    tensors: t, roles: { [mod(Q)]: ['vera_A', 'vera_B', 'vera_lambda_b', 'vera_lambda_d'], [mod(D)]: ['vera_A', 'vera_B', 'vera_lambda_b', 'vera_lambda_d'] },
    merged, exact: true, trainable: (8 + r) + (6 + r) });
}
{ // IA³ (tuners/ia3/layer.py): outputs scaled (q_proj, l (out, 1), some negative); inputs for feedforward_modules (down_proj, l (1, in))
  const lq = scales(8, true), ld = scales(8);
  const q = Array.from(W0[Q]!, (w, k) => w * lq[Math.floor(k / 6)]!);
  const d = Array.from(W0[D]!, (w, k) => w * ld[k % 8]!);
  cases.push({ label: 'ia3', method: 'ia3', config: { peft_type: 'IA3', target_modules: ['q_proj', 'down_proj'], feedforward_modules: ['down_proj'], fan_in_fan_out: false, init_ia3_weights: true },
    tensors: { [key(Q, 'ia3_l')]: { shape: [8, 1], data: lq }, [key(D, 'ia3_l')]: { shape: [1, 8], data: ld } },
    roles: { [mod(Q)]: ['ia3_l'], [mod(D)]: ['ia3_l'] }, merged: { [Q]: q, [D]: d }, exact: true, trainable: 8 + 8 });
}
{ // IA³ on Conv2d layers (`_ConvNd`): a feed-forward one scales input channels (l (1, in, 1, 1)), another its outputs (l (1, out, 1, 1), transposed by merge)
  const lc = scales(4), lo = scales(5, true);
  cases.push({ label: 'ia3-conv', method: 'ia3', config: { peft_type: 'IA3', target_modules: ['conv', 'conv_b'], feedforward_modules: ['conv'] },
    tensors: { [key(C2, 'ia3_l')]: { shape: [1, 4, 1, 1], data: lc }, [key(C2b, 'ia3_l')]: { shape: [1, 5, 1, 1], data: lo } },
    roles: { [mod(C2)]: ['ia3_l'], [mod(C2b)]: ['ia3_l'] },
    merged: { [C2]: Array.from(W0[C2]!, (w, k) => w * lc[Math.floor(k / 9) % 4]!), [C2b]: Array.from(W0[C2b]!, (w, k) => w * lo[Math.floor(k / 36)]!) }, exact: true,
    // The table keeps a conv weight as (out, in·kh·kw), so a feed-forward conv's count (one per input channel) is not checked here (docs/peft-methods.md).
    trainable: undefined });
}
{ // IA³ on GPT-2 Conv1D (fan_in_fan_out; W stored (in, out)): c_attn's outputs are W's columns, c_fc (feed-forward) scales its rows
  const la = scales(9, true), lf = scales(6);
  cases.push({ label: 'ia3-gpt2', method: 'ia3', config: { peft_type: 'IA3', target_modules: ['c_attn', 'c_fc'], feedforward_modules: ['c_fc'], fan_in_fan_out: true },
    tensors: { [key(GA, 'ia3_l')]: { shape: [9, 1], data: la }, [key(GF, 'ia3_l')]: { shape: [1, 6], data: lf } },
    roles: { [mod(GA)]: ['ia3_l'], [mod(GF)]: ['ia3_l'] },
    merged: { [GA]: Array.from(W0[GA]!, (w, k) => w * la[k % 9]!), [GF]: Array.from(W0[GF]!, (w, k) => w * lf[Math.floor(k / 9)]!) }, exact: true, trainable: 9 + 6 });
}
{ // LoHa (tuners/loha/layer.py): (w1_a@w1_b) ⊙ (w2_a@w2_b)·alpha/r on a Linear; Tucker cores on the Conv2d and the Conv1d
  const r = 2, s = 3 / r;
  const a1 = rand([8, r]), b1 = rand([r, 6]), a2 = rand([8, r]), b2 = rand([r, 6]);
  const p1 = mm(a1.data, b1.data, 8, r, 6), p2 = mm(a2.data, b2.data, 8, r, 6);
  const t: TestTensors = { [key(Q, 'hada_w1_a')]: a1, [key(Q, 'hada_w1_b')]: b1, [key(Q, 'hada_w2_a')]: a2, [key(Q, 'hada_w2_b')]: b2 };
  const merged: Record<string, number[]> = { [Q]: add(W0[Q]!, p1.map((x, i) => x * p2[i]!), s) };
  for (const [x, ks] of [[C2, [3, 3]], [C1, [3, 1]]] as const) {
    // Factors of scale 1: with 0.5 the Hadamard product of two Tucker rebuilds is a change so small (ΔM ≈ 1e-4 of ‖w‖) that
    // W′ rounded to float32 (the merge path) no longer holds it to 1e-6 — the case the exact paths exist for.
    const t1 = rand([r, r, ...ks], 1), t2 = rand([r, r, ...ks], 1), wa1 = rand([r, 4], 1), wb1 = rand([r, 4], 1), wa2 = rand([r, 4], 1), wb2 = rand([r, 4], 1);
    Object.assign(t, { [key(x, 'hada_t1')]: t1, [key(x, 'hada_t2')]: t2, [key(x, 'hada_w1_a')]: wa1, [key(x, 'hada_w1_b')]: wb1, [key(x, 'hada_w2_a')]: wa2, [key(x, 'hada_w2_b')]: wb2 });
    const r1 = rebuild(t1.data, t1.shape as number[], wa1.data, 4, wb1.data, 4), r2 = rebuild(t2.data, t2.shape as number[], wa2.data, 4, wb2.data, 4);
    merged[x] = add(W0[x]!, r1.map((v, i) => v * r2[i]!), s);
  }
  // A conv layer without the Tucker form (a 1×1 kernel, or use_effective_conv2d off when it was trained): w?_a (out, r), w?_b (r, in·kh·kw).
  const ca1 = rand([5, r]), cb1 = rand([r, 36]), ca2 = rand([5, r]), cb2 = rand([r, 36]);
  Object.assign(t, { [key(C2b, 'hada_w1_a')]: ca1, [key(C2b, 'hada_w1_b')]: cb1, [key(C2b, 'hada_w2_a')]: ca2, [key(C2b, 'hada_w2_b')]: cb2 });
  const q1 = mm(ca1.data, cb1.data, 5, r, 36), q2 = mm(ca2.data, cb2.data, 5, r, 36);
  merged[C2b] = add(W0[C2b]!, q1.map((x, i) => x * q2[i]!), s);
  const tucker = ['hada_t1', 'hada_t2', 'hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'].sort();
  cases.push({ label: 'loha', method: 'loha', config: { peft_type: 'LOHA', r, alpha: 3, target_modules: ['q_proj', 'conv', 'conv1d', 'conv_b'], use_effective_conv2d: true, rank_dropout: 0, module_dropout: 0, init_weights: true, rank_pattern: {}, alpha_pattern: {} },
    tensors: t, roles: { [mod(Q)]: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'], [mod(C2)]: tucker, [mod(C1)]: tucker, [mod(C2b)]: ['hada_w1_a', 'hada_w1_b', 'hada_w2_a', 'hada_w2_b'] }, merged, exact: false,
    // With use_effective_conv2d the conv layers' count needs their kernel size, which the table does not keep: unknown.
    trainable: null });
}
{ // LoKr (tuners/lokr/layer.py): kron(w1, w2)·alpha/r. q_proj 8 = 2·4, 6 = 2·3: w1 full, w2 = w2_a@w2_b; down_proj 6 = 2·3, 8 = 2·4: w1 = w1_a@w1_b, w2 full.
  const r = 1, s = 2 / r;
  const qw1 = rand([2, 2]), qa = rand([4, r]), qb = rand([r, 3]);
  const da = rand([2, r]), db = rand([r, 2]), dw2 = rand([3, 4]);
  // Conv2d (4, 4, 3, 3) with the Tucker form: w1 (2, 2) unsqueezed to (2, 2, 1, 1), w2 = rebuild(t2, w2_a (r2, 2), w2_b (r2, 2)) (2, 2, 3, 3).
  const r2 = 2, cw1 = rand([2, 2]), ct = rand([r2, r2, 3, 3]), cwa = rand([r2, 2]), cwb = rand([r2, 2]);
  // Conv1d (4, 4, 3) with a full 3-D w2 (2, 2, 3): torch.kron pads w1 to (1, 2, 2), giving (2, 4, 6), reshaped to (4, 4, 3) as PEFT does.
  const ow1 = rand([2, 2]), ow2 = rand([2, 2, 3]);
  // Conv2d (5, 4, 3, 3): 5 = 1·5, 4 = 2·2; w1 (1, 2) and a full 4-D w2 (5, 2, 3, 3) (PEFT's use_w2), w1 unsqueezed to (1, 2, 1, 1).
  const bw1 = rand([1, 2]), bw2 = rand([5, 2, 3, 3]);
  // Conv2d (4, 2, 2, 2) without the Tucker form: 4 = 2·2, 2 = 1·2; w1 (2, 1), w2 = w2_a (2, r) @ w2_b (r, 2·2·2) (2, 8).
  const xw1 = rand([2, 1]), xa = rand([2, r]), xb = rand([r, 8]);
  cases.push({ label: 'lokr', method: 'lokr', config: { peft_type: 'LOKR', r, alpha: 2, target_modules: ['q_proj', 'down_proj', 'conv', 'conv1d', 'conv_b', 'conv_c'], decompose_both: false, decompose_factor: -1, use_effective_conv2d: true, rank_dropout: 0, module_dropout: 0, rank_dropout_scale: false, init_weights: true },
    tensors: {
      [key(Q, 'lokr_w1')]: qw1, [key(Q, 'lokr_w2_a')]: qa, [key(Q, 'lokr_w2_b')]: qb,
      [key(D, 'lokr_w1_a')]: da, [key(D, 'lokr_w1_b')]: db, [key(D, 'lokr_w2')]: dw2,
      [key(C2, 'lokr_w1')]: cw1, [key(C2, 'lokr_t2')]: ct, [key(C2, 'lokr_w2_a')]: cwa, [key(C2, 'lokr_w2_b')]: cwb,
      [key(C1, 'lokr_w1')]: ow1, [key(C1, 'lokr_w2')]: ow2,
      [key(C2b, 'lokr_w1')]: bw1, [key(C2b, 'lokr_w2')]: bw2,
      [key(C2c, 'lokr_w1')]: xw1, [key(C2c, 'lokr_w2_a')]: xa, [key(C2c, 'lokr_w2_b')]: xb,
    },
    roles: { [mod(Q)]: ['lokr_w1', 'lokr_w2_a', 'lokr_w2_b'], [mod(D)]: ['lokr_w1_a', 'lokr_w1_b', 'lokr_w2'], [mod(C2)]: ['lokr_t2', 'lokr_w1', 'lokr_w2_a', 'lokr_w2_b'], [mod(C1)]: ['lokr_w1', 'lokr_w2'],
      [mod(C2b)]: ['lokr_w1', 'lokr_w2'], [mod(C2c)]: ['lokr_w1', 'lokr_w2_a', 'lokr_w2_b'] },
    merged: {
      [Q]: add(W0[Q]!, kron(qw1.data, [2, 2], mm(qa.data, qb.data, 4, r, 3), [4, 3]), s),
      [D]: add(W0[D]!, kron(mm(da.data, db.data, 2, r, 2), [2, 2], dw2.data, [3, 4]), s),
      [C2]: add(W0[C2]!, kron(cw1.data, [2, 2, 1, 1], rebuild(ct.data, [r2, r2, 3, 3], cwa.data, 2, cwb.data, 2), [2, 2, 3, 3]), s),
      [C1]: add(W0[C1]!, kron(ow1.data, [1, 2, 2], ow2.data, [2, 2, 3]), s),
      [C2b]: add(W0[C2b]!, kron(bw1.data, [1, 2, 1, 1], bw2.data, [5, 2, 3, 3]), s),
      [C2c]: add(W0[C2c]!, kron(xw1.data, [2, 1], mm(xa.data, xb.data, 2, r, 8), [2, 8]), s),
    },
    exact: false, trainable: null });
}

// ---- the CLI, in process --------------------------------------------------------------------------

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [], err: string[] = [];
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => (out.push(String(s)), true));
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => (err.push(String(s)), true));
  try {
    return { code: await main(args), out: out.join(''), err: err.join('') };
  } finally {
    o.mockRestore(); e.mockRestore();
  }
}

/** decomposition.csv of an analysis folder: tensor → (method, ΔM, ΔD). */
function decomposition(dir: string): Map<string, { method: string; dm: number; dd: number }> {
  const [head, ...lines] = readFileSync(join(dir, 'decomposition.csv'), 'utf8').trim().split('\n');
  const cols = head!.split(',');
  const at = (c: string) => cols.indexOf(c);
  return new Map(lines.map((l) => {
    const f = l.split(',');
    return [f[at('tensor')]!, { method: f[at('method')]!, dm: Number(f[at('delta_m')]), dd: Number(f[at('delta_d')]) }];
  }));
}

const near = (got: number, want: number, rel = 1e-6) => Math.abs(got - want) <= rel * Math.max(Math.abs(want), 1e-9);

let root = '';
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ds-peft-roundtrip-'));
  await writeModel(join(root, 'base.safetensors'), Object.fromEntries(Object.entries(SHAPES).map(([n, s]) => [n, { shape: s, data: W0[n]! }])));
});
afterAll(() => rm(root, { recursive: true, force: true }));

describe('each PEFT method: inspect → merge → analyze (exact and merge paths) → compare', () => {
  for (const c of cases) {
    it(`${c.label}: ${Object.keys(c.merged).length} tensors, ΔM/ΔD = the float64 merge within 1e-6 on both paths`, async () => {
      const base = join(root, 'base.safetensors');
      const dir = join(root, c.label);
      await writeAdapter(join(dir, 'adapter'), c.config, c.tensors);

      const ins = await cli(['inspect', join(dir, 'adapter'), '--base', base, '--json']);
      expect(ins.code, ins.err).toBe(0);
      const a = JSON.parse(ins.out).adapter;
      expect(a.method).toBe(c.method);
      expect(a.peft_type).toBe(c.config['peft_type']);
      for (const [m, roles] of Object.entries(c.roles)) {
        const row = a.modules.find((x: { module: string; base_tensor: string }) => x.module === m && x.base_tensor.endsWith('.weight'));
        expect(row, m).toBeDefined();
        expect(row.tensors.map((t: { role: string }) => t.role).sort()).toEqual([...roles].sort());
        for (const t of row.tensors) {
          expect(t.shape).toEqual(c.tensors[t.tensor]!.shape);
          expect(t.meaning.length).toBeGreaterThan(3);
        }
      }
      // The header names the scale the way the method's own config does (IA³ has no rank, VeRA no alpha, LyCORIS `alpha`).
      const rule = ({ LORA: c.config['use_rslora'] === true ? 'lora_alpha/sqrt(r)' : 'lora_alpha/r', ADALORA: 'lora_alpha/r', VERA: 'r only', IA3: 'none', LOHA: 'alpha/r', LOKR: 'alpha/r' } as Record<string, string>)[c.config['peft_type'] as string];
      expect(a.scale_rule).toBe(rule);
      const text = await cli(['inspect', join(dir, 'adapter')]);
      expect(text.out).toContain(`adapter: ${c.method.toUpperCase()}`);
      expect(text.out).toContain({ 'lora_alpha/r': 'lora_alpha', 'lora_alpha/sqrt(r)': 'rsLoRA', 'alpha/r': `, alpha ${c.config['alpha']}, `, 'r only': 'no scaling', none: 'no rank or scaling' }[rule!]);
      if (rule === 'none' || rule === 'r only') expect(text.out).not.toContain('lora_alpha');
      expect(text.out).toContain(`  ${c.roles[Object.keys(c.roles)[0]!]![0]} `);

      const mg = await cli(['merge', '--base', base, '--adapter', join(dir, 'adapter'), '--out', join(dir, 'merged')]);
      expect(mg.code, mg.err).toBe(0);
      const merged = await openSource(join(dir, 'merged'));
      try {
        for (const [t, want] of Object.entries(c.merged)) {
          const got = await merged.read(t);
          const scale = want.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
          expect(got.length).toBe(want.length);
          for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!), `${t}[${i}]`).toBeLessThanOrEqual(1e-6 * scale);
        }
      } finally {
        await merged.close();
      }

      for (const path of ['fast', 'merge'] as const) {
        const out = join(dir, `analysis-${path}`);
        const an = await cli(['analyze', '--base', base, '--label', `${c.label}=${join(dir, 'adapter')}`, join(dir, 'adapter'), '--adapter-path', path, '--out', out, '--quiet', '--json']);
        expect(an.code, an.err).toBe(0);
        const rows = decomposition(out);
        for (const [t, want] of Object.entries(c.merged)) {
          const ref = refDecompose(t, want);
          const got = rows.get(t)!;
          expect(got, t).toBeDefined();
          expect(got.method).toBe(c.method);
          expect(near(got.dm, ref.dm), `${path} ${t} ΔM ${got.dm} vs ${ref.dm}`).toBe(true);
          expect(near(got.dd, ref.dd), `${path} ${t} ΔD ${got.dd} vs ${ref.dd}`).toBe(true);
        }
        expect(ref0(c)).toBeGreaterThan(1e-3); // the updates are not negligible: the comparison means something
      }
      // Analysis worker threads open the adapter themselves (analysis/pool.ts): the same numbers.
      const viaWorkers = await analyze({ base, runs: [{ path: join(dir, 'adapter'), label: c.label }], write: false, quiet: true, workers: 2 });
      const fast = decomposition(join(dir, 'analysis-fast'));
      for (const t of Object.keys(c.merged)) {
        const w = viaWorkers.rows.find((x) => x.tensor === t)!;
        expect([w.delta_m, w.delta_d]).toEqual([fast.get(t)!.dm, fast.get(t)!.dd]);
      }
      // Which path the default analysis takes: exact algebra (LoRA factors, or the method's own) or the merge.
      const src = await openMergedAdapter(join(dir, 'adapter'), await openSource(base), { closeBase: true });
      try {
        for (const t of Object.keys(c.merged)) expect(fastPathApplies(src, t, featureAxisFor(t)), t).toBe(c.exact);
      } finally {
        await src.close();
      }
      // The report's trainable-parameter count (report/trainable-params.ts, by the method's plug-in).
      if (c.trainable !== undefined) expect((await loadAnalysis(join(dir, 'analysis-fast'))).runs[0]!.trainable).toBe(c.trainable);
    }, 60_000);
  }

  it('compare puts two methods\' analyses side by side', async () => {
    const out = join(root, 'compare.html');
    const r = await cli(['compare', join(root, 'dora', 'analysis-fast'), join(root, 'ia3', 'analysis-fast'), join(root, 'loha', 'analysis-merge'), '--out', out, '--json']);
    expect(r.code, r.err).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.runs.map((x: { run: string; method: string }) => [x.run, x.method])).toEqual([['dora', 'dora'], ['ia3', 'ia3'], ['loha', 'loha']]);
    const html = readFileSync(out, 'utf8');
    for (const m of ['dora', 'ia3', 'loha']) expect(html).toContain(m);
  }, 60_000);
});

/** The largest reference ΔD of a case's tensors. */
function ref0(c: Case): number {
  return Math.max(...Object.entries(c.merged).map(([t, w]) => refDecompose(t, w).dd));
}
