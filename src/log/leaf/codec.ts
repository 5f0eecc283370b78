/**
 * Leaf bytes ↔ typed leaves, every format. The first byte tells JSON from CBOR: `{` (0x7B) is a
 * v1 leaf (RFC 8785 canonical JSON); a CBOR map head (major type 5, 0xA0–0xBB) is a v2 or v3
 * leaf (deterministic CBOR, see ./cbor.ts) whose `v` must be 2 or 3. v3 differs from v2 only in
 * the transaction kind (./transaction.ts `LEAF_FORMAT_V3`); new leaves are always v3.
 */
import { z } from 'zod';
import { canonicalJson, isCanonicalJsonText } from '../../crypto/canonical-json.js';
import { PaylogError } from '../../errors.js';
import { decodeCbor, encodeCbor, type CborValue } from './cbor.js';
import { leafV1Schema, type LeafV1 } from './v1.js';
import { LEAF_FORMAT_V2, LEAF_FORMAT_V3, transactionLeafV2Schema, transactionLeafV3Schema, type TransactionLeafV2, type TransactionLeafV3 } from './transaction.js';
import { accessLeafV2Schema, type AccessLeafV2 } from './access.js';
import { adminEventLeafSchema, type AdminEventLeaf } from './admin-event.js';
import { keyEventLeafV2Schema, type KeyEventLeafV2 } from './key-event.js';
import { forwardResultLeafSchema, type ForwardResultLeaf } from './forward-result.js';

/** Upper bound on one leaf's size; larger input is refused before it reaches the log. */
export const MAX_LEAF_BYTES = 16 * 1024;

/** Schema of a CBOR leaf (v2 or v3), chosen by kind and, for transactions, by version. */
const nonTransactionSchemas = { access: accessLeafV2Schema, admin_event: adminEventLeafSchema, key_event: keyEventLeafV2Schema, forward_result: forwardResultLeafSchema } as const;
function cborLeafSchema(value: { v?: unknown; type?: unknown }): z.ZodType | undefined {
  if (value.type === 'transaction') return value.v === LEAF_FORMAT_V3 ? transactionLeafV3Schema : transactionLeafV2Schema;
  return typeof value.type === 'string' && Object.hasOwn(nonTransactionSchemas, value.type)
    ? nonTransactionSchemas[value.type as keyof typeof nonTransactionSchemas]
    : undefined;
}
/** Checks a decoded CBOR value (or a builder's output) against its leaf schema. */
export function parseCborLeaf(value: unknown): { success: true; data: LeafV2 } | { success: false; issues: { path: string; code: string }[] } {
  const schema = value !== null && typeof value === 'object' ? cborLeafSchema(value as { v?: unknown; type?: unknown }) : undefined;
  if (!schema) return { success: false, issues: [{ path: 'type', code: 'invalid_union' }] };
  const r = schema.safeParse(value);
  return r.success
    ? { success: true, data: r.data as LeafV2 }
    : { success: false, issues: r.error.issues.slice(0, 5).map((i) => ({ path: i.path.map(String).join('.'), code: i.code })) };
}
/** A CBOR leaf: format v2 (existing logs) or v3 (every new entry). */
export type LeafV2 = TransactionLeafV2 | TransactionLeafV3 | AccessLeafV2 | AdminEventLeaf | KeyEventLeafV2 | ForwardResultLeaf;
/** Every leaf a log can hold: discriminate on `v`, then `type`. */
export type Leaf = LeafV1 | LeafV2;
export type LeafType = Leaf['type'];

const UTF8 = new TextDecoder('utf-8', { fatal: true });
const JSON_OPEN_BRACE = 0x7b;

function tooLarge(n: number): void {
  if (n > MAX_LEAF_BYTES) throw new PaylogError('VALIDATION_FAILED', 'log entry too large');
}

/**
 * Serialises a leaf to its exact bytes: v1 → RFC 8785 canonical JSON; v2 → checked against its
 * schema (a builder mistake can never reach the log as an undecodable leaf), then deterministic
 * CBOR. Throws VALIDATION_FAILED when too large, INTERNAL when a v2 leaf breaks its schema.
 * The reference path of `encodeLeaf` (./encode.ts), which tries a cheaper check first.
 */
export function encodeLeafReference(leaf: Leaf): Buffer {
  let bytes: Buffer;
  if (leaf.v === 1) {
    bytes = Buffer.from(canonicalJson(leaf), 'utf8');
  } else {
    const r = parseCborLeaf(leaf);
    if (!r.success) {
      throw new PaylogError('INTERNAL', `leaf does not match leaf format v${leaf.v} (${leaf.type})`, { issues: r.issues });
    }
    bytes = encodeCbor(r.data as unknown as CborValue);
  }
  tooLarge(bytes.length);
  return bytes;
}

function decodeV1(bytes: Uint8Array): LeafV1 {
  let text: string;
  let parsed: unknown;
  try {
    text = UTF8.decode(bytes);
    parsed = JSON.parse(text);
  } catch {
    throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not UTF-8 JSON');
  }
  if (!isCanonicalJsonText(text, parsed)) throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not in canonical form');
  const result = leafV1Schema.safeParse(parsed);
  if (!result.success) throw new PaylogError('INTEGRITY_FAILURE', 'leaf does not match leaf format v1');
  return result.data;
}

function decodeV2(bytes: Uint8Array): LeafV2 {
  const value = decodeCbor(bytes); // strict: deterministic encoding, nothing trailing
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value) || ((value as { v?: unknown }).v !== LEAF_FORMAT_V2 && (value as { v?: unknown }).v !== LEAF_FORMAT_V3)) {
    throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not a leaf format v2 or v3 map');
  }
  const result = parseCborLeaf(value);
  if (!result.success) throw new PaylogError('INTEGRITY_FAILURE', `leaf does not match leaf format v${String((value as { v?: unknown }).v)}`);
  // Belt and braces: the strict decoder admits one encoding per value; re-encoding proves it.
  if (!encodeCbor(result.data as unknown as CborValue).equals(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))) {
    throw new PaylogError('INTEGRITY_FAILURE', 'leaf is not in canonical form');
  }
  return result.data as LeafV2;
}

/**
 * Parses and checks leaf bytes of either format: a known version and type with exactly the
 * documented fields, in canonical form (re-encoding yields the same bytes). Throws
 * INTEGRITY_FAILURE otherwise.
 */
export function decodeLeaf(bytes: Uint8Array): Leaf {
  if (bytes.length === 0) throw new PaylogError('INTEGRITY_FAILURE', 'leaf is empty');
  if (bytes.length > MAX_LEAF_BYTES) throw new PaylogError('INTEGRITY_FAILURE', 'leaf is larger than MAX_LEAF_BYTES');
  return bytes[0] === JSON_OPEN_BRACE ? decodeV1(bytes) : decodeV2(bytes);
}

/**
 * A JSON-friendly rendering of a decoded leaf for reports (verify-proof, tests): byte strings
 * as base64, v2 times as RFC 3339; v2 transaction leaves also get the v1 names `transactionId`,
 * `processor`, `amount` and `paymentMethodType`. Leaves hold no card data, so neither does this.
 */
export function leafToJson(leaf: Leaf): Record<string, unknown> {
  if (leaf.v === 1) return { ...leaf };
  const plain = (x: unknown, key = ''): unknown => {
    if (Buffer.isBuffer(x)) return x.toString('base64');
    if (Array.isArray(x)) return x.map((y) => plain(y));
    if (x !== null && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v, k)]));
    if (typeof x === 'number' && (key === 'time' || key === 'periodStart' || key === 'periodEnd' || key === 'asOf')) return new Date(x).toISOString();
    return x;
  };
  const out = plain(leaf) as Record<string, unknown>;
  if (leaf.type === 'transaction') {
    Object.assign(out, { transactionId: leaf.id, processor: leaf.p, amount: { value: leaf.amt, currency: leaf.cur }, paymentMethodType: leaf.pm.type });
  }
  return out;
}

/** The transaction a leaf is about (transaction and access leaves, either format). */
export function leafTransactionId(leaf: Leaf): string | undefined {
  if (leaf.type === 'transaction') return leaf.v === 1 ? leaf.transactionId : leaf.id;
  if (leaf.type === 'access' || leaf.type === 'forward_result') return leaf.transactionId;
  if (leaf.type === 'key_event') return leaf.transactionId;
  return undefined;
}
