/**
 * The training backends by name, and what selecting one reports. Plain types without TensorFlow.js, so the
 * package's published declarations (train's options, `selectBackend`) compile without tfjs's own types.
 */
export type BackendName = 'cpu' | 'wasm' | 'webgpu' | 'tensorflow';
export type BackendChoice = BackendName | 'auto';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

/** What was chosen, on what device, and why the others were passed over (printed, and kept in checkpoints). */
export interface BackendInfo {
  name: BackendName;
  /** Human-readable device: the WebGPU adapter's description, or the CPU engine. */
  device: string;
  /** True for a software WebGPU adapter (Mesa llvmpipe, SwiftShader): correct but slow. */
  software: boolean;
  /** For `auto`: one line per backend that was tried and skipped, with the reason. */
  skipped: string[];
}
