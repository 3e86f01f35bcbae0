/**
 * A small progress reporter shared by long commands (analyze, train): units done of a total,
 * an optional byte count for a rate in bytes/s (else units/s), an ETA, and free extra fields
 * (e.g. `loss`). On a terminal it redraws one line with `\r` at most ~10 times a second, fitted to
 * the terminal's width so it never wraps (a wrapped line cannot be redrawn with `\r`), and ends it
 * with a newline. Elsewhere (CI logs, files) it writes plain lines: one every 10% of the work or
 * every `intervalMs`, whichever comes first, and a final one. `quiet` writes nothing.
 *
 * The writer and the clock are injected, so there is no global state and tests drive it exactly;
 * the formatting functions are pure and exported for tests.
 */

export interface ProgressOptions {
  /** Units of work in all (tensors, steps). */
  readonly total: number;
  /** Name of a unit, for the rate when no bytes are counted (default `it`). */
  readonly unit?: string | undefined;
  /** Leading label, e.g. `analyze`. */
  readonly label?: string | undefined;
  /** Where text goes (e.g. `(s) => process.stderr.write(s)`); lines carry their own `\n`. */
  readonly write: (text: string) => void;
  /** Redrawn bar (true) or plain lines (false). */
  readonly tty: boolean;
  /** Terminal width for the bar (default 80). */
  readonly columns?: number | undefined;
  readonly quiet?: boolean | undefined;
  /** Plain mode: at most this long between lines (default 10 s). */
  readonly intervalMs?: number | undefined;
  /** Milliseconds clock (default performance.now). */
  readonly now?: (() => number) | undefined;
}

export interface ProgressUpdate {
  /** Bytes processed by this step (adds to the running byte count). */
  readonly bytes?: number | undefined;
  /** Extra fields shown after the rate, e.g. `{ loss: 1.234 }`; they replace the previous ones. */
  readonly fields?: Readonly<Record<string, string | number>> | undefined;
  /** What is being worked on (shown last, dropped first when the line is too long). */
  readonly note?: string | undefined;
}

/** Seconds as `12s`, `3:05`, `1:02:03`; `--` when unknown (no progress yet, or not finite). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(r).padStart(2, '0')}`;
}

/** Bytes per second with a decimal SI prefix (1 MB = 10⁶ B), three significant digits. */
export function formatByteRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '-- B/s';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytesPerSecond, i = 0;
  while (v >= 999.5 && i < units.length - 1) { v /= 1000; i++; }
  return `${sig3(v)} ${units[i]}/s`;
}

/** Units per second (`3.21 tensors/s`), or seconds per unit when slower than one a second (`4.2 s/step`). */
export function formatUnitRate(perSecond: number, unit: string): string {
  if (!Number.isFinite(perSecond) || perSecond <= 0) return `-- ${unit}/s`;
  return perSecond >= 1 ? `${sig3(perSecond)} ${unit}/s` : `${sig3(1 / perSecond)} s/${unit}`;
}

function sig3(v: number): string {
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

/** A bar of exactly `width` characters (brackets included): `[#####-----]`. */
export function renderBar(done: number, total: number, width: number): string {
  const inner = Math.max(0, width - 2);
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 0;
  const full = Math.floor(frac * inner);
  return `[${'#'.repeat(full)}${'-'.repeat(inner - full)}]`;
}

/** Seconds left, from the fraction done and the time spent (NaN before any progress). */
export function estimateRemaining(elapsedSeconds: number, done: number, total: number): number {
  if (done <= 0 || total <= 0) return NaN;
  return elapsedSeconds / done * Math.max(0, total - done);
}

function formatField(v: string | number): string {
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return String(v);
  return Number.isInteger(v) ? String(v) : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? v.toPrecision(4) : v.toExponential(3);
}

export interface ProgressState {
  readonly done: number;
  readonly total: number;
  readonly elapsedSeconds: number;
  readonly bytes: number;
  readonly unit: string;
  readonly label?: string | undefined;
  readonly fields?: Readonly<Record<string, string | number>> | undefined;
  readonly note?: string | undefined;
}

/** The text parts of a progress line: count, percentage, rate, ETA, fields (no bar, no note). */
export function statusParts(s: ProgressState): string[] {
  const pct = s.total > 0 ? Math.floor(100 * s.done / s.total) : 0;
  const rate = s.bytes > 0 ? formatByteRate(s.bytes / s.elapsedSeconds) : formatUnitRate(s.done / s.elapsedSeconds, s.unit);
  const finished = s.done >= s.total;
  const time = finished ? `in ${formatDuration(s.elapsedSeconds)}` : `ETA ${formatDuration(estimateRemaining(s.elapsedSeconds, s.done, s.total))}`;
  const parts = [`${s.done}/${s.total}`, `${pct}%`, rate, time];
  for (const [k, v] of Object.entries(s.fields ?? {})) parts.push(`${k}=${formatField(v)}`);
  return parts;
}

/**
 * The redrawn terminal line, at most `columns − 1` characters (the last column is left free:
 * some terminals wrap when it is written). The bar takes what is left, 10 to 40 characters;
 * the note is cut first, then the bar goes, then the line is cut.
 */
export function fitLine(s: ProgressState, columns: number): string {
  const max = Math.max(1, columns - 1);
  const head = s.label ? `${s.label} ` : '';
  const status = statusParts(s).join('  ');
  const fixed = head.length + status.length + 1; // one space after the bar
  const room = max - fixed;
  let line: string;
  if (room >= 10) {
    const bar = renderBar(s.done, s.total, Math.min(40, room));
    line = `${head}${bar} ${status}`;
  } else {
    line = `${head}${status}`;
  }
  if (s.note && line.length + 2 < max) line = `${line}  ${s.note}`;
  return line.length > max ? line.slice(0, max) : line;
}

/** A plain log line (no bar): `label 12/40  30%  1.2 MB/s  ETA 12s  loss=1.234  note`. */
export function plainLine(s: ProgressState): string {
  return [...(s.label ? [s.label] : []), ...statusParts(s), ...(s.note ? [s.note] : [])].join('  ');
}

const TTY_INTERVAL_MS = 100; // ~10 Hz: smooth to the eye, negligible cost

export class Progress {
  private doneUnits = 0;
  private bytes = 0;
  private fields: Readonly<Record<string, string | number>> | undefined;
  private note: string | undefined;
  private readonly start: number;
  private lastDraw = -Infinity;
  private lastDecile = 0;
  private finished = false;
  private drewTty = false;
  private readonly now: () => number;

  constructor(private readonly o: ProgressOptions) {
    this.now = o.now ?? (() => performance.now());
    this.start = this.now();
    // A terminal bar shows at once; plain lines wait for the first 10% or interval.
    this.lastDraw = o.tty ? -Infinity : this.start;
  }

  /** Adds `units` done (default 1) and redraws when due. */
  tick(units = 1, u: ProgressUpdate = {}): void {
    this.update(this.doneUnits + units, u);
  }

  /** Sets the units done and redraws when due; reaching the total finishes the line. */
  update(done: number, u: ProgressUpdate = {}): void {
    if (this.finished) return;
    this.doneUnits = Math.min(done, this.o.total);
    if (u.bytes !== undefined) this.bytes += u.bytes;
    if (u.fields !== undefined) this.fields = u.fields;
    if (u.note !== undefined) this.note = u.note;
    if (this.doneUnits >= this.o.total) { this.finish(); return; }
    this.draw(false);
  }

  /** Writes the last line (and the terminal's newline); safe to call twice. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.draw(true);
  }

  private state(): ProgressState {
    return {
      done: this.doneUnits, total: this.o.total, elapsedSeconds: Math.max(1e-6, (this.now() - this.start) / 1000),
      bytes: this.bytes, unit: this.o.unit ?? 'it', label: this.o.label, fields: this.fields, note: this.note,
    };
  }

  private draw(final: boolean): void {
    if (this.o.quiet) return;
    const t = this.now();
    if (this.o.tty) {
      if (!final && t - this.lastDraw < TTY_INTERVAL_MS) return;
      this.lastDraw = t;
      // `\r` back to the start, the fitted line, then erase the rest of the old line (ESC [K).
      this.o.write(`\r${fitLine(this.state(), this.o.columns ?? 80)}\x1b[K${final ? '\n' : ''}`);
      this.drewTty = true;
      return;
    }
    const decile = this.o.total > 0 ? Math.floor(10 * this.doneUnits / this.o.total) : 0;
    const due = final || decile > this.lastDecile || t - this.lastDraw >= (this.o.intervalMs ?? 10_000);
    if (!due) return;
    this.lastDecile = decile;
    this.lastDraw = t;
    this.o.write(`${plainLine(this.state())}\n`);
  }

  /**
   * Stops without the final line (an error is about to be reported): a terminal line that was
   * drawn is ended with a newline so the message starts on its own line.
   */
  interrupt(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.drewTty) this.o.write('\n');
  }

  /** Whether anything was drawn on a terminal line (so a caller printing mid-run can start a new line). */
  get drawing(): boolean {
    return this.drewTty && !this.finished;
  }
}

/** Progress on this process's stderr: a bar when it is a terminal, plain lines otherwise. */
export function stderrProgress(o: Omit<ProgressOptions, 'write' | 'tty' | 'columns'>): Progress {
  const err = process.stderr;
  return new Progress({ ...o, write: (s) => { err.write(s); }, tty: err.isTTY === true, columns: err.columns });
}
