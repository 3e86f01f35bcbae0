/**
 * Plain types of the trainer's public options and results, without TensorFlow.js, so the package's published
 * declarations compile for a consumer without tfjs's own types (which need @types/long and clash with lib.dom's
 * WebGPU types).
 */
/** The adapter methods the trainer has a variant for (adapters/build.ts VARIANTS). */
export type AdapterMethod = 'lora' | 'dora' | 'vera' | 'dvora';

export interface StepInfo {
  step: number;
  loss: number;
  learningRate: number;
}

export interface LlamaConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  rms_norm_eps: number;
  rope_theta: number;
}
