/**
 * TensorBoard event files and metrics.jsonl, read back with a decoder written here from the
 * format: TFRecord framing (tensorflow/core/lib/io/record_reader.cc) with CRC32C computed bit by
 * bit (RFC 3720 §B.4, reflected polynomial 0x82F63B78), and the Event protobuf parsed by hand
 * (protobuf encoding guide: varints, wire types 0, 1, 2, 5).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32c, EventFileWriter } from '../../src/train/tfevents.js';
import { hfLogEntry, MetricsLog } from '../../src/train/metrics-log.js';
import { train } from '../../src/train/train.js';

/** CRC32C one bit at a time: no table, nothing shared with the writer. */
function crcBitwise(bytes: Uint8Array): number {
  let c = ~0 >>> 0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0x82f63b78 & -(c & 1));
    c >>>= 0;
  }
  return ~c >>> 0;
}
const unmask = (m: number): number => { const r = (m - 0xa282ead8) >>> 0; return ((r >>> 17) | (r << 15)) >>> 0; };

function records(file: Uint8Array): Uint8Array[] {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const out: Uint8Array[] = [];
  let p = 0;
  while (p < file.length) {
    const len = Number(dv.getBigUint64(p, true));
    expect(unmask(dv.getUint32(p + 8, true))).toBe(crcBitwise(file.subarray(p, p + 8)));
    const data = file.subarray(p + 12, p + 12 + len);
    expect(unmask(dv.getUint32(p + 12 + len, true))).toBe(crcBitwise(data));
    out.push(data);
    p += 12 + len + 4;
  }
  expect(p).toBe(file.length);
  return out;
}

type Field = { no: number; wire: number; value: bigint | Uint8Array | DataView };
function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let p = 0;
  const varint = (): bigint => {
    let v = 0n, shift = 0n;
    for (;;) { const b = buf[p++]!; v |= BigInt(b & 0x7f) << shift; shift += 7n; if (b < 0x80) return v; }
  };
  while (p < buf.length) {
    const key = Number(varint());
    const no = key >> 3, wire = key & 7;
    if (wire === 0) out.push({ no, wire, value: varint() });
    else if (wire === 1) { out.push({ no, wire, value: new DataView(buf.buffer, buf.byteOffset + p, 8) }); p += 8; }
    else if (wire === 5) { out.push({ no, wire, value: new DataView(buf.buffer, buf.byteOffset + p, 4) }); p += 4; }
    else if (wire === 2) { const n = Number(varint()); out.push({ no, wire, value: buf.subarray(p, p + n) }); p += n; }
    else throw new Error(`wire type ${wire}`);
  }
  return out;
}

interface Event { wallTime: number; step: number; fileVersion?: string; scalars: Record<string, number> }
function decodeEvent(buf: Uint8Array): Event {
  const e: Event = { wallTime: NaN, step: 0, scalars: {} };
  for (const f of fields(buf)) {
    if (f.no === 1 && f.wire === 1) e.wallTime = (f.value as DataView).getFloat64(0, true);
    else if (f.no === 2 && f.wire === 0) e.step = Number(f.value);
    else if (f.no === 3 && f.wire === 2) e.fileVersion = new TextDecoder().decode(f.value as Uint8Array);
    else if (f.no === 5 && f.wire === 2) {
      for (const v of fields(f.value as Uint8Array).filter((x) => x.no === 1)) {
        const inner = fields(v.value as Uint8Array);
        const tag = new TextDecoder().decode(inner.find((x) => x.no === 1)!.value as Uint8Array);
        e.scalars[tag] = (inner.find((x) => x.no === 2 && x.wire === 5)!.value as DataView).getFloat32(0, true);
      }
    } else throw new Error(`unexpected Event field ${f.no}`);
  }
  return e;
}

const readEvents = (path: string): Event[] => records(new Uint8Array(readFileSync(path))).map(decodeEvent);

let dir: string | undefined;
afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); dir = undefined; });

describe('TensorBoard event files', () => {
  it('CRC32C: the check value of RFC 3720 / iSCSI ("123456789" → 0xE3069283), and the bitwise loop agrees', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32c(check)).toBe(0xe3069283);
    expect(crcBitwise(check)).toBe(0xe3069283);
    const bytes = Uint8Array.from({ length: 1000 }, (_, i) => (i * 37 + 11) & 0xff);
    expect(crc32c(bytes)).toBe(crcBitwise(bytes));
  });

  it('records round-trip: file_version first, then scalars with their step and wall time', async () => {
    dir = mkdtempSync(join(tmpdir(), 'dorascope-tfevents-'));
    const w = await EventFileWriter.open(dir, 1, 1_700_000_000_500);
    await w.scalars(1, { 'train/loss': 2.5, 'train/learning_rate': 0.001 }, 1_700_000_001_000);
    await w.scalars(300, { 'eval/loss': 1.25 }, 1_700_000_002_250);
    await w.close();
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^events\.out\.tfevents\.1700000000\./u);
    const ev = readEvents(join(dir, file!));
    expect(ev).toEqual([
      { wallTime: 1_700_000_000.5, step: 1, fileVersion: 'brain.Event:2', scalars: {} },
      { wallTime: 1_700_000_001, step: 1, scalars: { 'train/loss': 2.5, 'train/learning_rate': Math.fround(0.001) } },
      { wallTime: 1_700_000_002.25, step: 300, scalars: { 'eval/loss': 1.25 } },
    ]);
  });

  it('train --report-to tensorboard: every log_history entry as scalars under transformers\' tag names', async () => {
    dir = mkdtempSync(join(tmpdir(), 'dorascope-tfevents-'));
    const small = { hidden_size: 16, intermediate_size: 32, num_attention_heads: 2, num_hidden_layers: 1, max_position_embeddings: 16 };
    const res = await train({ method: 'lora', steps: 4, seed: 3, config: small, batchSize: 2, contextLength: 8, evalEvery: 2, out: dir, reportTo: ['tensorboard'] });
    const files = readdirSync(join(dir, 'tensorboard'));
    expect(files).toHaveLength(1);
    const ev = readEvents(join(dir, 'tensorboard', files[0]!));
    expect(ev[0]!.fileVersion).toBe('brain.Event:2');
    const expected = res.logHistory.map((h) => ({
      step: h.step,
      scalars: Object.fromEntries(Object.entries(h).filter(([k]) => k !== 'step')
        .map(([k, v]) => [k.startsWith('eval_') ? `eval/${k.slice(5)}` : `train/${k}`, Math.fround(v as number)])),
    }));
    expect(ev.slice(1).map((e) => ({ step: e.step, scalars: e.scalars }))).toEqual(expected);
    expect(Object.keys(ev[2]!.scalars).sort()).toEqual(['eval/accuracy', 'eval/loss', 'train/learning_rate', 'train/loss']);
  });
});

describe('metrics.jsonl', () => {
  it('a resumed run keeps the lines up to its checkpoint and drops the steps no checkpoint kept', async () => {
    dir = mkdtempSync(join(tmpdir(), 'dorascope-metrics-'));
    const first = await MetricsLog.open(dir, { startStep: 0 });
    for (let s = 1; s <= 5; s++) await first.log({ step: s, loss: 10 - s, learning_rate: 0.1 }, 1000 * s);
    await first.close();
    const again = await MetricsLog.open(dir, { startStep: 3 });
    await again.log({ step: 4, loss: 0.5, learning_rate: 0.1, eval_loss: 0.75 }, 9000);
    await again.close();
    const lines = readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    expect(lines).toEqual([
      { step: 1, loss: 9, learning_rate: 0.1, wall_time: 1 }, { step: 2, loss: 8, learning_rate: 0.1, wall_time: 2 },
      { step: 3, loss: 7, learning_rate: 0.1, wall_time: 3 }, { step: 4, loss: 0.5, learning_rate: 0.1, eval_loss: 0.75, wall_time: 9 },
    ]);
    // A fresh run (startStep 0) starts the file over.
    await (await MetricsLog.open(dir, { startStep: 0 })).close();
    expect(readFileSync(join(dir, 'metrics.jsonl'), 'utf8')).toBe('');
  });

  it('log_history entries of earlier runs (learningRate, evalLoss) get Hugging Face\'s names on resume', () => {
    expect(hfLogEntry({ step: 2, loss: 1, learningRate: 0.5, learning_rate: 0.5, evalLoss: 0.25, eval_loss: 0.25, eval_accuracy: 0.5 }))
      .toEqual({ step: 2, loss: 1, learning_rate: 0.5, eval_loss: 0.25, eval_accuracy: 0.5 });
    expect(hfLogEntry({ step: 1, loss: 1, learningRate: 0.5 })).toEqual({ step: 1, loss: 1, learning_rate: 0.5 });
  });
});
