/**
 * dorascope's public library API: hand-picked named exports (no `export *` of internals).
 * Each area adds its exports under its heading.
 */
// errors
export { DorascopeError, isDorascopeError, type ErrorCode } from './errors.js';
export { VERSION } from './version.js';
// io
export type { DType, TensorInfo, TensorSource, SourceKind } from './io/types.js';
// analysis
// report
// train
