/**
 * One error class for everything dorascope reports to a user. Errors are data:
 * a stable `code` (for programs and tests), a one-line message that names the
 * file, tensor and offending value (for people), and optional details.
 */
export type ErrorCode =
  // safetensors header and layout (mirrors the reference Rust reader's SafeTensorError variants)
  | 'E_HEADER_TOO_SMALL'
  | 'E_HEADER_TOO_LARGE'
  | 'E_HEADER_OUT_OF_BOUNDS'
  | 'E_HEADER_UTF8'
  | 'E_HEADER_JSON'
  | 'E_HEADER_SCHEMA'
  | 'E_UNKNOWN_DTYPE'
  | 'E_OFFSETS'
  | 'E_END_BEFORE_BEGIN'
  | 'E_TENSOR_SIZE'
  | 'E_OVERFLOW'
  | 'E_DATA_LENGTH'
  | 'E_METADATA'
  | 'E_DUPLICATE_TENSOR'
  | 'E_TRUNCATED'
  | 'E_READ'
  // files and sources
  | 'E_NOT_FOUND'
  | 'E_NOT_REGULAR_FILE'
  | 'E_SYMLINK_LOOP'
  | 'E_JSON_TOO_LARGE'
  | 'E_UNSUPPORTED_FORMAT'
  | 'E_PICKLE'
  | 'E_INDEX'
  | 'E_HF_CACHE'
  | 'E_TRAINER_STATE'
  | 'E_ADAPTER_CONFIG'
  | 'E_ADAPTER_KEYS'
  | 'E_MISSING_TENSOR'
  | 'E_SHAPE_MISMATCH'
  | 'E_DTYPE'
  | 'E_NON_FINITE'
  | 'E_QUANT_STATE'
  | 'E_QUANT_CONFIG'
  // analysis, report, training
  | 'E_USAGE'
  | 'E_NO_TENSORS'
  | 'E_ANALYSIS_DIR'
  // `combine`: a folder that is not a shard, or shards that are not the parts of one analysis
  | 'E_SHARD'
  | 'E_CHROMIUM'
  | 'E_BACKEND'
  | 'E_DATA'
  | 'E_CHECKPOINT'
  | 'E_WRITE'
  // an optional dependency (package.json optionalDependencies) that the command needs is not installed
  | 'E_MISSING_DEPENDENCY'
  // outputs: never over an input, never over another program's files, one writer at a time
  | 'E_OUTPUT_OVERLAP'
  | 'E_OUTPUT_EXISTS'
  | 'E_OUTPUT_LOCKED'
  | 'E_INTERNAL';

export class DorascopeError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'DorascopeError';
    this.code = code;
    this.details = details;
  }
}

export function isDorascopeError(e: unknown, code?: ErrorCode): e is DorascopeError {
  return e instanceof DorascopeError && (code === undefined || e.code === code);
}

/** Quotes a user-supplied name for a message: JSON quoting shows control characters and stays on one line. */
export function q(s: string): string {
  const j = JSON.stringify(s);
  return j.length > 200 ? `${j.slice(0, 197)}..."` : j;
}
