/**
 * The first step of ./fast-decode.ts (issue 20): the two leaf shapes that make up nearly every
 * log — a leaf format v3 card transaction, and an access entry — read in one sequential pass that
 * expects their fields in canonical order (a table per map, sorted at load by the CBOR rule) and
 * builds the leaf from object literals: no generic CBOR values, no key search, no second pass.
 *
 * Contract: that of {@link decodeLeafFast}: {@link decodeHotLeaf} returns a leaf only for bytes
 * `decodeLeaf` accepts, deep-equal to what it returns; anything else — another kind or payment
 * method, a non-ASCII text string, an unexpected or misplaced field, any refusal — gives
 * `undefined`, and the generic fast path (then the reference) decides. The field rules are those
 * of ./fast-decode.ts (`transaction`, `paymentMethod`, `envelope`, `metadata`, `access`), checked
 * by test/leaf-fast-decode.test.ts against `decodeLeaf` like the rest of the fast path.
 */
import { EPOCH_ID_PATTERN } from '../../validation/identifiers.js';
import type { Leaf } from './codec.js';
import { LEAF_FORMAT_V2, LEAF_FORMAT_V3, MAX_LEAF_CIPHERTEXT_BYTES } from './transaction.js';

const PAN_MIN_DIGITS = 13;
const DIGEST_BYTES = 32;
const ID_MAX = 128;
const KMS_KEY_ID_MAX = 2048;
const CURRENCY = /^[A-Z]{3}$/;
const LAST4_DIGITS = /^\d{0,4}$/;

/** A field that does not hold (the whole leaf goes to the generic path). */
const FAIL: unique symbol = Symbol('fail');

// Reader state: one leaf at a time (synchronous).
let b: Buffer = Buffer.alloc(0);
let at = 0;
let pan = false;
const EMPTY = Buffer.alloc(0);

/** Initial byte of major type `major` with its argument in shortest form; −1 otherwise. */
function head(major: number): number {
  if (at >= b.length) return -1;
  const ib = b[at]!;
  if (ib >> 5 !== major) return -1;
  const ai = ib & 0x1f;
  at++;
  if (ai < 24) return ai;
  if (ai === 24) {
    if (at + 1 > b.length) return -1;
    const n = b[at++]!;
    return n < 24 ? -1 : n;
  }
  if (ai === 25) {
    if (at + 2 > b.length) return -1;
    const n = b.readUInt16BE(at);
    at += 2;
    return n < 0x100 ? -1 : n;
  }
  if (ai === 26) {
    if (at + 4 > b.length) return -1;
    const n = b.readUInt32BE(at);
    at += 4;
    return n < 0x10000 ? -1 : n;
  }
  if (ai === 27) {
    if (at + 8 > b.length) return -1;
    const hi = b.readUInt32BE(at);
    const lo = b.readUInt32BE(at + 4);
    at += 8;
    return hi === 0 || hi > 0x1fffff ? -1 : hi * 0x100000000 + lo;
  }
  return -1;
}

/**
 * An ASCII text string of `min`..`max` characters (the PAN flag as ./fast-decode.ts sets it).
 * With a cache: when its bytes equal the last string this field accepted, that string is
 * returned without decoding again (consecutive leaves repeat most values: processor, currency,
 * epoch) and `cacheHit` is set.
 */
function text(min: number, max: number, cache?: TextCache): string | typeof FAIL {
  cacheHit = false;
  const n = head(3);
  if (n < min || n > max || n > b.length - at) return FAIL;
  if (cache !== undefined && cache.bytes !== undefined && cache.bytes.length === n) {
    const cb = cache.bytes;
    let k = 0;
    while (k < n && b[at + k] === cb[k]) k++;
    if (k === n) {
      at += n;
      if (cache.pan) pan = true;
      cacheHit = true;
      return cache.text;
    }
  }
  let digits = 0;
  for (let k = at; k < at + n; k++) {
    const c = b[k]!;
    if (c >= 0x80) return FAIL;
    if (c >= 0x30 && c <= 0x39) digits++;
  }
  if (digits >= PAN_MIN_DIGITS) pan = true;
  const s = (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(at, at + n);
  at += n;
  return s;
}
let cacheHit = false;
/** The last string a field accepted, with a copy of its bytes (`undefined`: nothing yet). */
interface TextCache {
  bytes: Buffer | undefined;
  text: string;
  pan: boolean;
}
const newCache = (): TextCache => ({ bytes: undefined, text: '', pan: false });
/** Remembers `s`, just read and accepted, as the field's last value. */
function remember(c: TextCache, s: string): void {
  c.bytes = Buffer.from(s, 'latin1');
  c.text = s;
  c.pan = false;
  let digits = 0;
  for (let k = 0; k < s.length; k++) if (s.charCodeAt(k) >= 0x30 && s.charCodeAt(k) <= 0x39) digits++;
  c.pan = digits >= PAN_MIN_DIGITS;
}

const enum Kind {
  Uint,
  Text,
  Bytes,
  Pattern,
  Nested,
}
interface Rule {
  kind: Kind;
  min: number;
  max: number;
  /** Text and Pattern: the last value accepted. */
  cache?: TextCache;
  /** Pattern: the test of a value not in the cache. */
  re?: RegExp;
  /** Text: the values allowed (a literal or an enumeration). */
  values?: readonly string[];
  nested?: () => unknown;
}
const bytes = (min: number, max: number): Rule => ({ kind: Kind.Bytes, min, max });
const uintIn = (min: number, max: number): Rule => ({ kind: Kind.Uint, min, max });
const str = (min: number, max: number): Rule => ({ kind: Kind.Text, min, max, cache: newCache() });
/** A text field that differs in every leaf (an id): not cached. */
const unique = (min: number, max: number): Rule => ({ kind: Kind.Text, min, max });
const oneOf = (...values: string[]): Rule => ({ kind: Kind.Text, min: 1, max: 16, cache: newCache(), values });
const lit = (value: string): Rule => oneOf(value);
const pattern = (re: RegExp, max: number): Rule => ({ kind: Kind.Pattern, min: 0, max, cache: newCache(), re });
const nested = (read: () => unknown): Rule => ({ kind: Kind.Nested, min: 0, max: 0, nested: read });

/** Reads one field value by its rule; FAIL when it does not hold. */
function readValue(r: Rule): unknown {
  switch (r.kind) {
    case Kind.Uint: {
      const n = head(0);
      return n < r.min || n > r.max ? FAIL : n;
    }
    case Kind.Bytes: {
      const n = head(2);
      if (n < r.min || n > r.max || n > b.length - at) return FAIL;
      const view = b.subarray(at, at + n);
      at += n;
      return view;
    }
    case Kind.Text:
    case Kind.Pattern: {
      // Only a value the field accepted is cached: a cache hit is a pass.
      const c = r.cache;
      const s = text(r.min, r.max, c);
      if (s === FAIL || cacheHit) return s;
      if (r.values !== undefined ? !r.values.includes(s) : r.re !== undefined && !r.re.test(s)) return FAIL;
      if (c !== undefined) remember(c, s);
      return s;
    }
    default:
      return r.nested!();
  }
}

interface Field {
  name: string;
  /** The key's CBOR encoding. */
  enc: Buffer;
  optional: boolean;
  rule: Rule;
}
/** Fields in canonical order: keys sorted bytewise by their encodings (RFC 8949 §4.2.1). */
function fields(spec: Record<string, [optional: boolean, rule: Rule]>): Field[] {
  return Object.entries(spec)
    .map(([name, [optional, rule]]) => ({ name, enc: Buffer.concat([Buffer.from([0x60 + name.length]), Buffer.from(name, 'latin1')]), optional, rule }))
    .sort((x, y) => Buffer.compare(x.enc, y.enc));
}

/**
 * A map of exactly these fields (the optional ones may be absent), in canonical order, into
 * `out` by field position; false when it is anything else.
 */
function readMap(fs: readonly Field[], out: unknown[]): boolean {
  const n = head(5);
  if (n < 0) return false;
  let count = 0;
  for (let i = 0; i < fs.length; i++) {
    const f = fs[i]!;
    const enc = f.enc;
    let hit = count < n && enc.length <= b.length - at;
    for (let k = 0; hit && k < enc.length; k++) hit = b[at + k] === enc[k];
    if (hit) {
      at += enc.length;
      const v = readValue(f.rule);
      if (v === FAIL) return false;
      out[i] = v;
      count++;
    } else {
      if (!f.optional) return false;
      out[i] = undefined;
    }
  }
  return count === n;
}
const slots = (fs: readonly Field[]) => Object.fromEntries(fs.map((f, i) => [f.name, i])) as Record<string, number>;

// ---------------------------------------------------------------- transaction, leaf format v3

/** `md`: text keys (1..64, strictly ascending encodings, not `__proto__`) to text values (0..1024). */
function metadata(): unknown {
  const n = head(5);
  if (n < 0) return FAIL;
  const m: Record<string, string> = {};
  let prevStart = -1;
  let prevEnd = -1;
  for (let i = 0; i < n; i++) {
    const keyStart = at;
    const k = text(1, 64);
    if (k === FAIL || k === '__proto__') return FAIL;
    if (prevStart >= 0 && Buffer.compare(b.subarray(prevStart, prevEnd), b.subarray(keyStart, at)) >= 0) return FAIL;
    prevStart = keyStart;
    prevEnd = at;
    const v = text(0, 1024);
    if (v === FAIL) return FAIL;
    m[k] = v;
  }
  return m;
}

const CARD = fields({ type: [false, lit('card')], brand: [false, str(1, 32)], last4: [false, pattern(LAST4_DIGITS, 4)], expiryMonth: [false, uintIn(1, 12)], expiryYear: [false, uintIn(1000, 9999)] });
const C = slots(CARD);
const cardOut: unknown[] = [];
function card(): unknown {
  if (!readMap(CARD, cardOut)) return FAIL;
  return { type: 'card', brand: cardOut[C.brand!], last4: cardOut[C.last4!], expiryMonth: cardOut[C.expiryMonth!], expiryYear: cardOut[C.expiryYear!] };
}

const ENV = fields({
  v: [false, uintIn(1, 255)],
  kms: [true, str(1, KMS_KEY_ID_MAX)],
  ep: [true, pattern(EPOCH_ID_PATTERN, ID_MAX * 2)],
  salt: [true, bytes(1, 64)],
  iv: [false, bytes(1, 32)],
  ct: [false, bytes(0, MAX_LEAF_CIPHERTEXT_BYTES)],
  tag: [false, bytes(1, 32)],
  kc: [false, bytes(DIGEST_BYTES, DIGEST_BYTES)],
  wk: [false, bytes(DIGEST_BYTES, DIGEST_BYTES)],
  epk: [true, bytes(DIGEST_BYTES, DIGEST_BYTES)],
});
const E = slots(ENV);
const envOut: unknown[] = [];
function envelopeV3(): unknown {
  if (!readMap(ENV, envOut)) return FAIL;
  const kms = envOut[E.kms!];
  const ep = envOut[E.ep!];
  const epk = envOut[E.epk!];
  const salt = envOut[E.salt!];
  if ((kms === undefined) === (ep === undefined) || (ep === undefined) !== (epk === undefined)) return FAIL;
  const env: Record<string, unknown> = { v: envOut[E.v!], iv: envOut[E.iv!], ct: envOut[E.ct!], tag: envOut[E.tag!], kc: envOut[E.kc!], wk: envOut[E.wk!] };
  if (kms !== undefined) env.kms = kms;
  else {
    env.ep = ep;
    env.epk = epk;
  }
  if (salt !== undefined) env.salt = salt;
  return env;
}

const CSE = fields({ kid: [false, str(1, 256)] });
const cseOut: unknown[] = [];
const cse = (): unknown => (readMap(CSE, cseOut) ? { kid: cseOut[0] } : FAIL);

const TX = fields({
  v: [false, uintIn(LEAF_FORMAT_V3, LEAF_FORMAT_V3)],
  type: [false, lit('transaction')],
  time: [false, uintIn(0, Number.MAX_SAFE_INTEGER)],
  id: [false, unique(1, ID_MAX)],
  p: [false, str(1, ID_MAX)],
  amt: [false, uintIn(1, Number.MAX_SAFE_INTEGER)],
  cur: [false, pattern(CURRENCY, 3)],
  md: [true, nested(metadata)],
  cse: [true, nested(cse)],
  pm: [false, nested(card)],
  env: [false, nested(envelopeV3)],
});
const T = slots(TX);
const txOut: unknown[] = [];
function transactionV3(): unknown {
  if (!readMap(TX, txOut)) return undefined;
  const leaf: Record<string, unknown> = { v: LEAF_FORMAT_V3, type: 'transaction', time: txOut[T.time!], id: txOut[T.id!], p: txOut[T.p!], amt: txOut[T.amt!], cur: txOut[T.cur!], pm: txOut[T.pm!], env: txOut[T.env!] };
  if (txOut[T.md!] !== undefined) leaf.md = txOut[T.md!];
  if (txOut[T.cse!] !== undefined) leaf.cse = txOut[T.cse!];
  return leaf;
}

// ---------------------------------------------------------------- access, leaf formats v2 and v3

const PRINCIPAL = fields({ role: [false, str(1, 32)], name: [false, str(1, ID_MAX)], cert: [false, bytes(DIGEST_BYTES, DIGEST_BYTES)] });
const P = slots(PRINCIPAL);
const principalOut: unknown[] = [];
const principal = (): unknown => (readMap(PRINCIPAL, principalOut) ? { role: principalOut[P.role!], name: principalOut[P.name!], cert: principalOut[P.cert!] } : FAIL);

const ACCESS = fields({
  v: [false, uintIn(LEAF_FORMAT_V2, LEAF_FORMAT_V3)],
  type: [false, lit('access')],
  time: [false, uintIn(0, Number.MAX_SAFE_INTEGER)],
  transactionId: [false, unique(1, ID_MAX)],
  action: [false, oneOf('release', 'read')],
  actor: [false, nested(principal)],
  purpose: [true, str(0, 32)],
  reference: [true, str(0, 256)],
  outcome: [false, oneOf('granted', 'denied')],
  reason: [true, str(0, 64)],
  source: [false, str(0, 64)],
});
const A = slots(ACCESS);
const accessOut: unknown[] = [];
function access(): unknown {
  if (!readMap(ACCESS, accessOut)) return undefined;
  const o = accessOut;
  const leaf: Record<string, unknown> = { v: o[A.v!], type: 'access', time: o[A.time!], transactionId: o[A.transactionId!], action: o[A.action!], actor: o[A.actor!], outcome: o[A.outcome!], source: o[A.source!] };
  if (o[A.purpose!] !== undefined) leaf.purpose = o[A.purpose!];
  if (o[A.reference!] !== undefined) leaf.reference = o[A.reference!];
  if (o[A.reason!] !== undefined) leaf.reason = o[A.reason!];
  return leaf;
}

/** The first key of each shape in canonical order: `p` (transaction), `v` (access). */
const KEY_P = 0x70;
const KEY_V = 0x76;
const ONE_CHAR_KEY = 0x61;

/** The leaf when `bytes` is one of the two hot shapes and valid; `undefined`: use the generic fast path. */
export function decodeHotLeaf(leafBytes: Buffer): { leaf: Leaf; textMayHoldPan: boolean } | undefined {
  b = leafBytes;
  at = 0;
  pan = false;
  if (leafBytes.length < 3 || leafBytes[1] !== ONE_CHAR_KEY) return undefined;
  const first = leafBytes[2];
  if (first !== KEY_P && first !== KEY_V) return undefined;
  let leaf: unknown;
  try {
    leaf = first === KEY_P ? transactionV3() : access();
  } finally {
    b = EMPTY;
  }
  if (leaf === undefined || at !== leafBytes.length) return undefined;
  return { leaf: leaf as Leaf, textMayHoldPan: pan };
}
