/**
 * A frozen base whose linear weights are kept as bitsandbytes 4-bit blocks (QLoRA, Dettmers et al.
 * 2023, §3) and dequantized on the fly in the forward pass, as PEFT's LoRA layer over a
 * `bnb.nn.Linear4bit` base does. The codes are bitsandbytes' own (io/quant/bnb-4bit-quantize.ts), and
 * the dequantized weight is the float32 value bitsandbytes' `dequantize_4bit` gives (code[nibble] ·
 * absmax[block], one float32 product), so what the trainer computes with is what a reader of the
 * saved base computes with.
 *
 * tfjs has no uint8 dtype and no bit shifts, so the nibbles live in an int32 tensor, six per element
 * (24 bits: below 2^24, every int32 op is exact even on backends that compute it in float32, and the
 * sign bit is never set) and are unpacked with floorDiv and mod by powers of 16. That is 0.67 byte
 * per weight against bitsandbytes' 0.5. The block absmax is kept decoded, float32 (with double
 * quantization the file stores it as 8-bit codes, 1 byte per block; decoding once at set-up keeps
 * the forward to one gather and one product): 4 / blockSize bytes per weight.
 *
 * Memory: a linear without an adapter multiplies through a custom gradient that dequantizes again in
 * the backward pass, so between the two passes only the packed codes stay alive. A linear with an
 * adapter hands the dequantized weight to its variant (the adapter plug-ins take a weight tensor), so
 * the tape keeps that float32 weight until the backward pass has used it.
 */
import type * as tfc from '@tensorflow/tfjs-core';
import { DorascopeError } from '../errors.js';
import { tf } from '../compute/backend.js';
import { codeFor, nestedAbsmax, type Bnb4bitType } from '../io/quant/bnb-4bit.js';
import { quantize4bit, type Quantize4bitOptions, type Quantized4bit } from '../io/quant/bnb-4bit-quantize.js';

type T = tfc.Tensor;

/** 4-bit codes per int32 element: 24 bits, so every value is an integer float32 represents exactly. */
const PER_WORD = 6;
/** 16^5 … 16^0: the first code in the highest position, as bitsandbytes puts the first in the high nibble. */
const DIVISORS = Array.from({ length: PER_WORD }, (_, j) => 16 ** (PER_WORD - 1 - j));

/** The linear modules QLoRA quantizes: every nn.Linear of the decoder layers (Transformers keeps lm_head, embeddings and norms unquantized). */
const LINEAR = /^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$/u;

export function isQuantizedLinear(name: string): boolean {
  return LINEAR.test(name);
}

export type QuantizeBaseOptions = Quantize4bitOptions;

/** The float32 absmax per block that dequantization multiplies by (the nested decode with double quantization). */
export function blockAbsmax(qw: Quantized4bit): Float32Array {
  if (qw.nested === null) return qw.absmax as Float32Array;
  return nestedAbsmax(qw.absmax as Uint8Array, qw.nested.absmax, qw.nested.code, qw.nested.blockSize, qw.nested.offset);
}

/** One quantized linear weight (out × in) in tfjs: packed codes, block absmax and the shared code table. */
export class QuantizedLinear {
  readonly shape: [number, number];
  private readonly words: tfc.Tensor2D;
  private readonly absmax: tfc.Tensor2D;
  private readonly blocks: number;

  constructor(readonly stored: Quantized4bit, private readonly code: tfc.Tensor1D, private readonly divisors: tfc.Tensor2D) {
    const t = tf();
    const [out, inp] = stored.shape as [number, number];
    this.shape = [out, inp];
    const n = out * inp;
    this.blocks = Math.ceil(n / stored.blockSize);
    const padded = this.blocks * stored.blockSize;
    const nWords = Math.ceil(padded / PER_WORD);
    const words = new Int32Array(nWords);
    for (let i = 0; i < n; i++) {
      const byte = stored.packed[i >> 1]!;
      const nibble = (i & 1) === 0 ? byte >> 4 : byte & 0x0f;
      words[Math.floor(i / PER_WORD)]! += nibble * DIVISORS[i % PER_WORD]!;
    }
    this.words = t.tensor2d(words, [nWords, 1], 'int32');
    this.absmax = t.tensor2d(blockAbsmax(stored), [this.blocks, 1]);
  }

  /** The dequantized weight, float32 (out × in): code[nibble] · absmax[block]. */
  dequantize(): tfc.Tensor2D {
    const t = tf();
    return t.tidy(() => {
      const bs = this.stored.blockSize, n = this.shape[0] * this.shape[1];
      const nibbles = t.reshape(t.mod(t.floorDiv(this.words, this.divisors), t.scalar(16, 'int32')), [-1]);
      const codes = t.gather(this.code, t.slice(nibbles, 0, this.blocks * bs));
      const values = t.reshape(t.mul(t.reshape(codes, [this.blocks, bs]), this.absmax), [-1]);
      return t.reshape(n === values.size ? values : t.slice(values, 0, n), this.shape);
    });
  }

  /**
   * x · Wᵀ for x (rows × in), with W dequantized in the forward pass and again in the backward pass
   * (dx = dy · W), so no float32 copy of W outlives either pass. No gradient reaches the codes.
   */
  apply(x: T): T {
    const t = tf();
    const f = (xi: T) => {
      const W = this.dequantize();
      const value = t.matMul(xi, W, false, true);
      W.dispose();
      return {
        value,
        gradFunc: (dy: T) => {
          const Wb = this.dequantize();
          const dx = t.matMul(dy, Wb);
          Wb.dispose();
          return [dx];
        },
      };
    };
    return t.customGrad(f as unknown as Parameters<typeof t.customGrad>[0])(x) as T;
  }

  /** Bytes of tfjs memory this weight holds (codes and absmax; the code table is shared). */
  get bytes(): number {
    return this.words.size * 4 + this.absmax.size * 4;
  }

  dispose(): void {
    this.words.dispose();
    this.absmax.dispose();
  }
}

/** Every quantized linear of a model, by weight name, with their settings. */
export class QuantizedBase {
  private constructor(readonly options: QuantizeBaseOptions, readonly linears: ReadonlyMap<string, QuantizedLinear>, private readonly shared: T[]) {}

  /**
   * Quantizes every decoder linear of `weights` (float32 variables, unchanged) with bitsandbytes'
   * `quantize_4bit`. The caller keeps or frees the float32 weights.
   */
  static async quantize(weights: ReadonlyMap<string, tfc.Tensor>, o: QuantizeBaseOptions): Promise<QuantizedBase> {
    const t = tf();
    const code = t.tensor1d(codeFor(o.quantType));
    const divisors = t.tensor2d(DIVISORS, [1, PER_WORD], 'int32');
    const linears = new Map<string, QuantizedLinear>();
    try {
      for (const [name, v] of weights) {
        if (!isQuantizedLinear(name)) continue;
        if (v.rank !== 2) throw new DorascopeError('E_INTERNAL', `${name} is not a matrix`);
        const qw = quantize4bit((await v.data()) as Float32Array, v.shape, o);
        linears.set(name, new QuantizedLinear(qw, code, divisors));
      }
    } catch (e) {
      for (const l of linears.values()) l.dispose();
      t.dispose([code, divisors]);
      throw e;
    }
    return new QuantizedBase(o, linears, [code, divisors]);
  }

  get(name: string): QuantizedLinear | undefined {
    return this.linears.get(name);
  }

  /** tfjs bytes held by the quantized weights (the 16-entry code table included). */
  get bytes(): number {
    let b = 16 * 4 + PER_WORD * 4;
    for (const l of this.linears.values()) b += l.bytes;
    return b;
  }

  dispose(): void {
    for (const l of this.linears.values()) l.dispose();
    tf().dispose(this.shared);
  }
}

/** The quant types `--quantize` accepts. */
export const QUANT_TYPES: readonly Bnb4bitType[] = ['nf4', 'fp4'];
