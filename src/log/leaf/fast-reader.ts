/**
 * The reader of ./fast-shapes.ts (issue 20): one leaf at a time, synchronously, over module
 * state (the bytes, the position, the PAN flag, the mode), with the per-field rules (text with a
 * one-entry cache of the last accepted value, byte strings, bounded integers, nested maps
 * memoised by bytes) and the map reader that expects a table of fields in canonical order.
 *
 * Contract: the byte rules of ./cbor.ts `decodeCbor` (shortest arguments, definite lengths,
 * ASCII text only); a rule that does not hold gives {@link FAIL} and the leaf goes to the generic
 * path. Only ./fast-shapes.ts uses it: {@link beginLeaf}, then the shape readers, then
 * {@link endLeaf}; {@link setBuilding} chooses between building values and reading facts.
 */

const PAN_MIN_DIGITS = 13;

/** A field that does not hold (the whole leaf goes to the generic path). */
export const FAIL: unique symbol = Symbol('fail');

// Reader state: one leaf at a time (synchronous). Read elsewhere through the live bindings; set here only.
export let b: Uint8Array = new Uint8Array(0);
export let at = 0;
export let pan = false;
/**
 * True while building the leaf ({@link decodeHotLeaf}); false while reading only the facts the
 * auditor's ledgers use ({@link readHotFacts}): every rule is checked the same way, but an id, a
 * metadata string or a byte string is not copied out (its offset is kept instead).
 */
export let building = true;
const EMPTY = new Uint8Array(0);
/** Buffer's latin1 decoder, applied to the plain byte views the auditor reads (no Buffer per leaf). */
const latin1Slice = (Buffer.prototype as unknown as { latin1Slice(this: Uint8Array, s: number, e: number): string }).latin1Slice;

/** Starts reading `leafBytes` (position 0, PAN flag clear). */
export function beginLeaf(leafBytes: Uint8Array): void {
  b = leafBytes;
  at = 0;
  pan = false;
}
/** Stops reading (the bytes are not held). */
export function endLeaf(): void {
  b = EMPTY;
}
/** See {@link building}. */
export function setBuilding(v: boolean): void {
  building = v;
}

/** The big-endian unsigned 32-bit integer at `p` of the leaf (in bounds). */
const readU32 = (p: number): number => b[p]! * 0x1000000 + ((b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!);

/** Initial byte of major type `major` with its argument in shortest form; −1 otherwise. */
export function head(major: number): number {
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
    const n = (b[at]! << 8) | b[at + 1]!;
    at += 2;
    return n < 0x100 ? -1 : n;
  }
  if (ai === 26) {
    if (at + 4 > b.length) return -1;
    const n = readU32(at);
    at += 4;
    return n < 0x10000 ? -1 : n;
  }
  if (ai === 27) {
    if (at + 8 > b.length) return -1;
    const hi = readU32(at);
    const lo = readU32(at + 4);
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
export function text(min: number, max: number, cache?: TextCache, need = true): string | typeof FAIL {
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
  const s = latin1Slice.call(b, at, at + n);
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
export const bytes = (min: number, max: number): Rule => rule(Kind.Bytes, min, max);
export const uintIn = (min: number, max: number): Rule => rule(Kind.Uint, min, max);
export const str = (min: number, max: number): Rule => rule(Kind.Text, min, max, { cache: newCache() });
/** A text field that differs in every leaf (an id): not cached. */
export const unique = (min: number, max: number): Rule => rule(Kind.Text, min, max);
export const oneOf = (...values: string[]): Rule => rule(Kind.Text, 1, 16, { cache: newCache(), values });
export const lit = (value: string): Rule => oneOf(value);
export const pattern = (re: RegExp, max: number): Rule => rule(Kind.Pattern, 0, max, { cache: newCache(), re });
export const nested = (read: () => unknown): Rule => rule(Kind.Nested, 0, 0, { nested: read });
/**
 * A nested map read by a pure function of its bytes that yields no facts (a payment method, an
 * actor, metadata): while reading facts, when the next bytes equal the last value this field
 * accepted, that value is accepted again without reading it (a CBOR item is self-delimiting: the
 * same bytes are the same item, with the same verdict and the same PAN flag).
 */
export const memoized = (read: () => unknown): Rule => rule(Kind.Nested, 0, 0, { nested: read, memo: { bytes: undefined, pan: false } });

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
export function fields(spec: Record<string, [optional: boolean, rule: Rule]>): Field[] {
  return Object.entries(spec)
    .map(([name, [optional, rule]]) => ({ name, enc: Buffer.concat([Buffer.from([0x60 + name.length]), Buffer.from(name, 'latin1')]), optional, rule }))
    .sort((x, y) => Buffer.compare(x.enc, y.enc));
}

/**
 * A map of exactly these fields (the optional ones may be absent), in canonical order, into
 * `out` by field position; false when it is anything else.
 */
export function readMap(fs: readonly Field[], out: unknown[], ends?: number[]): boolean {
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
export const slots = (fs: readonly Field[]) => Object.fromEntries(fs.map((f, i) => [f.name, i])) as Record<string, number>;
