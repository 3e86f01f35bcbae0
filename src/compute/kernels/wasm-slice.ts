import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { Tf } from '../tfjs.js';

/**
 * Pure: copies the box `begin`/`size` of a row-major array of `shape` into
 * `out` (packed), as byte ranges of one heap (`copy(dst, src, n)`, a
 * memmove). Trailing axes taken whole are merged first, so a slice of
 * contiguous rows is a single copy.
 */
export function sliceRanges(shape: number[], begin: number[], size: number[], bytesPerElement: number,
  copy: (dstByte: number, srcByte: number, bytes: number) => void): void {
  const s = [...shape], b = [...begin], z = [...size];
  while (s.length > 1 && b[s.length - 1] === 0 && z[s.length - 1] === s[s.length - 1]) {
    const inner = s.pop()!;
    b.pop();
    z.pop();
    s[s.length - 1]! *= inner;
    b[b.length - 1]! *= inner;
    z[z.length - 1]! *= inner;
  }
  const r = s.length, row = z[r - 1]! * bytesPerElement;
  if (row === 0 || z.some((d) => d === 0)) return;
  const strides = new Array<number>(r);
  strides[r - 1] = 1;
  for (let i = r - 2; i >= 0; i--) strides[i] = strides[i + 1]! * s[i + 1]!;
  const idx = new Array<number>(r - 1).fill(0);
  let dst = 0;
  for (;;) {
    let src = b[r - 1]!;
    for (let i = 0; i < r - 1; i++) src += (b[i]! + idx[i]!) * strides[i]!;
    copy(dst, src * bytesPerElement, row);
    dst += row;
    let ax = r - 2; // odometer over the outer axes
    while (ax >= 0 && ++idx[ax]! === z[ax]!) idx[ax--] = 0;
    if (ax < 0) return;
  }
}

interface HeapBackend {
  makeOutput(shape: number[], dtype: string): TensorInfo;
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  wasm: { HEAPU8: Uint8Array };
}

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };

function sliceOne(be: HeapBackend, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = be.makeOutput(size, x.dtype);
  const from = be.dataIdMap.get(x.dataId).memoryOffset, to = be.dataIdMap.get(out.dataId).memoryOffset;
  const heap = be.wasm.HEAPU8; // read after the allocation, which may have replaced it
  sliceRanges(x.shape, begin, size, BYTES[x.dtype]!, (d, s, n) => heap.copyWithin(to + d, from + s, from + s + n));
  return out;
}

/**
 * `Slice` and `SplitV` for the wasm backend as copies on the wasm heap.
 * tfjs-backend-wasm 4.22's Slice first copies the whole input out of the
 * heap (`readSync`) and then copies each row through a fresh subarray, and
 * SplitV calls it once per part: RoPE's split of q and k (and the gradient of
 * its concat) spent ~0.8 ms per [4,4,63,64] split. String tensors go to the
 * original kernels.
 */
export function wasmSlice(orig: KernelFunc, t: Tf): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (BYTES[x.dtype] === undefined) return orig(args);
    const [begin, size] = t.slice_util.parseSliceParams(x, args.attrs!.begin as number[], args.attrs!.size as number[]) as [number[], number[]];
    return sliceOne(args.backend as HeapBackend, x, begin, size);
  };
}

export function wasmSplitV(orig: KernelFunc, t: Tf): KernelFunc {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (BYTES[x.dtype] === undefined) return orig(args);
    const axis = t.util.parseAxisParam(args.attrs!.axis as number, x.shape)[0]!;
    const sizes = t.backend_util.prepareSplitSize(x, args.attrs!.numOrSizeSplits as number[] | number, axis);
    const begin = new Array<number>(x.shape.length).fill(0);
    return sizes.map((n) => {
      const size = [...x.shape];
      size[axis] = n;
      const part = sliceOne(args.backend as HeapBackend, x, [...begin], size);
      begin[axis]! += n;
      return part;
    });
  };
}

/**
 * `Concat` for the wasm backend as heap copies: for each index of the axes
 * before `axis`, each input's contiguous block in turn (tfjs 4.22 made a
 * subarray object per block). One non-empty input is shared, not copied.
 */
export function wasmConcat(orig: KernelFunc, t: Tf): KernelFunc {
  return (args) => {
    const inputs = Object.values(args.inputs) as TensorInfo[];
    const dtype = inputs[0]!.dtype;
    if (BYTES[dtype] === undefined || inputs.some((x) => x.dtype !== dtype)) return orig(args);
    const be = args.backend as HeapBackend & { incRef(dataId: object): void };
    const axis = t.util.parseAxisParam(args.attrs!.axis as number, inputs[0]!.shape)[0]!;
    t.backend_util.assertParamsConsistent(inputs.map((x) => x.shape), axis);
    const outShape = t.backend_util.computeOutShape(inputs.map((x) => x.shape), axis);
    const parts = inputs.filter((x) => x.shape.every((d) => d > 0));
    if (parts.length === 1) {
      be.incRef(parts[0]!.dataId);
      return { dataId: parts[0]!.dataId, shape: outShape, dtype };
    }
    const out = be.makeOutput(outShape, dtype);
    const bpe = BYTES[dtype]!;
    const outer = outShape.slice(0, axis).reduce((a, b) => a * b, 1);
    const blocks = parts.map((x) => bpe * x.shape.slice(axis).reduce((a, b) => a * b, 1));
    const rowBytes = blocks.reduce((a, b) => a + b, 0);
    const heap = be.wasm.HEAPU8; // after the allocation
    const to = be.dataIdMap.get(out.dataId).memoryOffset;
    parts.forEach((x, i) => {
      const from = be.dataIdMap.get(x.dataId).memoryOffset, n = blocks[i]!;
      let dst = to + blocks.slice(0, i).reduce((a, b) => a + b, 0);
      for (let o = 0; o < outer; o++, dst += rowBytes) heap.copyWithin(dst, from + o * n, from + (o + 1) * n);
    });
    return out;
  };
}
