import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../errors.js';
import { tf } from '../compute/backend.js';
import type { AdapterVariant, SharedTensor } from './adapters/lora.js';
import type { QuantizedBase } from './quantized-base.js';

type T = tfc.Tensor;

/** Subset of a Hugging Face LlamaConfig (config.json field names). */
import type { LlamaConfig } from './types.js';
export type { LlamaConfig } from './types.js';

/** Frozen or trainable weights under their HF Llama names (linear weights out×in, as PyTorch stores them). */
export type Weights = Map<string, tfc.Variable>;

/** Adapter on a linear module, keyed by its HF base name (e.g. `model.layers.0.self_attn.q_proj`). */
export interface Adapters<P = unknown> {
  variant: AdapterVariant<P>;
  layers: Map<string, P>;
  /** Tensors every layer shares (VeRA's projections), saved once; none for LoRA/DoRA. */
  shared?: readonly SharedTensor[];
}

/** Shapes of every weight (HF names), so callers can init, save or check them. */
export function weightShapes(c: LlamaConfig): Map<string, number[]> {
  const d = c.hidden_size, f = c.intermediate_size;
  const s = new Map<string, number[]>([['model.embed_tokens.weight', [c.vocab_size, d]]]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) s.set(`${p}.self_attn.${m}.weight`, [d, d]);
    s.set(`${p}.mlp.gate_proj.weight`, [f, d]);
    s.set(`${p}.mlp.up_proj.weight`, [f, d]);
    s.set(`${p}.mlp.down_proj.weight`, [d, f]);
    s.set(`${p}.input_layernorm.weight`, [d]);
    s.set(`${p}.post_attention_layernorm.weight`, [d]);
  }
  s.set('model.norm.weight', [d]);
  s.set('lm_head.weight', [c.vocab_size, d]);
  return s;
}

/**
 * Random init (normal σ = 0.02 like HF's initializer_range; norms = 1) from a
 * seeded uniform source. `trainable` is true for full fine-tuning only; the
 * variables are unnamed because tfjs variable names are process-global.
 */
export function initWeights(c: LlamaConfig, rand: () => number, trainable = false): Weights {
  const t = tf();
  const w: Weights = new Map();
  for (const [name, shape] of weightShapes(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (shape.length === 1) a.fill(1);
    else
      for (let i = 0; i < n; i += 2) {
        // Box–Muller: two normals per pair of uniforms
        const u = Math.max(rand(), 1e-12), v = rand();
        const rr = Math.sqrt(-2 * Math.log(u)) * 0.02;
        a[i] = rr * Math.cos(2 * Math.PI * v);
        if (i + 1 < n) a[i + 1] = rr * Math.sin(2 * Math.PI * v);
      }
    // A variable shares its initial tensor's data: dispose the tensor, or freeing the variable frees nothing.
    const init = t.tensor(a, shape);
    w.set(name, t.variable(init, trainable));
    init.dispose();
  }
  return w;
}

function get(w: Weights, name: string): T {
  const v = w.get(name);
  if (v === undefined) throw new DorascopeError('E_MISSING_TENSOR', `missing weight ${name}`);
  return v;
}

/** RMSNorm (Zhang & Sennrich 2019): x / √(mean(x²)+ε) · g. */
function rmsNorm(x: T, g: T, eps: number): T {
  const t = tf();
  return t.mul(t.mul(x, t.rsqrt(t.add(t.mean(t.square(x), -1, true), eps))), g);
}

/**
 * RoPE tables for (backend, T, hd, θ): cos and a signed sin, each [T, hd], computed once in float64
 * and kept (tf.keep) across steps and tidy scopes instead of rebuilt in every call.
 * A few shapes at most are alive (training and evaluation share T); `disposeRopeTables` frees them
 * when training ends. The backend is part of the key because a tensor lives on one backend.
 */
const ropeCache = new Map<string, { cos: T; sin: T }>();
const ROPE_CACHE_ENTRIES = 8;

function ropeTables(T_: number, hd: number, theta: number): { cos: T; sin: T } {
  const t = tf();
  const key = `${t.getBackend()}|${T_}|${hd}|${theta}`;
  const hit = ropeCache.get(key);
  if (hit !== undefined && !hit.cos.isDisposed && !hit.sin.isDisposed) return hit;
  if (hit !== undefined) t.dispose([hit.cos, hit.sin]);
  ropeCache.delete(key);
  if (ropeCache.size >= ROPE_CACHE_ENTRIES) {
    const [oldest, e] = ropeCache.entries().next().value as [string, { cos: T; sin: T }];
    t.dispose([e.cos, e.sin]);
    ropeCache.delete(oldest);
  }
  const half = hd / 2;
  const cos = new Float32Array(T_ * hd), sin = new Float32Array(T_ * hd);
  for (let p = 0; p < T_; p++)
    for (let i = 0; i < half; i++) {
      // HF's inv_freq: θ^(−2i/hd) for i < hd/2, repeated for both halves
      const a = p / theta ** ((2 * i) / hd);
      cos[p * hd + i] = cos[p * hd + i + half] = Math.cos(a);
      // rotate_half(x) = [−x₂, x₁]; the sign lives in the table so the op is a plain swap
      sin[p * hd + i] = -Math.sin(a);
      sin[p * hd + i + half] = Math.sin(a);
    }
  const e = { cos: t.keep(t.tensor2d(cos, [T_, hd])), sin: t.keep(t.tensor2d(sin, [T_, hd])) };
  ropeCache.set(key, e);
  return e;
}

/** Frees the cached RoPE tables (call when training or evaluation ends; the next `rope` rebuilds them). */
export function disposeRopeTables(): void {
  for (const { cos, sin } of ropeCache.values()) tf().dispose([cos, sin]);
  ropeCache.clear();
}

/**
 * RoPE (Su et al. 2021) with HF's rotate_half convention: x·cos + rotate_half(x)·sin, x shaped
 * [B, H, T, hd]; rotate_half(x) = [−x₂, x₁] is computed as [x₂, x₁] times the signed sin table.
 */
export function rope(x: T, theta: number): T {
  const t = tf();
  const T_ = x.shape[x.rank - 2]!, hd = x.shape[x.rank - 1]!;
  const { cos, sin } = ropeTables(T_, hd, theta);
  const [x1, x2] = t.split(x, 2, -1) as [T, T];
  return t.add(t.mul(x, cos), t.mul(t.concat([x2, x1], -1), sin));
}

/**
 * Token embeddings [B, T, d]: rows of E gathered by id. Gather's gradient is UnsortedSegmentSum,
 * which tfjs-backend-wasm 4.22 lacks and src/compute/kernels registers; the one-hot × E product used
 * before cost 629 ms against gather's 17 ms per step at vocabulary 32,000.
 */
export function embed(c: LlamaConfig, w: Weights, ids: tfc.Tensor2D): tfc.Tensor3D {
  const t = tf();
  const [B, T_] = ids.shape;
  const rows = t.gather(get(w, 'model.embed_tokens.weight'), t.reshape(ids, [B * T_]));
  return t.reshape(rows, [B, T_, c.hidden_size]);
}

/**
 * Logits [B·T, vocab] for token ids [B, T]; adapted linears go through their variant. With `quantized`
 * (QLoRA), the linear weights it holds are dequantized on the fly instead of read from `w`.
 */
export function forward(c: LlamaConfig, w: Weights, ids: tfc.Tensor2D, adapters?: Adapters, quantized?: QuantizedBase): T {
  return forwardEmbeds(c, w, embed(c, w, ids), adapters, quantized);
}

/** Logits [B·T, vocab] from input embeddings [B, T, d] (HF's `inputs_embeds`). */
export function forwardEmbeds(c: LlamaConfig, w: Weights, embeds: tfc.Tensor3D, adapters?: Adapters, quantized?: QuantizedBase): T {
  const t = tf();
  const [B, T_] = embeds.shape;
  const d = c.hidden_size, H = c.num_attention_heads, hd = d / H;
  const linear = (x: T, base: string): T => {
    const q = quantized?.get(`${base}.weight`);
    const a = adapters?.layers.get(base);
    // A frozen quantized linear without an adapter recomputes its weight in backward (quantized-base.ts).
    if (q !== undefined && a === undefined) return q.apply(x);
    const W = q !== undefined ? q.dequantize() : get(w, `${base}.weight`);
    return a ? adapters!.variant.forward(x, W, a) : t.matMul(x, W, false, true);
  };
  let h: T = t.reshape(embeds, [B * T_, d]);
  const mask = t.tensor2d(
    Float32Array.from({ length: T_ * T_ }, (_, k) => (k % T_ <= Math.floor(k / T_) ? 0 : -1e9)), [T_, T_]);
  const heads = (x: T) => t.transpose(t.reshape(x, [B, T_, H, hd]), [0, 2, 1, 3]);
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    const x = rmsNorm(h, get(w, `${p}.input_layernorm.weight`), c.rms_norm_eps);
    const q = rope(heads(linear(x, `${p}.self_attn.q_proj`)), c.rope_theta);
    const k = rope(heads(linear(x, `${p}.self_attn.k_proj`)), c.rope_theta);
    const v = heads(linear(x, `${p}.self_attn.v_proj`));
    const att = t.softmax(t.add(t.div(t.matMul(q, k, false, true), Math.sqrt(hd)), mask));
    const o = t.reshape(t.transpose(t.matMul(att, v), [0, 2, 1, 3]), [B * T_, d]);
    h = t.add(h, linear(o, `${p}.self_attn.o_proj`));
    const y = rmsNorm(h, get(w, `${p}.post_attention_layernorm.weight`), c.rms_norm_eps);
    // SwiGLU (Shazeer 2020): down(silu(gate(y)) ⊙ up(y))
    const g = linear(y, `${p}.mlp.gate_proj`);
    h = t.add(h, linear(t.mul(t.mul(g, t.sigmoid(g)), linear(y, `${p}.mlp.up_proj`)), `${p}.mlp.down_proj`));
  }
  return t.matMul(rmsNorm(h, get(w, 'model.norm.weight'), c.rms_norm_eps), get(w, 'lm_head.weight'), false, true);
}

/** Mean next-token cross-entropy over [B, T] ids (predicting ids[:,1:] from ids[:,:-1]). */
export function lmLoss(c: LlamaConfig, w: Weights, ids: tfc.Tensor2D, adapters?: Adapters, quantized?: QuantizedBase): tfc.Scalar {
  const t = tf();
  const [B, T_] = ids.shape;
  const inp = t.slice(ids, [0, 0], [B, T_ - 1]) as tfc.Tensor2D;
  const tgt = t.reshape(t.slice(ids, [0, 1], [B, T_ - 1]), [B * (T_ - 1)]) as tfc.Tensor1D;
  const logits = forward(c, w, inp, adapters, quantized);
  return t.losses.softmaxCrossEntropy(t.oneHot(tgt, c.vocab_size), logits) as tfc.Scalar;
}
