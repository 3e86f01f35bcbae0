/** Shared pieces of the figure specs: a Plotly figure is plain data (traces + layout), built here, drawn in the page. */
export interface Figure { id: string; title: string; data: Record<string, unknown>[]; layout: Record<string, unknown> }

/** Okabe–Ito palette (colour-blind safe; Okabe & Ito 2008), cycled when there are more layers than colours. */
export const PALETTE = ['#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#F0E442', '#000000'];
export const SYMBOLS = ['circle', 'square', 'diamond', 'triangle-up', 'x', 'cross', 'triangle-down', 'star', 'pentagon', 'hexagon'];

/** Past this many points in one figure, WebGL (`scattergl`) keeps an 11,200-point run responsive. */
export const GL_THRESHOLD = 2000;

export const AXIS_NOTE = 'ΔM = mean_k |m_t − m_0| (magnitude, weight units); ΔD = mean_k (1 − cos(W_t, W_0)) (direction, unitless). DoRA paper §3.';

export const fmt = (x: number | null | undefined, d = 3): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));

/** Plotly parses a markup subset (<br>, <b>, <a>) in text; entity-escape user strings so they show as typed. */
export const plotlyText = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
