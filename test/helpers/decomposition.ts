/**
 * The paper's ΔM and ΔD (§3.2) over the rows of a (rows × cols) row-major matrix, written as a plain float64
 * loop apart from the analysis kernels: mean over rows of |‖w_t‖ − ‖w_0‖| and of 1 − cos(w_0, w_t).
 */
export function refDecomposition(w0: ArrayLike<number>, wt: ArrayLike<number>, rows: number, cols: number): { dm: number; dd: number } {
  let dm = 0, dd = 0;
  for (let i = 0; i < rows; i++) {
    let a = 0, b = 0, ab = 0;
    for (let j = 0; j < cols; j++) {
      const x = w0[i * cols + j]!, y = wt[i * cols + j]!;
      a += x * x; b += y * y; ab += x * y;
    }
    dm += Math.abs(Math.sqrt(b) - Math.sqrt(a));
    dd += 1 - ab / Math.sqrt(a * b);
  }
  return { dm: dm / rows, dd: dd / rows };
}
