/**
 * The auditor's hot path through `decodeLeaf` (issue 20): CBOR leaves (formats v2 and v3) checked
 * in one pass over their bytes by hand-written rules instead of the generic decoder, the zod
 * schemas and a re-encoding — same result, at hashing speed.
 *
 * Contract: {@link decodeLeafFast} MUST return a leaf only for bytes `decodeLeaf` accepts, and
 * then one deep-equal to what `decodeLeaf` returns (same fields, same values; key order may
 * differ). For ANY other input — every refusal, and anything it was not written for (v1 JSON, a
 * text string that starts with a byte-order mark, `__proto__`) — it returns `undefined` and the
 * caller MUST fall back to `decodeLeaf`, which then refuses with its own message. So the fast
 * path never decides a refusal: it only has to be right about what it accepts, and
 * test/leaf-fast-decode.test.ts checks that against `decodeLeaf` over fixtures and mutated leaves.
 *
 * Why no re-encoding: the byte rules here are those of ./cbor.ts `decodeCbor` (shortest
 * arguments, definite lengths, strictly ascending text keys, no trailing bytes, safe integers,
 * valid UTF-8). Such a value has exactly one encoding, and `encodeCbor` writes it — except when
 * a text string begins with U+FEFF, which the UTF-8 decoder drops: those leaves go to the
 * reference path, whose re-encoding refuses them.
 *
 * Byte strings of the returned leaf are views into `bytes` (decodeLeaf returns copies): callers
 * MUST NOT write to `bytes` while they hold the leaf.
 *
 * `textMayHoldPan` is false only when no text string of the leaf (keys included) has a byte ≥ 0x80
 * or 13 ASCII digits: then no string can pass `mayHoldPan` (src/validation/identifiers.ts), and the
 * verifier's PAN walk can be skipped with the same verdict.
 */
import { EPOCH_ID_PATTERN } from '../../validation/identifiers.js';
import { ADMIN_ACTIONS, ADMIN_OUTCOMES } from './admin-event.js';
import { FORWARD_OUTCOMES } from './forward-result.js';
import { MAX_LEAF_BYTES, type Leaf } from './codec.js';
import { KEY_EVENT_KINDS, MAX_SHRED_KMS_KEY_IDS, SYSTEM_ACTOR, V3_KEY_EVENT_KINDS, cvcDestroyedWellFormed } from './key-event.js';
import { MAX_CBOR_DEPTH } from './cbor.js';
import { decodeHotLeaf } from './fast-shapes.js';
import { LEAF_FORMAT_V2, LEAF_FORMAT_V3, MAX_LEAF_CIPHERTEXT_BYTES } from './transaction.js';

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const JSON_OPEN_BRACE = 0x7b;
const PAN_MIN_DIGITS = 13;
const DIGEST_BYTES = 32;

/** Thrown inside this module only: "not for the fast path" (the caller falls back). */
class NotFast {}
const NOT_FAST = new NotFast();
function notFast(): never {
  throw NOT_FAST;
}

type Value = number | string | Buffer | Value[] | { [k: string]: Value };

/** Strict CBOR reader of the leaf subset (the rules of ./cbor.ts), building plain values. */
class FastReader {
  at = 0;
  mayHoldPan = false;
  constructor(readonly b: Buffer) {}

  private arg(ai: number): number {
    const b = this.b;
    if (ai < 24) return ai;
    if (ai === 24) {
      if (this.at + 1 > b.length) notFast();
      const n = b[this.at++]!;
      if (n < 24) notFast();
      return n;
    }
    if (ai === 25) {
      if (this.at + 2 > b.length) notFast();
      const n = b.readUInt16BE(this.at);
      this.at += 2;
      if (n < 0x100) notFast();
      return n;
    }
    if (ai === 26) {
      if (this.at + 4 > b.length) notFast();
      const n = b.readUInt32BE(this.at);
      this.at += 4;
      if (n < 0x10000) notFast();
      return n;
    }
    if (ai === 27) {
      if (this.at + 8 > b.length) notFast();
      const hi = b.readUInt32BE(this.at);
      const lo = b.readUInt32BE(this.at + 4);
      this.at += 8;
      // Shortest form: ≥ 2^32; JavaScript safe integer: ≤ 2^53 − 1 (hi < 2^21).
      if (hi === 0 || hi > 0x1fffff) notFast();
      return hi * 0x100000000 + lo;
    }
    return notFast(); // indefinite lengths, reserved values
  }

  private text(n: number): string {
    const b = this.b;
    const start = this.at;
    const end = start + n;
    let digits = 0;
    for (let k = start; k < end; k++) {
      const c = b[k]!;
      if (c >= 0x80) {
        // Non-ASCII: a byte-order mark at the start would be dropped by the decoder (not canonical).
        if (n >= 3 && b[start] === 0xef && b[start + 1] === 0xbb && b[start + 2] === 0xbf) notFast();
        this.mayHoldPan = true;
        this.at = end;
        try {
          return UTF8.decode(b.subarray(start, end));
        } catch {
          return notFast();
        }
      }
      if (c >= 0x30 && c <= 0x39) digits++;
    }
    if (digits >= PAN_MIN_DIGITS) this.mayHoldPan = true;
    this.at = end;
    return latin1(b, start, end);
  }

  /** A map key: the field names of the leaf kinds are not decoded again for every leaf. */
  key(n: number): string {
    const b = this.b;
    const known = n < KNOWN_KEYS.length ? KNOWN_KEYS[n] : undefined;
    if (known !== undefined && n <= b.length - this.at) {
      const at = this.at;
      for (const k of known) {
        const kb = k.bytes;
        let j = 0;
        while (j < n && kb[j] === b[at + j]) j++;
        if (j === n) {
          this.at = at + n;
          return k.text;
        }
      }
    }
    return this.text(n);
  }

  item(depth: number): Value {
    const b = this.b;
    if (depth > MAX_CBOR_DEPTH || this.at >= b.length) notFast();
    const ib = b[this.at++]!;
    const major = ib >> 5;
    const n = this.arg(ib & 0x1f);
    switch (major) {
      case 0:
        return n;
      case 2: {
        if (n > b.length - this.at) notFast();
        // A view into the leaf bytes, not a copy (decodeCbor copies): same content, and the
        // auditor never keeps a decoded leaf or writes to the bytes it verified.
        const view = b.subarray(this.at, this.at + n);
        this.at += n;
        return view;
      }
      case 3:
        if (n > b.length - this.at) notFast();
        return this.text(n);
      case 4: {
        if (n > b.length - this.at) notFast();
        const a: Value[] = [];
        for (let i = 0; i < n; i++) a.push(this.item(depth + 1));
        return a;
      }
      case 5: {
        if (n > b.length - this.at) notFast();
        const m: { [k: string]: Value } = {};
        let prevStart = -1;
        let prevEnd = -1;
        for (let i = 0; i < n; i++) {
          const keyStart = this.at;
          if (keyStart >= b.length || b[keyStart]! >> 5 !== 3 || depth + 1 > MAX_CBOR_DEPTH) notFast();
          const kn = this.arg(b[this.at++]! & 0x1f);
          if (kn > b.length - this.at) notFast();
          const key = this.key(kn);
          // §4.2.1: keys strictly ascending in the bytewise order of their encodings.
          if (prevStart >= 0 && compareBytes(b, prevStart, prevEnd, keyStart, this.at) >= 0) notFast();
          prevStart = keyStart;
          prevEnd = this.at;
          if (key === '__proto__') notFast();
          m[key] = this.item(depth + 1);
        }
        return m;
      }
      default:
        return notFast();
    }
  }
}

/** ASCII bytes as a string (Buffer's own latin1 slice, without `toString`'s argument handling). */
const latin1: (b: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as { latin1Slice?: unknown }).latin1Slice === 'function'
    ? (b, start, end) => (b as unknown as { latin1Slice(s: number, e: number): string }).latin1Slice(start, end)
    : (b, start, end) => b.toString('latin1', start, end);

/** Every field name of leaf formats v2 and v3 (ASCII), by length: decoded keys are looked up here. */
const FIELD_NAMES = [
  'v', 'type', 'time', 'id', 'p', 'amt', 'cur', 'md', 'cse', 'kid', 'pm', 'fp', 'env', 'brand', 'bin', 'last4', 'expiryMonth', 'expiryYear', 'routingNumber',
  'accountType', 'country', 'bic', 'kms', 'ep', 'salt', 'iv', 'ct', 'tag', 'kc', 'wk', 'epk', 'transactionId', 'action', 'actor', 'role', 'name', 'cert',
  'purpose', 'reference', 'outcome', 'reason', 'source', 'processor', 'serial', 'note', 'event', 'epoch', 'periodStart', 'periodEnd', 'kmsKeyId',
  'previousKmsKeyId', 'wrappedKeySha256', 'previousWrappedKeySha256', 'keyName', 'policy', 'counts', 'publicKeySha256', 'kmsKeyIds', 'retention', 'asOf',
];
const KNOWN_KEYS: { bytes: Buffer; text: string }[][] = [];
for (const text of FIELD_NAMES) (KNOWN_KEYS[text.length] ??= []).push({ bytes: Buffer.from(text, 'latin1'), text });
for (let n = 0; n < KNOWN_KEYS.length; n++) KNOWN_KEYS[n] ??= [];

function compareBytes(b: Buffer, s1: number, e1: number, s2: number, e2: number): number {
  const n = Math.min(e1 - s1, e2 - s2);
  for (let k = 0; k < n; k++) {
    const d = b[s1 + k]! - b[s2 + k]!;
    if (d !== 0) return d;
  }
  return e1 - s1 - (e2 - s2);
}

// ------------------------------------------------------------------ field rules (mirror the schemas)

type Obj = { [k: string]: Value };
const isMap = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x) && !Buffer.isBuffer(x);
const str = (x: unknown, min: number, max: number): boolean => typeof x === 'string' && x.length >= min && x.length <= max;
const optStr = (x: unknown, min: number, max: number): boolean => x === undefined || str(x, min, max);
const bytes = (x: unknown, min: number, max: number): boolean => Buffer.isBuffer(x) && x.length >= min && x.length <= max;
const optBytes = (x: unknown, min: number, max: number): boolean => x === undefined || bytes(x, min, max);
const uint = (x: unknown): boolean => typeof x === 'number'; // CBOR major type 0: a safe non-negative integer
/** The last string each pattern accepted: consecutive leaves repeat them (currency, epoch, last four), and a pattern test is pure. */
const lastMatch = new Map<RegExp, string>();
function match(x: unknown, re: RegExp): boolean {
  if (typeof x !== 'string') return false;
  if (lastMatch.get(re) === x) return true;
  if (!re.test(x)) return false;
  lastMatch.set(re, x);
  return true;
}
const oneOf = (x: unknown, set: ReadonlySet<string>): boolean => typeof x === 'string' && set.has(x);
/** Every key of `o` is in `allowed` (z.strictObject). */
function onlyKeys(o: Obj, allowed: ReadonlySet<string>): boolean {
  for (const k in o) if (!allowed.has(k)) return false;
  return true;
}

const ID_MAX = 128;
const KMS_KEY_ID_MAX = 2048;
const CURRENCY = /^[A-Z]{3}$/;
const LAST4_DIGITS = /^\d{0,4}$/;
const BIN = /^\d{6}(?:\d{2})?$/;
const ROUTING_NUMBER = /^\d{9}$/;
const COUNTRY = /^[A-Z]{2}$/;
const IBAN_LAST4 = /^[A-Z0-9]{0,4}$/;
const BIC = /^[A-Z0-9]{8}(?:[A-Z0-9]{3})?$/;
const SERIAL = /^[0-9a-f]{1,64}$/;
const RETENTION = /^P[0-9YMWDTHS.]{1,32}$/;
const COUNT_NAME = /^[a-zA-Z][a-zA-Z0-9_]{0,31}$/;

const keys = (...k: string[]): ReadonlySet<string> => new Set(k);
const PRINCIPAL_KEYS = keys('role', 'name', 'cert');
const principal = (x: unknown): boolean => isMap(x) && onlyKeys(x, PRINCIPAL_KEYS) && str(x.role, 1, 32) && str(x.name, 1, ID_MAX) && bytes(x.cert, DIGEST_BYTES, DIGEST_BYTES);

// transaction (./transaction.ts)
const CARD_V2_KEYS = keys('type', 'brand', 'bin', 'last4', 'expiryMonth', 'expiryYear');
const CARD_V3_KEYS = keys('type', 'brand', 'last4', 'expiryMonth', 'expiryYear');
const BANK_KEYS = keys('type', 'routingNumber', 'last4', 'accountType');
const IBAN_KEYS = keys('type', 'country', 'last4', 'bic');
const ACCOUNT_TYPES = keys('checking', 'savings');
function paymentMethod(pm: unknown, v3: boolean): boolean {
  if (!isMap(pm)) return false;
  switch (pm.type) {
    case 'card': {
      const e = pm.expiryMonth;
      const y = pm.expiryYear;
      return onlyKeys(pm, v3 ? CARD_V3_KEYS : CARD_V2_KEYS) && str(pm.brand, 1, 32) && (v3 || match(pm.bin, BIN)) && match(pm.last4, LAST4_DIGITS) &&
        typeof e === 'number' && e >= 1 && e <= 12 && typeof y === 'number' && y >= 1000 && y <= 9999;
    }
    case 'us_bank_account':
      return onlyKeys(pm, BANK_KEYS) && match(pm.routingNumber, ROUTING_NUMBER) && match(pm.last4, LAST4_DIGITS) && oneOf(pm.accountType, ACCOUNT_TYPES);
    case 'iban':
      return onlyKeys(pm, IBAN_KEYS) && match(pm.country, COUNTRY) && match(pm.last4, IBAN_LAST4) && (pm.bic === undefined || match(pm.bic, BIC));
    default:
      return false;
  }
}
const ENV_V2_KEYS = keys('v', 'kms', 'ep', 'salt', 'iv', 'ct', 'tag', 'kc', 'wk');
const ENV_V3_KEYS = keys('v', 'kms', 'ep', 'salt', 'iv', 'ct', 'tag', 'kc', 'wk', 'epk');
function envelope(env: unknown, v3: boolean): boolean {
  if (!isMap(env) || !onlyKeys(env, v3 ? ENV_V3_KEYS : ENV_V2_KEYS)) return false;
  const ver = env.v;
  return typeof ver === 'number' && ver >= 1 && ver <= 255 && optStr(env.kms, 1, KMS_KEY_ID_MAX) && (env.ep === undefined || match(env.ep, EPOCH_ID_PATTERN)) &&
    optBytes(env.salt, 1, 64) && bytes(env.iv, 1, 32) && bytes(env.ct, 0, MAX_LEAF_CIPHERTEXT_BYTES) && bytes(env.tag, 1, 32) &&
    bytes(env.kc, DIGEST_BYTES, DIGEST_BYTES) && bytes(env.wk, DIGEST_BYTES, DIGEST_BYTES) &&
    (env.kms === undefined) !== (env.ep === undefined) &&
    (!v3 || (optBytes(env.epk, DIGEST_BYTES, DIGEST_BYTES) && (env.ep === undefined) === (env.epk === undefined)));
}
function metadata(md: unknown): boolean {
  if (!isMap(md)) return false;
  for (const k in md) if (k.length < 1 || k.length > 64 || !str(md[k], 0, 1024)) return false;
  return true;
}
const CSE_KEYS = keys('kid');
const TX_V2_KEYS = keys('v', 'type', 'time', 'id', 'p', 'amt', 'cur', 'md', 'cse', 'pm', 'fp', 'env');
const TX_V3_KEYS = keys('v', 'type', 'time', 'id', 'p', 'amt', 'cur', 'md', 'cse', 'pm', 'env');
function transaction(l: Obj, v3: boolean): boolean {
  const amt = l.amt;
  return onlyKeys(l, v3 ? TX_V3_KEYS : TX_V2_KEYS) && uint(l.time) && str(l.id, 1, ID_MAX) && str(l.p, 1, ID_MAX) && typeof amt === 'number' && amt > 0 &&
    match(l.cur, CURRENCY) && (l.md === undefined || metadata(l.md)) && (l.cse === undefined || (isMap(l.cse) && onlyKeys(l.cse, CSE_KEYS) && str(l.cse.kid, 1, 256))) &&
    (v3 || str(l.fp, 1, ID_MAX)) && paymentMethod(l.pm, v3) && envelope(l.env, v3);
}

// access (./access.ts), forward_result (./forward-result.ts), admin_event (./admin-event.ts)
const ACCESS_KEYS = keys('v', 'type', 'time', 'transactionId', 'action', 'actor', 'purpose', 'reference', 'outcome', 'reason', 'source', 'fwd');
const ACCESS_ACTIONS = keys('release', 'read', 'forward');
const ACCESS_OUTCOMES = keys('granted', 'denied');
const FORWARD_TARGET_KEYS = keys('dest', 'method', 'path', 'tpl', 'key');
const forwardTarget = (f: unknown): boolean =>
  isMap(f) && onlyKeys(f, FORWARD_TARGET_KEYS) && str(f.dest, 1, 64) && str(f.method, 1, 10) && str(f.path, 0, 512) && bytes(f.tpl, DIGEST_BYTES, DIGEST_BYTES) &&
  bytes(f.key, DIGEST_BYTES, DIGEST_BYTES);
const access = (l: Obj, v: number): boolean =>
  onlyKeys(l, ACCESS_KEYS) && uint(l.time) && str(l.transactionId, 1, ID_MAX) && oneOf(l.action, ACCESS_ACTIONS) && principal(l.actor) && optStr(l.purpose, 0, 32) &&
  optStr(l.reference, 0, 256) && oneOf(l.outcome, ACCESS_OUTCOMES) && optStr(l.reason, 0, 64) && str(l.source, 0, 64) && (l.fwd === undefined || forwardTarget(l.fwd)) &&
  // `fwd` only on forward entries (always on granted ones), and forwards only in leaf format v3.
  (l.fwd === undefined || l.action === 'forward') && (l.action !== 'forward' || (v === LEAF_FORMAT_V3 && (l.outcome === 'denied' || l.fwd !== undefined)));
const FORWARD_RESULT_KEYS = keys('v', 'type', 'time', 'transactionId', 'access', 'outcome', 'status', 'ms', 'masked', 'error');
const FORWARD_RESULT_OUTCOMES: ReadonlySet<string> = new Set(FORWARD_OUTCOMES);
const forwardResult = (l: Obj, v: number): boolean =>
  v === LEAF_FORMAT_V3 && onlyKeys(l, FORWARD_RESULT_KEYS) && uint(l.time) && str(l.transactionId, 1, ID_MAX) && uint(l.access) && oneOf(l.outcome, FORWARD_RESULT_OUTCOMES) &&
  (l.status === undefined || (uint(l.status) && (l.status as number) >= 100 && (l.status as number) <= 599)) && uint(l.ms) && uint(l.masked) && optStr(l.error, 0, 64);
const ADMIN_KEYS = keys('v', 'type', 'time', 'action', 'actor', 'source', 'outcome', 'reason', 'processor', 'cert', 'serial', 'note');
const ADMIN_ACTION_SET: ReadonlySet<string> = new Set(ADMIN_ACTIONS);
const ADMIN_OUTCOME_SET: ReadonlySet<string> = new Set(ADMIN_OUTCOMES);
const adminEvent = (l: Obj): boolean =>
  onlyKeys(l, ADMIN_KEYS) && uint(l.time) && oneOf(l.action, ADMIN_ACTION_SET) && principal(l.actor) && str(l.source, 0, 64) && oneOf(l.outcome, ADMIN_OUTCOME_SET) &&
  optStr(l.reason, 0, 64) && optStr(l.processor, 1, ID_MAX) && optBytes(l.cert, DIGEST_BYTES, DIGEST_BYTES) && (l.serial === undefined || match(l.serial, SERIAL)) && optStr(l.note, 0, 200);

// key_event (./key-event.ts)
const KEY_EVENT_KEYS = keys(
  'v', 'type', 'time', 'event', 'actor', 'epoch', 'processor', 'periodStart', 'periodEnd', 'kmsKeyId', 'previousKmsKeyId', 'wrappedKeySha256',
  'previousWrappedKeySha256', 'transactionId', 'keyName', 'reason', 'policy', 'counts', 'publicKeySha256', 'kmsKeyIds',
);
const KEY_EVENT_SET: ReadonlySet<string> = new Set(KEY_EVENT_KINDS);
const POLICY_KEYS = keys('retention', 'asOf', 'epoch');
const POLICY_EPOCHS = keys('month', 'day', 'hour');
function policy(p: unknown): boolean {
  return isMap(p) && onlyKeys(p, POLICY_KEYS) && (p.retention === undefined || match(p.retention, RETENTION)) && (p.asOf === undefined || uint(p.asOf)) &&
    (p.epoch === undefined || oneOf(p.epoch, POLICY_EPOCHS));
}
function counts(c: unknown): boolean {
  if (!isMap(c)) return false;
  for (const k in c) if (!COUNT_NAME.test(k) || !uint(c[k])) return false;
  return true;
}
function kmsKeyIds(a: unknown): boolean {
  return Array.isArray(a) && a.length >= 1 && a.length <= MAX_SHRED_KMS_KEY_IDS && a.every((x) => str(x, 1, KMS_KEY_ID_MAX));
}
function keyEvent(l: Obj, v: number): boolean {
  return onlyKeys(l, KEY_EVENT_KEYS) && uint(l.time) && oneOf(l.event, KEY_EVENT_SET) && (l.actor === SYSTEM_ACTOR || principal(l.actor)) &&
    (l.epoch === undefined || match(l.epoch, EPOCH_ID_PATTERN)) && optStr(l.processor, 1, ID_MAX) && (l.periodStart === undefined || uint(l.periodStart)) &&
    (l.periodEnd === undefined || uint(l.periodEnd)) && optStr(l.kmsKeyId, 1, KMS_KEY_ID_MAX) && optStr(l.previousKmsKeyId, 1, KMS_KEY_ID_MAX) &&
    optBytes(l.wrappedKeySha256, DIGEST_BYTES, DIGEST_BYTES) && optBytes(l.previousWrappedKeySha256, DIGEST_BYTES, DIGEST_BYTES) && optStr(l.transactionId, 1, ID_MAX) &&
    optStr(l.keyName, 1, 256) && optStr(l.reason, 0, 256) && (l.policy === undefined || policy(l.policy)) && (l.counts === undefined || counts(l.counts)) &&
    optBytes(l.publicKeySha256, DIGEST_BYTES, DIGEST_BYTES) && (l.kmsKeyIds === undefined || kmsKeyIds(l.kmsKeyIds)) &&
    (v !== LEAF_FORMAT_V2 || (l.publicKeySha256 === undefined && l.kmsKeyIds === undefined && !V3_KEY_EVENT_KINDS.has(l.event as never))) &&
    cvcDestroyedWellFormed(l as Parameters<typeof cvcDestroyedWellFormed>[0]);
}

function leafOk(l: Obj, v: number): boolean {
  switch (l.type) {
    case 'transaction':
      return transaction(l, v === LEAF_FORMAT_V3);
    case 'access':
      return access(l, v);
    case 'forward_result':
      return forwardResult(l, v);
    case 'admin_event':
      return adminEvent(l);
    case 'key_event':
      return keyEvent(l, v);
    default:
      return false;
  }
}

/**
 * The leaf `decodeLeaf(bytes)` would return, when the fast path can vouch for it (see the module
 * comment); `undefined` otherwise — then call `decodeLeaf`.
 */
export function decodeLeafFast(bytes: Uint8Array): { leaf: Leaf; textMayHoldPan: boolean } | undefined {
  if (bytes.length === 0 || bytes.length > MAX_LEAF_BYTES || bytes[0] === JSON_OPEN_BRACE) return undefined;
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hot = decodeHotLeaf(buf);
  if (hot !== undefined) return hot;
  const r = new FastReader(buf);
  let value: Value;
  try {
    value = r.item(0);
  } catch (e) {
    if (e === NOT_FAST) return undefined;
    throw e;
  }
  if (r.at !== r.b.length || !isMap(value)) return undefined;
  const v = value.v;
  if ((v !== LEAF_FORMAT_V2 && v !== LEAF_FORMAT_V3) || !leafOk(value, v)) return undefined;
  return { leaf: value as unknown as Leaf, textMayHoldPan: r.mayHoldPan };
}
