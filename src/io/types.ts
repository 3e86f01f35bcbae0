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
  /**
   * Set when the file stores this weight quantized (bitsandbytes NF4/FP4/LLM.int8): `dtype` and
   * `shape` are then the logical (dequantized) ones, `byteLength` the stored tensors' bytes, and
   * `read` returns the dequantized weight (src/io/quant/).
   */
  readonly quant?: QuantInfo;
}

/** How a quantized weight is stored (bitsandbytes, as Transformers saves it). */
export interface QuantInfo {
  readonly method: 'bitsandbytes';
  /** 4-bit blockwise `nf4` / `fp4`, or `int8` (LLM.int8: one absmax per row). */
  readonly type: 'nf4' | 'fp4' | 'int8';
  /** Values per absmax block (4-bit); null for int8. */
  readonly blockSize: number | null;
  /** The block absmax are themselves 8-bit quantized (`bnb_4bit_use_double_quant`). */
  readonly doubleQuant: boolean;
  /** The stored tensors the weight is decoded from. */
  readonly stored: readonly string[];
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
  /** Raw little-endian bytes of a stored tensor, any dtype (file-backed sources; quantized weights need it). */
  readBytes?(name: string): Promise<Uint8Array>;
  /**
   * Optional, for sources backed by files: reads `into.byteLength` raw bytes (the tensor's own
   * dtype, little-endian) of tensor `name` from `tensorByteOffset` into the caller's buffer.
   * The streaming analysis uses it to read row blocks into reused buffers; sources without it
   * (an adapter merged onto a base) are read whole with `read`. `blocking`: with blocking calls
   * on the calling thread instead of libuv's thread pool (for a worker thread with nothing else
   * to do; the promise is then settled when the call returns).
   */
  readBytesInto?(name: string, into: Uint8Array, tensorByteOffset: number, blocking?: boolean): Promise<void>;
  /** Releases file handles. Safe to call twice. */
  close(): Promise<void>;
}

export type SourceKind = 'file' | 'folder' | 'sharded' | 'adapter' | 'merged-adapter';
