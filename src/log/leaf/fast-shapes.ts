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
import { at, b, beginLeaf, building, bytes, endLeaf, FAIL, fields, head, lit, memoized, nested, oneOf, pan, pattern, readMap, setBuilding, slots, str, text, uintIn, unique } from './fast-reader.js';
import { LEAF_FORMAT_V2, LEAF_FORMAT_V3, MAX_LEAF_CIPHERTEXT_BYTES } from './transaction.js';

const DIGEST_BYTES = 32;
const ID_MAX = 128;
const KMS_KEY_ID_MAX = 2048;
const CURRENCY = /^[A-Z]{3}$/;
const LAST4_DIGITS = /^\d{0,4}$/;

// ---------------------------------------------------------------- transaction, leaf format v3

/** Buffer's `compare`, applied to the reader's bytes (a plain byte view while reading facts). */
const compare = Buffer.prototype.compare;

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
    if (k === FAIL || (building ? k === '__proto__' : at - keyStart === PROTO_KEY.length && compare.call(b, PROTO_KEY, 0, PROTO_KEY.length, keyStart, at) === 0)) return FAIL;
    if (prevStart >= 0 && compare.call(b, b, prevStart, prevEnd, keyStart, at) <= 0) return FAIL;
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
function readHot(leafBytes: Uint8Array): unknown {
  beginLeaf(leafBytes);
  if (leafBytes.length < 3 || leafBytes[1] !== ONE_CHAR_KEY) return undefined;
  const first = leafBytes[2];
  if (first !== KEY_P && first !== KEY_V) return undefined;
  let leaf: unknown;
  try {
    leaf = first === KEY_P ? transactionV3() : access();
  } finally {
    endLeaf();
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
  bytes: Uint8Array;
  time: number;
  idStart: number;
  idEnd: number;
  ep: string | undefined;
  kms: string | undefined;
  epkAt: number;
}
const facts: HotFacts = { type: 'access', textMayHoldPan: false, bytes: new Uint8Array(0), time: 0, idStart: 0, idEnd: 0, ep: undefined, kms: undefined, epkAt: -1 };

/**
 * The auditor's hot path (issue 20): {@link decodeHotLeaf}'s checks, every one of them, without
 * building the leaf — only its {@link HotFacts}. Returns a leaf's facts exactly when
 * `decodeHotLeaf` (after `decodeLeafFast`'s size check) returns a leaf, with the same
 * `textMayHoldPan`; the object is reused by the next call (read it before). `bytes` MUST NOT be
 * written while the facts are in use.
 */
export function readHotFacts(leafBytes: Uint8Array): HotFacts | undefined {
  if (leafBytes.length > MAX_LEAF_BYTES) return undefined;
  setBuilding(false);
  facts.ep = facts.kms = undefined;
  facts.epkAt = -1;
  let ok: unknown;
  try {
    ok = readHot(leafBytes);
  } finally {
    setBuilding(true);
  }
  if (ok === undefined) return undefined;
  facts.bytes = leafBytes;
  facts.textMayHoldPan = pan;
  return facts;
}
