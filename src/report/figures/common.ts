/** Shared pieces of the figure specs: a Plotly figure is plain data (traces + layout), built here, drawn in the page. */
export interface Figure { id: string; title: string; data: Record<string, unknown>[]; layout: Record<string, unknown> }

/** Okabe–Ito palette (colour-blind safe; Okabe & Ito 2008): one colour per run. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];

/**
 * Layers are coloured on Viridis (perceptually uniform and colour-blind safe; van der Walt & Smith 2015) with a
 * colour bar: a 70B model has 80 layers, far more than any palette of distinguishable colours, and one trace per
 * layer is what made large reports slow (every trace costs a draw call and a legend entry).
 */
export const LAYER_SCALE = 'Viridis';

/** Plotly marker symbols, distinct at a glance, one per checkpoint step (cycled past 24 steps). */
export const SYMBOLS = ['circle', 'square', 'diamond', 'triangle-up', 'x', 'cross', 'triangle-down', 'star', 'pentagon',
  'hexagon', 'triangle-left', 'triangle-right', 'star-triangle-up', 'hourglass', 'bowtie', 'circle-open', 'square-open',
  'diamond-open', 'triangle-up-open', 'star-open', 'pentagon-open', 'hexagon-open', 'cross-open', 'x-open'];

/**
 * Past this many points in one trace type per figure, WebGL (`scattergl`) replaces SVG: SVG draws one DOM node per
 * marker, so an 11,200-point run would stall the page; WebGL draws them in one call.
 */
export const GL_THRESHOLD = 2000;

export const AXIS_NOTE = 'ΔM = mean_k |m_t − m_0| (magnitude, weight units); ΔD = mean_k (1 − cos(W_t, W_0)) (direction, unitless). DoRA paper §3.';

export const fmt = (x: number | null | undefined, d = 3): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));

/** Plotly parses a markup subset (<br>, <b>, <a>) in text; entity-escape user strings so they show as typed. */
export const plotlyText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A value for hover text: 4 significant digits, n/a for missing or non-finite. */
export const hoverNum = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toPrecision(4));

/** The hover text of one point: every figure names run, layer, module, step and both values, so a point
 * read off any dropdown view or exported image can be traced back to its row in decomposition.arrow. */
export function hoverText(run: string, layer: number, module: string, step: number, dm: number | null, dd: number | null): string {
  return `run ${plotlyText(run)}<br>layer ${layer} · ${plotlyText(module)}<br>step ${step}<br>ΔM ${hoverNum(dm)} · ΔD ${hoverNum(dd)}`;
}

/**
 * The order of a transformer block's projections, as a Llama/Mistral/Qwen checkpoint lists them in its model
 * code (attention q, k, v, o, then the MLP's gate, up, down). Safetensors headers sort names alphabetically
 * (k, o, q, v; down, gate, up), so the file's order is not the model's.
 */
export const MODEL_MODULE_ORDER = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;

/** Modules in model order (MODEL_MODULE_ORDER, with or without `_proj`), any other after them in the given order. */
export function orderModules(modules: Iterable<string>): string[] {
  const rank = (m: string): number => {
    const i = (MODEL_MODULE_ORDER as readonly string[]).indexOf(m.replace(/_proj$/u, ''));
    return i < 0 ? MODEL_MODULE_ORDER.length : i;
  };
  return [...new Set(modules)].map((m, i) => ({ m, i })).sort((a, b) => rank(a.m) - rank(b.m) || a.i - b.i).map((x) => x.m);
}

/**
 * Plotly tick settings that put ticks on whole numbers only, for layer indices (Plotly's automatic ticks give
 * 0, 0.2, …, 1 for a two-layer model): a step of 1, 2 or 5 × 10^k, at most about `maxTicks` ticks.
 */
export function integerTicks(lo: number, hi: number, maxTicks = 8): { tick0: number; dtick: number; tickformat: string } {
  const span = Math.max(1, Math.ceil(hi - lo));
  let dtick = 1;
  for (let k = 1; span / dtick > maxTicks; k++) dtick = [1, 2, 5][k % 3]! * 10 ** Math.floor(k / 3);
  return { tick0: Math.floor(lo), dtick, tickformat: 'd' };
}
