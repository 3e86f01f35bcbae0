/**
 * The contract between readers and everything downstream: a tensor is named,
 * typed and shaped; a source lists tensors from headers alone and reads one
 * tensor at a time (never a whole model).
 */

/** safetensors dtype names, exactly as they appear in headers. */
export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8'
  | 'U64' | 'U32' | 'U16' | 'U8'
  | 'BOOL';

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  /** Dimensions in the file's order (torch's, row-major). [] for a 0-rank tensor. */
  readonly shape: readonly number[];
  /** Bytes the tensor occupies in its file (0 for synthesized tensors). */
  readonly byteLength: number;
}

/** Anything that holds named tensors: a file, a sharded folder, a checkpoint, an adapter merged onto a base. */
export interface TensorSource {
  /** The path the user named (file or folder). */
  readonly path: string;
  /** What kind of source this is, for `inspect` and manifests. */
  readonly kind: SourceKind;
  /** `__metadata__` of the file (merged over shards). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in name order; from headers only. */
  list(): readonly TensorInfo[];
  /** undefined when absent. */
  info(name: string): TensorInfo | undefined;
  /** Reads and decodes one floating-point tensor to float32 (E_MISSING_TENSOR, E_DTYPE on ints/bools). */
  read(name: string): Promise<Float32Array>;
  /** Releases file handles. Safe to call twice. */
  close(): Promise<void>;
}

export type SourceKind = 'file' | 'folder' | 'sharded' | 'adapter' | 'merged-adapter';
