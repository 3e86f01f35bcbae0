/**
 * TensorBoard event files (`events.out.tfevents.*`), written without TensorFlow.
 *
 * Record framing (tensorflow/core/lib/io/record_writer.cc): uint64 length (little-endian), the
 * masked CRC32C of those 8 bytes, the data, the masked CRC32C of the data; mask(c) =
 * ((c >>> 15) | (c << 17)) + 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h). The data is an
 * `Event` protobuf (tensorflow/core/util/event.proto): wall_time = 1 (double), step = 2 (int64),
 * file_version = 3 (string; the first event of a file says "brain.Event:2"), summary = 5; in
 * `Summary` (tensorflow/core/framework/summary.proto) value = 1, and in `Summary.Value` tag = 1,
 * simple_value = 2 (float). That subset is what TensorBoard's scalar dashboard reads.
 */
import { hostname } from 'node:os';
import { mkdir, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { DorascopeError, q } from '../errors.js';

/** CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven. */
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const maskedCrc = (bytes: Uint8Array): number => ((((crc32c(bytes) >>> 15) | (crc32c(bytes) << 17)) >>> 0) + 0xa282ead8) >>> 0;

/** One TFRecord: length, its masked CRC, data, the data's masked CRC. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(data.length), true);
  dv.setUint32(8, maskedCrc(out.subarray(0, 8)), true);
  out.set(data, 12);
  dv.setUint32(12 + data.length, maskedCrc(data), true);
  return out;
}

/** A minimal protobuf encoder: the wire types the Event subset needs. */
class Proto {
  private readonly parts: number[] = [];
  private varint(v: bigint): void {
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) { this.parts.push(Number(x & 0x7fn) | 0x80); x >>= 7n; }
    this.parts.push(Number(x));
  }
  private key(field: number, wire: number): void { this.varint(BigInt((field << 3) | wire)); }
  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8); new DataView(b.buffer).setFloat64(0, v, true); this.parts.push(...b);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4); new DataView(b.buffer).setFloat32(0, v, true); this.parts.push(...b);
    return this;
  }
  int64(field: number, v: number): this { this.key(field, 0); this.varint(BigInt(v)); return this; }
  bytes(field: number, b: Uint8Array): this { this.key(field, 2); this.varint(BigInt(b.length)); this.parts.push(...b); return this; }
  string(field: number, s: string): this { return this.bytes(field, new TextEncoder().encode(s)); }
  done(): Uint8Array { return Uint8Array.from(this.parts); }
}

/** An `Event` with scalar summaries (tag → value). */
export function scalarEvent(wallTime: number, step: number, scalars: Readonly<Record<string, number>>): Uint8Array {
  const summary = new Proto();
  for (const [tag, v] of Object.entries(scalars)) summary.bytes(1, new Proto().string(1, tag).float(2, v).done());
  return new Proto().double(1, wallTime).int64(2, step).bytes(5, summary.done()).done();
}

/** The first `Event` of every file: its format version. */
export function fileVersionEvent(wallTime: number, step: number): Uint8Array {
  return new Proto().double(1, wallTime).int64(2, step).string(3, 'brain.Event:2').done();
}

/**
 * An event file in `dir`, appended to record by record as the run goes (TensorBoard reads a file
 * that is still being written; a torn last record is skipped by its CRC).
 */
export class EventFileWriter {
  private constructor(private readonly fh: FileHandle, readonly path: string) {}

  /** `step`: the first step this file logs (TensorBoard drops steps at or after it from older files of a resumed run). */
  static async open(dir: string, step: number, now = Date.now()): Promise<EventFileWriter> {
    // TensorFlow's name: events.out.tfevents.<seconds>.<host>; pid and a counter keep two writers apart (as PyTorch does).
    const path = join(dir, `events.out.tfevents.${Math.floor(now / 1000)}.${hostname()}.${process.pid}.${next++}`);
    try {
      await mkdir(dir, { recursive: true });
      const w = new EventFileWriter(await open(path, 'wx'), path);
      await w.fh.write(tfRecord(fileVersionEvent(now / 1000, step)));
      return w;
    } catch (e) {
      throw new DorascopeError('E_WRITE', `cannot write ${q(path)}: ${(e as Error).message}`, {}, { cause: e });
    }
  }

  async scalars(step: number, scalars: Readonly<Record<string, number>>, now = Date.now()): Promise<void> {
    await this.fh.write(tfRecord(scalarEvent(now / 1000, step, scalars)));
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

let next = 0;
