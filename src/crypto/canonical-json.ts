/**
 * Canonical JSON: RFC 8785 (JSON Canonicalization Scheme, JCS) for the subset paylog uses.
 *
 * Contract:
 * - Accepted values: `null`, booleans, strings, SAFE integers (`Number.isSafeInteger`), arrays of
 *   accepted values, and plain objects (prototype `Object.prototype` or `null`) whose own
 *   enumerable string-keyed properties are accepted values.
 * - Rejected (throws `PaylogError('INTERNAL')`): non-integer or unsafe numbers (JCS would need
 *   the ECMAScript double formatting, which we deliberately do not depend on), `undefined`,
 *   functions, symbols, bigints, class instances (Date, Buffer, Map, ...: no `toJSON` is called),
 *   sparse arrays, cycles, and strings/keys containing lone surrogates (RFC 8785 §3.2.2.2 requires
 *   I-JSON, RFC 7493 §2.1, i.e. well-formed Unicode).
 * - Output: no whitespace; object members sorted by key, comparing keys as arrays of UTF-16 code
 *   units (RFC 8785 §3.2.3); strings escaped exactly as ECMAScript `JSON.stringify` does
 *   (RFC 8785 §3.2.2.2); integers in shortest decimal form, `-0` as `0` (RFC 8785 §3.2.2.3).
 * - Error messages name the problem only, never the offending value or its key (either could be
 *   card data).
 */
import { PaylogError } from '../errors.js';

/** Nesting limit: far above anything paylog builds, low enough to never overflow the stack. */
const CANONICAL_JSON_MAX_DEPTH = 64;

/** ES2024 String.prototype.isWellFormed (present in Node 20; not in this project's TS lib): no lone surrogate. */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

function reject(reason: string): never {
  throw new PaylogError('INTERNAL', `canonical JSON: ${reason}`);
}

// RFC 8785 §3.2.2.2 + RFC 7493 §2.1: strings are well-formed Unicode, serialised like JSON.stringify.
function serializeString(s: string): string {
  if (!isWellFormed(s)) reject('string contains a lone surrogate');
  return JSON.stringify(s);
}

// RFC 8785 §3.2.2.3, restricted to safe integers (exact in IEEE 754, shortest form is the decimal).
function serializeInteger(n: number): string {
  if (!Number.isSafeInteger(n)) reject('only safe integers are supported');
  return Object.is(n, -0) ? '0' : String(n);
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

// `ancestors`: the objects being serialised around this one (a cycle is a value equal to one of
// them; shared acyclic references are fine). Built with `+=` and the default sort, which orders
// strings by UTF-16 code units exactly as RFC 8785 §3.2.3 asks, without a comparator call per pair.
function serialize(value: unknown, depth: number, ancestors: object[]): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return serializeString(value);
    case 'number':
      return serializeInteger(value);
    case 'object':
      break;
    default:
      return reject(`unsupported type ${typeof value}`);
  }
  if (depth >= CANONICAL_JSON_MAX_DEPTH) reject('nesting too deep');
  if (ancestors.includes(value)) reject('cyclic structure');
  ancestors.push(value);
  try {
    if (Array.isArray(value)) {
      let out = '[';
      for (let i = 0; i < value.length; i++) {
        if (!Object.prototype.hasOwnProperty.call(value, i)) reject('sparse array');
        if (i > 0) out += ',';
        out += serialize(value[i], depth + 1, ancestors);
      }
      return out + ']';
    }
    if (!isPlainObject(value)) reject('only plain objects are supported');
    const keys = Object.keys(value).sort(); // RFC 8785 §3.2.3: UTF-16 code unit order
    let out = '{';
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (i > 0) out += ',';
      out += serializeString(k);
      out += ':';
      out += serialize(value[k], depth + 1, ancestors);
    }
    return out + '}';
  } finally {
    ancestors.pop();
  }
}

/** RFC 8785 canonical serialisation of `value` (see the module doc for the accepted subset). */
export function canonicalJson(value: unknown): string {
  return serialize(value, 0, []);
}

/** UTF-8 bytes of `canonicalJson(value)` (what gets hashed, MACed or encrypted). */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}

/**
 * True when `text` is exactly the RFC 8785 serialisation of `parsed` (= JSON.parse(text)), for
 * the subset above — without re-serialising: ECMAScript JSON.stringify already emits RFC 8785
 * strings and integers (RFC 8785 §3.2.2), so the text is canonical iff it equals
 * JSON.stringify(parsed), every object's keys are in UTF-16 code-unit order (§3.2.3), and every
 * string is well formed (no lone surrogates).
 */
export function isCanonicalJsonText(text: string, parsed: unknown): boolean {
  return JSON.stringify(parsed) === text && sortedAndWellFormed(parsed, 0);
}

function sortedAndWellFormed(value: unknown, depth: number): boolean {
  if (typeof value === 'string') return isWellFormed(value);
  if (typeof value === 'number') return Number.isSafeInteger(value);
  if (value === null || typeof value !== 'object') return true;
  if (depth >= CANONICAL_JSON_MAX_DEPTH) return false;
  if (Array.isArray(value)) return value.every((v) => sortedAndWellFormed(v, depth + 1));
  const keys = Object.keys(value);
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!;
    if (!isWellFormed(k) || (i > 0 && !(keys[i - 1]! < k))) return false;
    if (!sortedAndWellFormed((value as Record<string, unknown>)[k], depth + 1)) return false;
  }
  return true;
}
