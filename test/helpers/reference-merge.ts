/**
 * An independent float64 reference for PEFT's merge, written from the formulas (PEFT
 * `layer.py` get_delta_weight; DoRA paper eq. 5) with plain index arithmetic on
 * explicit (row, col) matrices, deliberately sharing no code with src/methods/*.ts.
 */

/** Plain 2-D float64 matrix. */
export type Mat = number[][];

export function toMat(data: ArrayLike<number>, rows: number, cols: number): Mat {
  const m: Mat = [];
  for (let i = 0; i < rows; i++) {
    const row: number[] = [];
    for (let j = 0; j < cols; j++) row.push(data[i * cols + j]!);
    m.push(row);
  }
  return m;
}

export function matmul(x: Mat, y: Mat): Mat {
  return x.map((row) => y[0]!.map((_, j) => row.reduce((s, v, k) => s + v * y[k]![j]!, 0)));
}

export function transpose(x: Mat): Mat {
  return x[0]!.map((_, j) => x.map((row) => row[j]!));
}

export function flat(x: Mat): number[] {
  return x.flat();
}

/**
 * The effective weight in torch's layout, as PEFT defines it.
 * - outputsAreRows: linear / conv (W is (out, in·k)); otherwise conv1d / embedding (W is (in, out)).
 * - magnitude: when given, DoRA: each output feature of V scaled to norm m (zero features stay zero).
 */
export function referenceMerge(opts: {
  W: ArrayLike<number>; A: ArrayLike<number>; B: ArrayLike<number>;
  r: number; out: number; in: number; scaling: number; outputsAreRows: boolean; magnitude?: ArrayLike<number>;
}): number[] {
  const A = toMat(opts.A, opts.r, opts.in);
  const B = toMat(opts.B, opts.out, opts.r);
  const BA = matmul(B, A); // (out, in)
  const delta = opts.outputsAreRows ? BA : transpose(BA);
  const rows = opts.outputsAreRows ? opts.out : opts.in;
  const cols = opts.outputsAreRows ? opts.in : opts.out;
  const W = toMat(opts.W, rows, cols);
  const V = W.map((row, i) => row.map((w, j) => w + opts.scaling * delta[i]![j]!));
  if (!opts.magnitude) return flat(V);
  // norm of each output feature: rows of V, or columns of V
  const featureNorm = (o: number): number => {
    let s = 0;
    if (opts.outputsAreRows) for (let j = 0; j < cols; j++) s += V[o]![j]! ** 2;
    else for (let i = 0; i < rows; i++) s += V[i]![o]! ** 2;
    return Math.sqrt(s);
  };
  const norms = Array.from({ length: opts.out }, (_, o) => featureNorm(o));
  const m = opts.magnitude;
  return flat(V.map((row, i) => row.map((v, j) => {
    const o = opts.outputsAreRows ? i : j;
    return norms[o] === 0 ? 0 : (m[o]! / norms[o]!) * v;
  })));
}

/** Largest |a-b| / max(1, |b|) over two arrays. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < b.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return e;
}
