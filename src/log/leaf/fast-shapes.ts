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
import { MAX_LEAF_BYTES, type Leaf } from './codec.js';
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
/**
 * True while building the leaf ({@link decodeHotLeaf}); false while reading only the facts the
 * auditor's ledgers use ({@link readHotFacts}): every rule is checked the same way, but an id, a
 * metadata string or a byte string is not copied out (its offset is kept instead).
 */
let building = true;
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
function text(min: number, max: number, cache?: TextCache, need = true): string | typeof FAIL {
  cacheHit = false;
  const n = head(3);
  // Loops read locals (`buf`, `p`): much cheaper per byte than the module's reader state.
  const buf = b;
  const p = at;
  if (n < min || n > max || n > buf.length - p) return FAIL;
  if (cache !== undefined && cache.bytes !== undefined && cache.bytes.length === n) {
    const cb = cache.bytes;
    let k = 0;
    while (k < n && buf[p + k] === cb[k]) k++;
    if (k === n) {
      at += n;
      if (cache.pan) pan = true;
      cacheHit = true;
      return cache.text;
    }
  }
  let digits = 0;
  for (let k = p; k < p + n; k++) {
    const c = buf[k]!;
    if (c >= 0x80) return FAIL;
    if (c >= 0x30 && c <= 0x39) digits++;
  }
  if (digits >= PAN_MIN_DIGITS) pan = true;
  if (!need) {
    textStart = at;
    at += n;
    return '';
  }
  const s = (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(at, at + n);
  at += n;
  return s;
}
let cacheHit = false;
/** Where the bytes of the last string read without being sliced (`need` false) start. */
let textStart = 0;
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
  /** Nested, while reading facts: the bytes of the last value accepted (see {@link memoized}). */
  memo?: Memo;
}
interface Memo {
  bytes: Buffer | undefined;
  pan: boolean;
}
/** Every rule has the same fields in the same order (one object shape: readValue's reads stay monomorphic). */
const rule = (kind: Kind, min: number, max: number, more: Partial<Rule> = {}): Rule => ({ kind, min, max, cache: more.cache, re: more.re, values: more.values, nested: more.nested, memo: more.memo });
const bytes = (min: number, max: number): Rule => rule(Kind.Bytes, min, max);
const uintIn = (min: number, max: number): Rule => rule(Kind.Uint, min, max);
const str = (min: number, max: number): Rule => rule(Kind.Text, min, max, { cache: newCache() });
/** A text field that differs in every leaf (an id): not cached. */
const unique = (min: number, max: number): Rule => rule(Kind.Text, min, max);
const oneOf = (...values: string[]): Rule => rule(Kind.Text, 1, 16, { cache: newCache(), values });
const lit = (value: string): Rule => oneOf(value);
const pattern = (re: RegExp, max: number): Rule => rule(Kind.Pattern, 0, max, { cache: newCache(), re });
const nested = (read: () => unknown): Rule => rule(Kind.Nested, 0, 0, { nested: read });
/**
 * A nested map read by a pure function of its bytes that yields no facts (a payment method, an
 * actor, metadata): while reading facts, when the next bytes equal the last value this field
 * accepted, that value is accepted again without reading it (a CBOR item is self-delimiting: the
 * same bytes are the same item, with the same verdict and the same PAN flag).
 */
const memoized = (read: () => unknown): Rule => rule(Kind.Nested, 0, 0, { nested: read, memo: { bytes: undefined, pan: false } });

/** {@link memoized}'s read. */
function readMemoized(read: () => unknown, m: Memo): unknown {
  const mb = m.bytes;
  const buf = b;
  const p = at;
  if (mb !== undefined && mb.length <= buf.length - p) {
    const n = mb.length;
    let k = 0;
    while (k < n && buf[p + k] === mb[k]) k++;
    if (k === n) {
      at += n;
      if (m.pan) pan = true;
      return true;
    }
  }
  const start = at;
  const panBefore = pan;
  pan = false;
  const v = read();
  const itemPan = pan;
  pan = panBefore || itemPan;
  if (v !== FAIL) {
    // Remembered in place when the length is the same (no allocation when values vary from leaf to leaf).
    const n = at - start;
    if (mb === undefined || mb.length !== n) m.bytes = Buffer.from(b.subarray(start, at));
    else for (let k = 0; k < n; k++) mb[k] = buf[start + k]!;
    m.pan = itemPan;
  }
  return v;
}

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
      // While reading facts: the offset of the bytes (a view costs about as much as the rest of the field).
      const view = building ? b.subarray(at, at + n) : at;
      at += n;
      return view;
    }
    case Kind.Text:
    case Kind.Pattern: {
      // Only a value the field accepted is cached: a cache hit is a pass.
      const c = r.cache;
      // An uncached field (an id) is not sliced while reading facts: its offset is the value.
      if (c === undefined && !building) return text(r.min, r.max, undefined, false) === FAIL ? FAIL : textStart;
      const s = text(r.min, r.max, c);
      if (s === FAIL || cacheHit) return s;
      if (r.values !== undefined ? !r.values.includes(s) : r.re !== undefined && !r.re.test(s)) return FAIL;
      if (c !== undefined) remember(c, s);
      return s;
    }
    default:
      return building || r.memo === undefined ? r.nested!() : readMemoized(r.nested!, r.memo);
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
function readMap(fs: readonly Field[], out: unknown[], ends?: number[]): boolean {
  const n = head(5);
  if (n < 0) return false;
  let count = 0;
  const buf = b;
  for (let i = 0; i < fs.length; i++) {
    const f = fs[i]!;
    const enc = f.enc;
    const len = enc.length; // ≥ 2: a head and a character
    const p = at;
    let hit = false;
    if (count < n && len <= buf.length - p && buf[p] === enc[0] && buf[p + 1] === enc[1]) {
      let k = 2;
      while (k < len && buf[p + k] === enc[k]) k++;
      hit = k === len;
    }
    if (hit) {
      at += len;
      const v = readValue(f.rule);
      if (v === FAIL) return false;
      out[i] = v;
      if (ends !== undefined) ends[i] = at;
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

/** `__proto__` as a CBOR text string (head and bytes). */
const PROTO_KEY = Buffer.from([0x60 + 9, ...Buffer.from('__proto__', 'latin1')]);

/** `md`: text keys (1..64, strictly ascending encodings, not `__proto__`) to text values (0..1024). */
function metadata(): unknown {
  const n = head(5);
  if (n < 0) return FAIL;
  const m: Record<string, string> = {};
  let prevStart = -1;
  let prevEnd = -1;
  for (let i = 0; i < n; i++) {
    const keyStart = at;
    const k = text(1, 64, undefined, building);
    if (k === FAIL || (building ? k === '__proto__' : at - keyStart === PROTO_KEY.length && b.compare(PROTO_KEY, 0, PROTO_KEY.length, keyStart, at) === 0)) return FAIL;
    if (prevStart >= 0 && b.compare(b, prevStart, prevEnd, keyStart, at) <= 0) return FAIL;
    prevStart = keyStart;
    prevEnd = at;
    const v = text(0, 1024, undefined, building);
    if (v === FAIL) return FAIL;
    if (building) m[k] = v;
  }
  return building ? m : true;
}

const CARD = fields({ type: [false, lit('card')], brand: [false, str(1, 32)], last4: [false, pattern(LAST4_DIGITS, 4)], expiryMonth: [false, uintIn(1, 12)], expiryYear: [false, uintIn(1000, 9999)] });
const C = slots(CARD);
const cardOut: unknown[] = [];
function card(): unknown {
  if (!readMap(CARD, cardOut)) return FAIL;
  if (!building) return true;
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
  if (!building) {
    facts.kms = kms as string | undefined;
    facts.ep = ep as string | undefined;
    facts.epkAt = epk === undefined ? -1 : (epk as number);
    return true;
  }
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
const cse = (): unknown => (readMap(CSE, cseOut) ? (building ? { kid: cseOut[0] } : true) : FAIL);

const TX = fields({
  v: [false, uintIn(LEAF_FORMAT_V3, LEAF_FORMAT_V3)],
  type: [false, lit('transaction')],
  time: [false, uintIn(0, Number.MAX_SAFE_INTEGER)],
  id: [false, unique(1, ID_MAX)],
  p: [false, str(1, ID_MAX)],
  amt: [false, uintIn(1, Number.MAX_SAFE_INTEGER)],
  cur: [false, pattern(CURRENCY, 3)],
  md: [true, memoized(metadata)],
  cse: [true, memoized(cse)],
  pm: [false, memoized(card)],
  env: [false, nested(envelopeV3)],
});
const T = slots(TX);
const txOut: unknown[] = [];
const txEnds: number[] = [];
function transactionV3(): unknown {
  if (!readMap(TX, txOut, txEnds)) return undefined;
  if (!building) {
    facts.type = 'transaction';
    facts.time = txOut[T.time!] as number;
    facts.idStart = txOut[T.id!] as number;
    facts.idEnd = txEnds[T.id!]!;
    return true;
  }
  const leaf: Record<string, unknown> = { v: LEAF_FORMAT_V3, type: 'transaction', time: txOut[T.time!], id: txOut[T.id!], p: txOut[T.p!], amt: txOut[T.amt!], cur: txOut[T.cur!], pm: txOut[T.pm!], env: txOut[T.env!] };
  if (txOut[T.md!] !== undefined) leaf.md = txOut[T.md!];
  if (txOut[T.cse!] !== undefined) leaf.cse = txOut[T.cse!];
  return leaf;
}

// ---------------------------------------------------------------- access, leaf formats v2 and v3

const PRINCIPAL = fields({ role: [false, str(1, 32)], name: [false, str(1, ID_MAX)], cert: [false, bytes(DIGEST_BYTES, DIGEST_BYTES)] });
const P = slots(PRINCIPAL);
const principalOut: unknown[] = [];
const principal = (): unknown => (!readMap(PRINCIPAL, principalOut) ? FAIL : !building ? true : { role: principalOut[P.role!], name: principalOut[P.name!], cert: principalOut[P.cert!] });

const ACCESS = fields({
  v: [false, uintIn(LEAF_FORMAT_V2, LEAF_FORMAT_V3)],
  type: [false, lit('access')],
  time: [false, uintIn(0, Number.MAX_SAFE_INTEGER)],
  transactionId: [false, unique(1, ID_MAX)],
  action: [false, oneOf('release', 'read')],
  actor: [false, memoized(principal)],
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
  if (!building) {
    facts.type = 'access';
    return true;
  }
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

/** One pass over a hot-shape leaf: the leaf (or, while reading facts, `true`); `undefined` when it is not one, or not valid. */
function readHot(leafBytes: Buffer): unknown {
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
  return leaf === undefined || at !== leafBytes.length ? undefined : leaf;
}

/** The leaf when `bytes` is one of the two hot shapes and valid; `undefined`: use the generic fast path. */
export function decodeHotLeaf(leafBytes: Buffer): { leaf: Leaf; textMayHoldPan: boolean } | undefined {
  const leaf = readHot(leafBytes);
  return leaf === undefined ? undefined : { leaf: leaf as Leaf, textMayHoldPan: pan };
}

/**
 * What the auditor's ledgers read of a hot-shape leaf ({@link readHotFacts}): its type and, for a
 * transaction, `time`, the id (bytes `[idStart, idEnd)` of `bytes`, ASCII), `env.ep` or
 * `env.kms`, and `env.epk` (32 bytes of `bytes` at `epkAt`; −1 when sealed to no epoch).
 */
export interface HotFacts {
  type: 'transaction' | 'access';
  textMayHoldPan: boolean;
  bytes: Buffer;
  time: number;
  idStart: number;
  idEnd: number;
  ep: string | undefined;
  kms: string | undefined;
  epkAt: number;
}
const facts: HotFacts = { type: 'access', textMayHoldPan: false, bytes: EMPTY, time: 0, idStart: 0, idEnd: 0, ep: undefined, kms: undefined, epkAt: -1 };

/**
 * The auditor's hot path (issue 20): {@link decodeHotLeaf}'s checks, every one of them, without
 * building the leaf — only its {@link HotFacts}. Returns a leaf's facts exactly when
 * `decodeHotLeaf` (after `decodeLeafFast`'s size check) returns a leaf, with the same
 * `textMayHoldPan`; the object is reused by the next call (read it before). `bytes` MUST NOT be
 * written while the facts are in use.
 */
export function readHotFacts(leafBytes: Buffer): HotFacts | undefined {
  if (leafBytes.length > MAX_LEAF_BYTES) return undefined;
  building = false;
  facts.ep = facts.kms = undefined;
  facts.epkAt = -1;
  let ok: unknown;
  try {
    ok = readHot(leafBytes);
  } finally {
    building = true;
  }
  if (ok === undefined) return undefined;
  facts.bytes = leafBytes;
  facts.textMayHoldPan = pan;
  return facts;
}
