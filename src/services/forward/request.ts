/**
 * The forward request (issue 18 item 2): what the checkout sends, checked before anything else
 * happens. Pure.
 *
 * Contract: method, path and headers are LITERAL: any `{{`, a card-number-like value (the one
 * PAN detector), a hop-by-hop header, `Host` or `Content-Length` is refused (VALIDATION_FAILED);
 * the path must be one the destination allows for the method (DESTINATION_NOT_ALLOWED). Header
 * values (e.g. the processor API key in `Authorization`) are passed on and are never stored or
 * logged; only a keyed MAC of the whole request is kept (idempotency).
 */
import { createHmac } from 'node:crypto';
import { z } from 'zod';
import { PaylogError } from '../../errors.js';
import { canonicalJson } from '../../crypto/canonical-json.js';
import { containsPanLikeNumber } from '../../validation/identifiers.js';
import { containsIban } from '../../validation/transaction.js';
import { MAX_TEMPLATE_CHARS, templateKindOf, type TemplateKind } from '../../forward/template.js';
import { PURPOSE_EXPECTATION, REFERENCE_EXPECTATION, purposeSchema, referenceSchema, type RELEASE_PURPOSES } from '../release.js';
import { FORWARD_METHODS, type ForwardMethod } from './destinations.js';

/** Headers a forward may not set: hop-by-hop (RFC 9110 §7.6.1), Host and framing (paylog's own). */
const REFUSED_HEADERS: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'trailers',
  'transfer-encoding',
  'upgrade',
  'host',
  'content-length',
  'expect',
]);
const MAX_FORWARD_HEADERS = 64;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]{0,8192}$/;
/** Path characters: unreserved, `/`, and a query of unreserved, `=`, `&`, `%`. */
const FORWARD_PATH = /^(\/[A-Za-z0-9._~-]*)+(\?[A-Za-z0-9._~=&%-]*)?$/;
/** Idempotency-Key: 1-255 visible ASCII characters. */
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export const forwardRequestSchema = z.strictObject({
  destination: z.string().min(1).max(63),
  method: z.enum(FORWARD_METHODS),
  path: z.string().min(1).max(512),
  headers: z.record(z.string(), z.string()).optional(),
  body: z.string().max(MAX_TEMPLATE_CHARS).optional(),
  purpose: purposeSchema,
  reference: referenceSchema,
});

/** What each field must be, in words (errors and OpenAPI). */
const FORWARD_FIELD_EXPECTATIONS: Readonly<Record<string, string>> = {
  destination: 'destination must name one of the transaction processor\'s registered destinations',
  method: `method must be one of ${FORWARD_METHODS.join(', ')}`,
  path: 'path must be a literal path like /v1/payments (letters, digits, . _ ~ -, an optional query), allowed by the destination',
  headers: `headers must be at most ${MAX_FORWARD_HEADERS} literal name/value pairs; no {{, card numbers, hop-by-hop headers, Host or Content-Length`,
  body: `body must be a template of at most ${MAX_TEMPLATE_CHARS} characters (JSON, form or XML as the content-type header says)`,
  purpose: PURPOSE_EXPECTATION,
  reference: REFERENCE_EXPECTATION,
  '*': 'the body may have only destination, method, path, headers, body, purpose and reference',
};

export interface ForwardRequest {
  destination: string;
  method: ForwardMethod;
  path: string;
  /** Lower-case names. */
  headers: Record<string, string>;
  template: string | undefined;
  kind: TemplateKind | undefined;
  purpose: (typeof RELEASE_PURPOSES)[number];
  reference: string | undefined;
}

function refused(path: string, message = FORWARD_FIELD_EXPECTATIONS[path] ?? FORWARD_FIELD_EXPECTATIONS['*']!): PaylogError {
  return new PaylogError('VALIDATION_FAILED', message, { issues: [{ path, code: 'invalid_value', message }] });
}

/** A literal that must not carry a placeholder or card data. */
function literal(value: string): boolean {
  return !value.includes('{{') && !containsPanLikeNumber(value);
}

function checkHeaders(raw: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const entries = Object.entries(raw ?? {});
  if (entries.length > MAX_FORWARD_HEADERS) throw refused('headers');
  for (const [name, value] of entries) {
    const lower = name.toLowerCase();
    if (!HEADER_NAME.test(name) || REFUSED_HEADERS.has(lower) || !HEADER_VALUE.test(value) || !literal(name) || !literal(value) || Object.hasOwn(out, lower)) {
      // Names the header, never its value (it may be a secret).
      throw refused('headers', `header ${HEADER_NAME.test(name) ? lower : '(invalid name)'} is not allowed: ${FORWARD_FIELD_EXPECTATIONS.headers}`);
    }
    out[lower] = value;
  }
  return out;
}

/** Parses and checks a forward request body (JSON already parsed). */
export function parseForwardRequest(raw: unknown): ForwardRequest {
  const r = forwardRequestSchema.safeParse(raw);
  if (!r.success) {
    const path = r.error.issues[0]?.path.map(String)[0] ?? '*';
    throw refused(Object.hasOwn(FORWARD_FIELD_EXPECTATIONS, path) ? path : '*');
  }
  const d = r.data;
  if (!FORWARD_PATH.test(d.path) || /(^|\/)\.{1,2}(\/|\?|$)/.test(d.path) || !literal(d.path)) throw refused('path');
  if (d.reference && (containsPanLikeNumber(d.reference) || containsIban(d.reference))) throw refused('reference', 'reference must not contain a card number or IBAN');
  const headers = checkHeaders(d.headers);
  const kind = templateKindOf(headers['content-type']);
  if (d.body !== undefined && kind === undefined) {
    throw new PaylogError('TEMPLATE_INVALID', 'a body template needs a content-type header: application/json (or +json), application/x-www-form-urlencoded, application/xml, text/xml (or +xml)');
  }
  return { destination: d.destination, method: d.method, path: d.path, headers, template: d.body, kind, purpose: d.purpose, reference: d.reference };
}

/** True when the destination allows `method` on `path` (`*` in a pattern = one segment). */
export function pathAllowed(patterns: readonly string[], path: string): boolean {
  const segs = path.split('?')[0]!.replace(/\/$/, '').split('/');
  return patterns.some((p) => {
    const ps = p.replace(/\/$/, '').split('/');
    return ps.length === segs.length && ps.every((s, i) => s === '*' ? segs[i] !== '' : s === segs[i]);
  });
}

/** Checks an Idempotency-Key header value. */
export function idempotencyKeyOf(header: string | string[] | undefined): string {
  const v = Array.isArray(header) ? undefined : header;
  if (v === undefined || !IDEMPOTENCY_KEY.test(v) || containsPanLikeNumber(v)) {
    throw new PaylogError('VALIDATION_FAILED', 'a forward needs an Idempotency-Key header of 1-255 visible ASCII characters (no card number)', { issues: [{ path: 'Idempotency-Key', code: 'invalid_value', message: 'required' }] });
  }
  return v;
}

/** Keyed MAC of the whole request (headers included: their values are never stored, only this). */
export function forwardRequestMac(macKey: Buffer, transactionId: string, f: ForwardRequest): Buffer {
  const headers = Object.fromEntries(Object.entries(f.headers).sort(([a], [b]) => (a < b ? -1 : 1)));
  return createHmac('sha256', macKey)
    .update('paylog:forward-request\n')
    .update(canonicalJson({ transactionId, destination: f.destination, method: f.method, path: f.path, headers, body: f.template ?? null, purpose: f.purpose, reference: f.reference ?? null }))
    .digest();
}

/** Keyed MAC of (transaction, Idempotency-Key) as the access entry carries it (never the key itself). */
export function idempotencyKeyMac(macKey: Buffer, transactionId: string, key: string): Buffer {
  return createHmac('sha256', macKey).update('paylog:forward-key\n').update(transactionId).update('\n').update(key).digest();
}
