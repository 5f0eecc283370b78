/**
 * A large, realistic log synthesised cheaply for the auditor benchmarks: leaf format v3 as the
 * service writes it today (an `epoch_created` key event, then transaction leaves sealed to that
 * epoch, ~30 % access leaves), built ONCE through the real leaf builders and `encodeLeaf`, then
 * copied per entry with the per-entry fields patched in place (fixed-width id, time, envelope
 * bytes). Every patched leaf is still the one canonical encoding of a schema-valid leaf, so the
 * verifier runs exactly as strict as on a real log (the bench checks that its report is ok).
 *
 * Cost: one copy and a few writes per leaf (≈ µs; whole bundles are written in place by
 * {@link syntheticBundleSource}), so 10M entries never go through the service or the database.
 * Deterministic: leaf i depends only on i.
 */
import { createHash } from 'node:crypto';
import { accessLeafV2, encodeLeaf, keyEventLeaf, transactionLeaf } from '../../src/log/leaf.js';

const SYNTH_EPOCH = 'acme/2026-12';
const PROCESSOR = 'acme';
const EPOCH_PUBLIC_KEY_SHA256 = createHash('sha256').update('bench epoch public key').digest();
/** Fixed-width id field of synthetic transactions: `ord_` + 12 base-36 digits (never 13 digits in a row). */
const ID_DIGITS = 12;
const ID_PLACEHOLDER = 'ord_' + 'z'.repeat(ID_DIGITS);
/** A time ≥ 2^32 ms, so the CBOR head of `time` is always 8 bytes and can be patched in place. */
const T0 = Date.UTC(2026, 11, 7, 0, 0, 0);
/** Plaintext sizes of a real card record give ciphertexts of about this many bytes. */
const CIPHERTEXT_BYTES = 180;
/** Share of access leaves among the entries after the first (the rest are transactions). */
export const SYNTH_ACCESS_SHARE = 0.3;
const MARK = (n: number, b: number) => Buffer.alloc(n, b);

interface Template {
  bytes: Buffer;
  /** Offsets of the patched fields (−1: absent). */
  id: number;
  time: number;
  patches: { at: number; len: number }[];
}

function offsetOf(hay: Buffer, needle: Buffer): number {
  const at = hay.indexOf(needle);
  if (at < 0 || hay.indexOf(needle, at + 1) >= 0) throw new Error('synthetic-log: template field not found exactly once');
  return at;
}

/** `time` is encoded as 0x1b ‖ 8 bytes right after the text key "time" (0x64 't' 'i' 'm' 'e'). */
function timeOffset(bytes: Buffer): number {
  return offsetOf(bytes, Buffer.from([0x64, 0x74, 0x69, 0x6d, 0x65, 0x1b])) + 6;
}

function transactionTemplate(): Template {
  const ct = MARK(CIPHERTEXT_BYTES, 0xc1);
  const iv = MARK(12, 0xc2);
  const tag = MARK(16, 0xc3);
  const kc = MARK(32, 0xc4);
  const wk = MARK(32, 0xc5);
  const bytes = encodeLeaf(
    transactionLeaf({
      time: new Date(T0),
      transactionId: ID_PLACEHOLDER,
      processor: PROCESSOR,
      amount: { value: 1299, currency: 'USD' },
      paymentMethod: { type: 'card', brand: 'visa', last4: '1111', expiryMonth: 12, expiryYear: 2029 },
      metadata: { invoice: 'INV-BENCH' },
      envelope: { version: 2, key: { epochId: SYNTH_EPOCH }, iv, ciphertext: ct, tag, keyCommitment: kc, wrappedKeySha256: wk, epochPublicKeySha256: EPOCH_PUBLIC_KEY_SHA256 },
    }),
  );
  return {
    bytes,
    id: offsetOf(bytes, Buffer.from(ID_PLACEHOLDER)) + 4,
    time: timeOffset(bytes),
    patches: [ct, iv, tag, kc, wk].map((m) => ({ at: offsetOf(bytes, m), len: m.length })),
  };
}

function accessTemplate(): Template {
  const bytes = encodeLeaf(
    accessLeafV2({
      time: new Date(T0),
      transactionId: ID_PLACEHOLDER,
      action: 'release',
      principal: { role: 'processor', name: PROCESSOR, certificateFingerprint: `sha256:${'ab'.repeat(32)}` },
      purpose: 'settlement',
      reference: 'case-bench',
      outcome: 'granted',
      sourceAddress: '10.1.2.3',
    }),
  );
  return { bytes, id: offsetOf(bytes, Buffer.from(ID_PLACEHOLDER)) + 4, time: timeOffset(bytes), patches: [] };
}

/** Leaf 0: the epoch the synthetic transactions are sealed to (verify-log's epoch-key check). */
function epochCreatedLeaf(): Buffer {
  return encodeLeaf(
    keyEventLeaf({
      time: new Date(T0 - 1000),
      event: 'epoch_created',
      actor: 'system',
      epochId: SYNTH_EPOCH,
      processor: PROCESSOR,
      periodStart: new Date(Date.UTC(2026, 11, 1)),
      periodEnd: new Date(Date.UTC(2027, 0, 1)),
      kmsKeyId: 'arn:aws:kms:eu-west-1:111122223333:key/1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d',
      wrappedKeySha256: createHash('sha256').update('bench wrapped epoch key').digest(),
      publicKeySha256: EPOCH_PUBLIC_KEY_SHA256,
    }),
  );
}

/** Deterministic filler bytes (xorshift32); envelope fields are copied from it at an offset that depends on the index. */
const POOL_BYTES = 1 << 16;
const POOL = (() => {
  const b = Buffer.alloc(POOL_BYTES + 1024);
  let x = 2463534242;
  for (let k = 0; k < b.length; k++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[k] = x & 0xff;
  }
  return b;
})();
/**
 * The patched fields are written in plain loops rather than through `Buffer.copy`/`write` (a
 * native call each): generation stands in for reading the bundles, and its cost is counted in
 * the verifier's figure, so it is kept small (the bytes are those of the straightforward writes).
 */
function fill(buf: Buffer, at: number, len: number, seed: number): void {
  const from = (Math.imul(seed, 2654435761) >>> 0) % POOL_BYTES;
  if (len >= FILL_LOOP_MAX) buf.copyWithin(at, from, from + len);
  else for (let k = 0; k < len; k++) buf[at + k] = POOL[from + k]!;
}
/**
 * Fields this long or longer are copied natively, with `copyWithin` from a copy of the pool at
 * the start of the same buffer (a slab: no view per field; a loop is cheaper for shorter fields).
 */
const FILL_LOOP_MAX = 16;
/** ASCII codes of the base-36 digits. */
const DIGIT36 = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz', 'latin1');

/** `n.toString(36).padStart(ID_DIGITS, '0')` written at `at` (n < 36^ID_DIGITS). */
function writeId(out: Buffer, at: number, n: number): void {
  let k = ID_DIGITS - 1;
  for (; k >= 0 && n > INT31_MAX; k--) {
    out[at + k] = DIGIT36[n % 36]!;
    n = Math.floor(n / 36);
  }
  // Below 2^31: the same digits in integer arithmetic.
  for (let m = n | 0; k >= 0; k--) {
    const q = (m / 36) | 0;
    out[at + k] = DIGIT36[m - q * 36]!;
    m = q;
  }
}
const INT31_MAX = 0x7fffffff;

/** `n` (< 2^53) as 8 big-endian bytes at `at`, byte by byte (cheaper than two `writeUInt32BE`). */
function writeUint64BE(out: Buffer, at: number, n: number): void {
  let hi = Math.floor(n / 0x100000000);
  let lo = n - hi * 0x100000000;
  for (let k = 7; k >= 4; k--) {
    out[at + k] = lo & 0xff;
    lo = Math.floor(lo / 256);
  }
  for (let k = 3; k >= 0; k--) {
    out[at + k] = hi & 0xff;
    hi >>>= 8;
  }
}

/**
 * Writes leaf i of the synthetic log at `at` in `out` (a slab: a copy of POOL at offset 0, and
 * room for the leaf at `at`); returns its length.
 */
function writeLeaf(out: Buffer, at: number, i: number, tx: Template, access: Template, first: Buffer): number {
  if (i === 0) return first.copy(out, at);
  const isAccess = Math.floor(i * SYNTH_ACCESS_SHARE) > Math.floor((i - 1) * SYNTH_ACCESS_SHARE);
  const t = isAccess ? access : tx;
  out.set(t.bytes, at);
  // An access names the transaction just before it.
  writeId(out, at + t.id, isAccess ? i - 1 : i);
  const time = T0 + i * 7; // < 2^53: the 8-byte big-endian head as two 32-bit halves
  writeUint64BE(out, at + t.time, time);
  for (const p of t.patches) fill(out, at + p.at, p.len, i * 31 + p.len);
  return t.bytes.length;
}

/**
 * Room for generated bytes, carved from slabs that each begin with a copy of POOL (offset 0), so
 * {@link fill} copies within one buffer: one POOL copy per slab, not per leaf or bundle. Returns
 * the slab and where `n` free bytes start in it; {@link SlabWriter.commit} marks the bytes used.
 */
interface SlabWriter {
  reserve(n: number): { slab: Buffer; at: number };
  commit(end: number): void;
}
/** Slab size: a few bundles each (memory stays flat; bundles in flight keep their slab alive). */
const SLAB_BYTES = 1 << 21;
function slabWriter(): SlabWriter {
  const room = { slab: Buffer.alloc(0), at: 0 };
  return {
    reserve(n) {
      if (room.at + n > room.slab.length) {
        room.slab = Buffer.allocUnsafe(Math.max(SLAB_BYTES, POOL.length + n));
        POOL.copy(room.slab, 0);
        room.at = POOL.length;
      }
      return room;
    },
    commit(end) {
      room.at = end;
    },
  };
}

/** A generator of leaf i of the synthetic log (i = 0 is the epoch's creation). */
export function syntheticLeafSource(): (i: number) => Buffer {
  const tx = transactionTemplate();
  const access = accessTemplate();
  const first = epochCreatedLeaf();
  const size = Math.max(tx.bytes.length, access.bytes.length, first.length);
  const slabs = slabWriter();
  return (i: number): Buffer => {
    const { slab, at } = slabs.reserve(size);
    const end = at + writeLeaf(slab, at, i, tx, access, first);
    slabs.commit(end);
    return slab.subarray(at, end);
  };
}

/**
 * A generator of the entry bundle (tlog-tiles §Log entries) holding leaves
 * `[start, start + width)` of the synthetic log, written straight into one buffer: the same
 * bytes as `encodeEntryBundle` of those `syntheticLeafSource` leaves, at a fraction of the cost.
 */
export function syntheticBundleSource(): (start: number, width: number) => Buffer {
  const tx = transactionTemplate();
  const access = accessTemplate();
  const first = epochCreatedLeaf();
  const room = 2 + Math.max(tx.bytes.length, access.bytes.length, first.length);
  const slabs = slabWriter();
  return (start: number, width: number): Buffer => {
    const { slab: out, at: from } = slabs.reserve(width * room);
    let pos = from;
    for (let i = start; i < start + width; i++) {
      const n = writeLeaf(out, pos + 2, i, tx, access, first);
      out[pos] = n >>> 8;
      out[pos + 1] = n & 0xff;
      pos += 2 + n;
    }
    slabs.commit(pos);
    return out.subarray(from, pos);
  };
}
