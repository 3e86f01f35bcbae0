/**
 * Layer index and module name from a tensor name, for the common architectures:
 *   Llama/Mistral/Qwen  model.layers.N.self_attn.q_proj.weight, model.layers.N.mlp.up_proj.weight
 *   GPT-2               transformer.h.N.attn.c_attn.weight (Conv1D, stored (in, out))
 *   BERT / RoBERTa      encoder.layer.N.attention.self.query.weight, ….output.dense.weight
 *   T5                  encoder.block.N.layer.M.SelfAttention.q.weight, ….DenseReluDense.wi.weight
 *   BART / mBART        model.encoder.layers.N.self_attn.q_proj.weight
 *   ViT (HF)            vit.encoder.layer.N.attention.attention.query.weight
 * Names outside these keep layer = −1 and the full name as the module.
 */
import type { FeatureAxis } from './decompose.js';

export interface ParsedName {
  readonly layer: number;
  readonly module: string;
  /** The part of the model (encoder/decoder) when the architecture has two stacks. */
  readonly stack: string;
}

const LAYER_RE = /(?:^|\.)(?:layers|layer|h|block|blocks)\.(\d+)\.(.+)$/u;

export function parseTensorName(name: string): ParsedName {
  const base = name.replace(/\.(weight|bias)$/u, '');
  const m = LAYER_RE.exec(base);
  if (!m) return { layer: -1, module: base, stack: '' };
  const prefix = base.slice(0, m.index);
  const stack = /decoder/u.test(prefix) ? 'decoder' : /encoder/u.test(prefix) ? 'encoder' : '';
  const rest = m[2]!.split('.');
  let module = rest[rest.length - 1]!;
  // BERT-style names end in generic words: keep the distinguishing parent (attention.output.dense).
  if (module === 'dense') module = rest.slice(-3).join('.');
  // T5 nests a sub-layer index (layer.M.SelfAttention.q): the last segment already names it.
  return { layer: Number(m[1]), module: stack === 'decoder' && /^(q|k|v|o|q_proj|k_proj|v_proj|out_proj)$/u.test(module) && /encoder_attn|EncDecAttention/u.test(base) ? `cross.${module}` : module, stack };
}

/** GPT-2's Conv1D modules store (in, out): their output features are columns. */
export function featureAxisFor(name: string): FeatureAxis {
  return /(?:^|\.)h\.\d+\.(?:attn|mlp)\.(?:c_attn|c_proj|c_fc)\.weight$/u.test(name) ? 'cols' : 'rows';
}

/** The default tensor set: weights of 2-D (or conv) layers under a layer index; embeddings and norms excluded. */
export function isDefaultTarget(name: string, shape: readonly number[]): boolean {
  if (!name.endsWith('.weight') || shape.length < 2) return false;
  if (/norm|embed|wte|wpe|lm_head|ln_\d|layernorm/iu.test(name)) return false;
  return parseTensorName(name).layer >= 0;
}
