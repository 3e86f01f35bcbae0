/**
 * Text from users' files reaching programs that interpret it: the terminal (inspect), a
 * spreadsheet (the CSV tables) and a browser (the HTML report). Control and bidi characters are
 * shown escaped, formula-looking CSV cells are neutralised, and a file with 130,000 tensors
 * inspects without spreading its names into one call.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatInspect, inspect } from '../../src/io/inspect.js';
import { DECOMPOSITION_COLUMNS, toCsv, type DecompositionRow } from '../../src/analysis/table.js';
import { escapeHtml, jsonForScript } from '../../src/report/html.js';
import { writeModel } from '../helpers/models.js';

const root = mkdtempSync(join(tmpdir(), 'dorascope-escape-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Every character class that must not reach a terminal or a page raw.
const HOSTILE = {
  esc: '\u001b]0;owned\u0007', // OSC: retitles the terminal window
  clear: '\u001b[2J', // CSI: clears the screen
  del: '\u007f',
  c1: '\u009b31m', // C1 CSI
  bidi: ['\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069'],
};
// eslint-disable-next-line no-control-regex
const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/u;

describe('inspect output on a terminal', () => {
  it('tensor names and metadata are shown with control and bidi characters escaped', async () => {
    const path = join(root, 'hostile.safetensors');
    const names = [`a${HOSTILE.esc}`, `b${HOSTILE.clear}`, `c${HOSTILE.del}${HOSTILE.c1}`, ...HOSTILE.bidi.map((c, i) => `d${i}${c}x`)];
    const t = { shape: [1], data: new Float32Array([1]) };
    await writeModel(path, Object.fromEntries(names.map((n) => [n, t])), { [`k${HOSTILE.esc}`]: `v${HOSTILE.clear}\u202e` });
    const text = formatInspect(await inspect(path));
    // No raw control or bidi character anywhere but the line breaks.
    expect(text.split('\n').filter((l) => RAW.test(l))).toEqual([]);
    expect(text).toContain('a\\x1b]0;owned\\x07');
    expect(text).toContain('b\\x1b[2J');
    expect(text).toContain('c\\x7f\\x9b31m');
    for (const [i, c] of HOSTILE.bidi.entries()) expect(text).toContain(`d${i}\\u{${c.codePointAt(0)!.toString(16).toUpperCase()}}x`);
    expect(text).toContain('k\\x1b]0;owned\\x07: v\\x1b[2J\\u{202E}');
  });

  it('a legal file with 130,000 tensors inspects (no spreading of its names into one call)', async () => {
    const path = join(root, 'many.safetensors');
    const n = 130_000;
    // Written here byte by byte from the format's definition (8-byte LE header length, JSON
    // header, data): one write, where 130,000 writes through the writer would take a while.
    const header: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) header[`t.${i}`] = { dtype: 'F32', shape: [1], data_offsets: [4 * i, 4 * i + 4] };
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(4 * n)]));
    const r = await inspect(path);
    expect(r.totals.tensors).toBe(n);
    const lines = formatInspect(r).trimEnd().split('\n');
    expect(lines.filter((l) => /^ {2}t\.\d+ /u.test(l))).toHaveLength(n);
  }, 120_000);
});

describe('CSV cells (OWASP CSV injection)', () => {
  const row = (o: Partial<DecompositionRow>): DecompositionRow => ({
    run: 'r', method: 'ft', checkpoint: 'c', step: 1, module: 'q_proj', layer: 0, tensor: 't', rows: 2, cols: 2,
    delta_m: 0.5, delta_d: 0.25, zero_rows: 0, shrunk_rows: 0, rel_delta_fro: 0.1, mean_m0: 1, mean_mt: 1, flag: '', ...o,
  });
  it('text starting with = + - @ tab or CR gets a leading quote; negative numbers stay numbers', () => {
    const rows = [
      row({ run: '=HYPERLINK("http://x","y")' }), row({ run: '+1+1' }), row({ run: '-2+3' }), row({ run: '@SUM(A1)' }),
      row({ run: '\t=1' }), row({ run: '\r=1' }), row({ run: 'plain', delta_m: -0.5, delta_d: -1e-9, layer: -1 }),
    ];
    const lines = toCsv(rows, DECOMPOSITION_COLUMNS).split('\n');
    expect(lines[1]!.startsWith(`"'=HYPERLINK(""http://x"",""y"")",`)).toBe(true);
    expect(lines[2]!.startsWith("'+1+1,")).toBe(true);
    expect(lines[3]!.startsWith("'-2+3,")).toBe(true);
    expect(lines[4]!.startsWith("'@SUM(A1),")).toBe(true);
    expect(lines[5]!.startsWith("'\t=1,")).toBe(true);
    expect(lines[6]!.startsWith(`"'\r=1"`)).toBe(true);
    const plain = lines[7]!.split(',');
    const col = (n: string) => plain[DECOMPOSITION_COLUMNS.findIndex(([c]) => c === n)];
    expect(col('delta_m')).toBe('-0.5');
    expect(col('delta_d')).toBe('-1e-9');
    expect(col('layer')).toBe('-1');
  });
});

describe('HTML report', () => {
  it('bidi and control characters from tensor names are shown escaped, in text and in figure data', () => {
    for (const c of [...HOSTILE.bidi, '\u001b', '\u009b']) {
      const name = `layers.0.${c}q_proj`;
      const html = escapeHtml(name);
      expect(html).not.toContain(c);
      expect(html).toContain(`layers.0.\\`);
      const json = jsonForScript({ labels: [name] });
      expect(JSON.parse(json).labels[0]).not.toContain(c);
      expect(JSON.parse(json).labels[0]).toMatch(/^layers\.0\.\\(x|u\{)/u);
    }
    expect(escapeHtml('<b>&"\'')).toBe('&lt;b&gt;&amp;&quot;&#39;');
  });
});
