/**
 * The CBOR subset leaf formats v2 and v3 are written in: RFC 8949 with the Core Deterministic Encoding
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
const ARG_MAX_HEAD_BYTES = 9;
/** The encoder writes into one growing buffer (no per-item allocations); this is its first size. */
const ENCODER_INITIAL_BYTES = 4096;
const ENCODER_KEEP_MAX_BYTES = 64 * 1024;
/** Map keys whose encodings are kept (leaf field names; metadata keys beyond this are encoded each time). */
const KEY_CACHE_MAX = 1024;
const keyCache = new Map<string, EncodedKey>();

class Writer {
  at = 0;
  constructor(public buf: Buffer) {}

  private reserve(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(grown, 0, 0, this.at);
    this.buf = grown;
  }

  head(major: number, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new PaylogError('INTERNAL', 'CBOR argument out of range');
    this.reserve(ARG_MAX_HEAD_BYTES);
    const mt = major << 5;
    const b = this.buf;
    if (n < 24) b[this.at++] = mt | n;
    else if (n < 0x100) {
      b[this.at++] = mt | 24;
      b[this.at++] = n;
    } else if (n < 0x10000) {
      b[this.at++] = mt | 25;
      b.writeUInt16BE(n, this.at);
      this.at += 2;
    } else if (n < 0x100000000) {
      b[this.at++] = mt | 26;
      b.writeUInt32BE(n, this.at);
      this.at += 4;
    } else {
      b[this.at++] = mt | 27;
      b.writeBigUInt64BE(BigInt(n), this.at);
      this.at += 8;
    }
  }

  bytes(v: Uint8Array): void {
    this.reserve(v.length);
    this.buf.set(v, this.at);
    this.at += v.length;
  }

  text(v: string): void {
    const n = Buffer.byteLength(v, 'utf8');
    this.head(MT_TEXT, n);
    this.reserve(n);
    this.at += this.buf.write(v, this.at, n, 'utf8');
  }
}

/** A map key: its whole encoding (head ‖ UTF-8, the unit §4.2.1 sorts by) and whether it is ASCII. */
interface EncodedKey {
  readonly key: string;
  readonly enc: Buffer;
  readonly ascii: boolean;
}

function encodedKey(k: string): EncodedKey {
  const hit = keyCache.get(k);
  if (hit) return hit;
  const utf8Bytes = Buffer.byteLength(k, 'utf8');
  const w = new Writer(Buffer.allocUnsafe(ARG_MAX_HEAD_BYTES + utf8Bytes));
  w.text(k);
  // As many UTF-8 bytes as UTF-16 code units: every character is ASCII.
  const e: EncodedKey = { key: k, enc: w.buf.subarray(0, w.at), ascii: utf8Bytes === k.length };
  if (keyCache.size < KEY_CACHE_MAX) keyCache.set(k, e);
  return e;
}

/**
 * §4.2.1 order: bytewise over the encoded keys. A longer key's encoding sorts after (its head
 * grows with its UTF-8 length); of two as long, two ASCII keys compare like their strings (their
 * UTF-8 bytes are their UTF-16 code units), others by their bytes.
 */
function compareEncodedKeys(a: EncodedKey, b: EncodedKey): number {
  if (a.enc.length !== b.enc.length) return a.enc.length - b.enc.length;
  if (a.ascii && b.ascii) return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
  return Buffer.compare(a.enc, b.enc);
}

function encodeInto(v: CborValue, w: Writer, depth: number): void {
  if (depth > MAX_CBOR_DEPTH) throw new PaylogError('INTERNAL', 'CBOR value nested too deeply');
  if (typeof v === 'number') {
    w.head(MT_UINT, v);
  } else if (typeof v === 'string') {
    w.text(v);
  } else if (v instanceof Uint8Array) {
    w.head(MT_BYTES, v.length);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    w.head(MT_ARRAY, v.length);
    for (const x of v) encodeInto(x, w, depth + 1);
  } else if (v !== null && typeof v === 'object') {
    // Absent optional fields are `undefined` in JS objects: they are not encoded.
    const keys: EncodedKey[] = [];
    for (const k of Object.keys(v)) if (v[k] !== undefined) keys.push(encodedKey(k));
    keys.sort(compareEncodedKeys); // §4.2.1: bytewise order of encoded keys
    w.head(MT_MAP, keys.length);
    for (const e of keys) {
      w.bytes(e.enc);
      encodeInto(v[e.key]!, w, depth + 1);
    }
  } else {
    throw new PaylogError('INTERNAL', 'value not representable in the leaf CBOR subset');
  }
}

/**
 * One writer for every top-level encode: encoding is synchronous and never re-entered, so its
 * buffer is reused (it holds only leaf bytes, which are not secret) and each result is copied
 * out at its exact size.
 */
const scratch = new Writer(Buffer.allocUnsafe(ENCODER_INITIAL_BYTES));

/** Deterministic encoding (RFC 8949 §4.2.1) of a value of the subset. */
export function encodeCbor(v: CborValue): Buffer {
  scratch.at = 0;
  try {
    encodeInto(v, scratch, 0);
    return Buffer.from(scratch.buf.subarray(0, scratch.at));
  } finally {
    // A value far larger than a leaf must not keep its buffer alive.
    if (scratch.buf.length > ENCODER_KEEP_MAX_BYTES) scratch.buf = Buffer.allocUnsafe(ENCODER_INITIAL_BYTES);
  }
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
