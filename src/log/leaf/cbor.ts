/**
 * The CBOR subset leaf format v2 is written in: RFC 8949 with the Core Deterministic Encoding
 * Requirements of §4.2.1, so one value has exactly one encoding and any CBOR library in
 * deterministic mode (e.g. Go fxamacker/cbor CoreDetEncOptions, Python cbor2 canonical=True)
 * reproduces the leaf bytes.
 *
 * Allowed data items (anything else is refused by {@link decodeCbor}):
 *   - major type 0, unsigned integer, 0 .. 2^53−1 (JavaScript safe integers)
 *   - major type 2, byte string (decoded as Buffer)
 *   - major type 3, text string (valid UTF-8)
 *   - major type 4, array
 *   - major type 5, map whose keys are text strings, no duplicates
 * Deterministic rules enforced on decode (§4.2.1): preferred (shortest) argument encoding,
 * definite lengths only, map keys sorted by the bytewise lexicographic order of their
 * encodings (for text keys: shorter first, then bytewise), no trailing bytes.
 * Not allowed: negative integers, floats, tags, simple values (true/false/null/undefined),
 * indefinite lengths. Nesting depth is bounded by {@link MAX_CBOR_DEPTH}.
 */
import { PaylogError } from '../../errors.js';

export type CborValue = number | string | Buffer | CborValue[] | { [key: string]: CborValue };

export const MAX_CBOR_DEPTH = 8;
const UTF8 = new TextDecoder('utf-8', { fatal: true });

const MT_UINT = 0;
const MT_BYTES = 2;
const MT_TEXT = 3;
const MT_ARRAY = 4;
const MT_MAP = 5;

// RFC 8949 §3: initial byte = major type (3 bits) ‖ additional information (5 bits); arguments
// 24/25/26/27 = 1/2/4/8 following bytes, big-endian. §4.2.1: the shortest form is required.
function head(major: number, n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new PaylogError('INTERNAL', 'CBOR argument out of range');
  const mt = major << 5;
  if (n < 24) return Buffer.from([mt | n]);
  if (n < 0x100) return Buffer.from([mt | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.allocUnsafe(3);
    b[0] = mt | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  if (n < 0x100000000) {
    const b = Buffer.allocUnsafe(5);
    b[0] = mt | 26;
    b.writeUInt32BE(n, 1);
    return b;
  }
  const b = Buffer.allocUnsafe(9);
  b[0] = mt | 27;
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
}

function encodeInto(v: CborValue, out: Buffer[], depth: number): void {
  if (depth > MAX_CBOR_DEPTH) throw new PaylogError('INTERNAL', 'CBOR value nested too deeply');
  if (typeof v === 'number') {
    out.push(head(MT_UINT, v));
  } else if (typeof v === 'string') {
    const b = Buffer.from(v, 'utf8');
    out.push(head(MT_TEXT, b.length), b);
  } else if (v instanceof Uint8Array) {
    out.push(head(MT_BYTES, v.length), Buffer.from(v.buffer, v.byteOffset, v.byteLength));
  } else if (Array.isArray(v)) {
    out.push(head(MT_ARRAY, v.length));
    for (const x of v) encodeInto(x, out, depth + 1);
  } else if (v !== null && typeof v === 'object') {
    // Absent optional fields are `undefined` in JS objects: they are not encoded.
    const entries = Object.entries(v).filter(([, x]) => x !== undefined);
    const keyed = entries.map(([k, x]) => {
      const kb = Buffer.from(k, 'utf8');
      return { key: Buffer.concat([head(MT_TEXT, kb.length), kb]), value: x };
    });
    keyed.sort((a, b) => Buffer.compare(a.key, b.key)); // §4.2.1: bytewise order of encoded keys
    out.push(head(MT_MAP, keyed.length));
    for (const e of keyed) {
      out.push(e.key);
      encodeInto(e.value, out, depth + 1);
    }
  } else {
    throw new PaylogError('INTERNAL', 'value not representable in the leaf CBOR subset');
  }
}

/** Deterministic encoding (RFC 8949 §4.2.1) of a value of the subset. */
export function encodeCbor(v: CborValue): Buffer {
  const out: Buffer[] = [];
  encodeInto(v, out, 0);
  return Buffer.concat(out);
}

class Reader {
  at = 0;
  constructor(readonly b: Buffer) {}
  fail(why: string): never {
    throw new PaylogError('INTEGRITY_FAILURE', `leaf is not deterministic CBOR: ${why}`);
  }
  byte(): number {
    if (this.at >= this.b.length) this.fail('truncated');
    return this.b[this.at++]!;
  }
  take(n: number): Buffer {
    if (n > this.b.length - this.at) this.fail('truncated');
    const s = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return s;
  }
  /** Major type and argument, refusing non-shortest arguments and indefinite lengths. */
  head(): { major: number; n: number; start: number } {
    const start = this.at;
    const ib = this.byte();
    const major = ib >> 5;
    const ai = ib & 0x1f;
    let n: number;
    if (ai < 24) n = ai;
    else if (ai === 24) {
      n = this.byte();
      if (n < 24) this.fail('non-shortest argument');
    } else if (ai === 25) {
      n = this.take(2).readUInt16BE(0);
      if (n < 0x100) this.fail('non-shortest argument');
    } else if (ai === 26) {
      n = this.take(4).readUInt32BE(0);
      if (n < 0x10000) this.fail('non-shortest argument');
    } else if (ai === 27) {
      const big = this.take(8).readBigUInt64BE(0);
      if (big < 0x100000000n) this.fail('non-shortest argument');
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) this.fail('integer beyond 2^53-1');
      n = Number(big);
    } else this.fail('indefinite length or reserved additional information');
    return { major, n, start };
  }
}

function decodeItem(r: Reader, depth: number): CborValue {
  if (depth > MAX_CBOR_DEPTH) r.fail('nested too deeply');
  const { major, n } = r.head();
  switch (major) {
    case MT_UINT:
      return n;
    case MT_BYTES:
      return Buffer.from(r.take(n)); // a copy: the leaf buffer is never aliased
    case MT_TEXT:
      try {
        return UTF8.decode(r.take(n));
      } catch {
        return r.fail('text string is not UTF-8');
      }
    case MT_ARRAY: {
      if (n > r.b.length - r.at) r.fail('truncated');
      const a: CborValue[] = [];
      for (let i = 0; i < n; i++) a.push(decodeItem(r, depth + 1));
      return a;
    }
    case MT_MAP: {
      if (n > r.b.length - r.at) r.fail('truncated');
      const m: { [key: string]: CborValue } = Object.create(null);
      let prev: Buffer | undefined;
      for (let i = 0; i < n; i++) {
        const keyStart = r.at;
        const key = decodeItem(r, depth + 1);
        if (typeof key !== 'string') r.fail('map key is not a text string');
        const keyBytes = r.b.subarray(keyStart, r.at);
        if (prev !== undefined && Buffer.compare(prev, keyBytes) >= 0) r.fail('map keys not in deterministic order or duplicated');
        prev = keyBytes;
        m[key] = decodeItem(r, depth + 1);
      }
      return { ...m };
    }
    default:
      return r.fail(`major type ${major} not allowed`);
  }
}

/** Strict decode: exactly one data item of the subset in deterministic encoding, nothing after it. */
export function decodeCbor(bytes: Uint8Array): CborValue {
  const r = new Reader(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  const v = decodeItem(r, 0);
  if (r.at !== r.b.length) r.fail('trailing bytes');
  return v;
}
