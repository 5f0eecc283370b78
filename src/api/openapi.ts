/**
 * The OpenAPI 3.1 document, generated from the route specs (`route-spec.ts`): every registered
 * route, its path and query parameters, request body and responses as JSON Schema 2020-12 from
 * the same zod schemas (zod 4 `z.toJSONSchema`), and every error response with its codes. A new
 * route that is registered with `defineRoute` is documented without touching this file.
 */
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { HTTP_STATUS } from './errors.js';
import type { RegisteredRoute, RouteSpec } from './route-spec.js';

export const OPENAPI_VERSION = '3.1.0';

/** What each code means, in words (shown in the document beside the codes a route may answer). */
export const ERROR_DESCRIPTIONS: Partial<Record<ErrorCode, string>> = {
  BAD_REQUEST: 'the body is not valid JSON, or the request is malformed',
  INVALID_ENCODING: 'a NUL, bytes that are not UTF-8, or a lone surrogate anywhere in the URL or body',
  PAYLOAD_TOO_LARGE: 'the body is larger than the limit (16 KiB by default)',
  UNSUPPORTED_MEDIA_TYPE: 'the body is not application/json',
  VALIDATION_FAILED: 'a field is missing or malformed; details.issues lists each field path with what was expected',
  SENSITIVE_AUTHENTICATION_DATA: 'the body carries a card verification code, track data or a PIN (any depth); never accepted',
  INVALID_CARD_NUMBER: 'the card number fails its length, brand or Luhn check',
  CARD_EXPIRED: 'the card expiry month has ended (UTC)',
  INVALID_ROUTING_NUMBER: 'the ABA routing number fails its check digit',
  INVALID_IBAN: 'the IBAN fails its structure or mod 97-10 check',
  UNSUPPORTED_CURRENCY: 'the currency is not an active ISO 4217 code with minor units',
  UNKNOWN_PROCESSOR: 'the processor is not registered or is disabled',
  IDEMPOTENCY_CONFLICT: 'this transactionId was already submitted with a body that differs in a served field (processor, amount, masked payment method or metadata)',
  CLIENT_CERTIFICATE_REQUIRED: 'no client certificate issued by the paylog CA was presented',
  CERTIFICATE_REVOKED: 'the client certificate has been revoked',
  FORBIDDEN: 'the role of this certificate may not do this',
  NOT_FOUND: 'no such resource, or not one this principal may see (the two look the same)',
  RATE_LIMITED: 'too many requests from this certificate; retry after Retry-After seconds',
  PROBE_LIMIT_EXCEEDED:
    'more new transactions with the same served payment details (brand, last four, expiry; or routing number, last four, account type; or country, last four, BIC) from this principal this clock hour than the probe limit allows; retry after Retry-After seconds (the end of the hour)',
  LOG_UNAVAILABLE: 'the log database is unavailable; nothing was acknowledged; retry later',
  KMS_UNAVAILABLE: 'KMS is unavailable; nothing was acknowledged; retry later',
  INTEGRITY_FAILURE: 'a stored record failed its integrity checks; nothing is returned',
  INCONSISTENT_TREE: 'the stored tree failed its consistency checks; nothing is returned',
  INTERNAL: 'an unexpected error; no detail is given',
  CSE_KEY_UNKNOWN: 'the JWE names a key id paylog does not accept; fetch /v1/cse/jwks.json again',
  CSE_DECRYPT_FAILED: 'the JWE could not be decrypted',
  CSE_BINDING_MISMATCH: 'the JWE was encrypted for another transactionId or processor',
  CSE_EXPIRED: 'the JWE is older than PAYLOG_CSE_MAX_AGE_S',
};

const COMMON_MTLS: readonly ErrorCode[] = ['CLIENT_CERTIFICATE_REQUIRED', 'CERTIFICATE_REVOKED'];
const COMMON_BODY: readonly ErrorCode[] = ['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'];
/** Every route: a URL (or body) with NUL, non-UTF-8 bytes or a lone surrogate is INVALID_ENCODING. */
const COMMON_ALL: readonly ErrorCode[] = ['INVALID_ENCODING', 'INTERNAL'];

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 400: 'Bad request', 401: 'Unauthenticated', 403: 'Forbidden', 404: 'Not found',
  409: 'Conflict', 413: 'Payload too large', 415: 'Unsupported media type', 422: 'Unprocessable', 429: 'Too many requests',
  500: 'Internal error', 503: 'Unavailable',
};

type Json = Record<string, unknown>;

/** JSON Schema of a zod schema as the client sends it (input) or receives it (output). */
export function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  return rest;
}

/** Sets `description` on each property of a JSON Schema from `words` (dotted paths; unions walked). */
export function describeFields(schema: Json, words: Readonly<Record<string, string>>, prefix = ''): Json {
  for (const branch of [...((schema.oneOf ?? schema.anyOf ?? []) as Json[])]) describeFields(branch, words, prefix);
  const props = schema.properties as Record<string, Json> | undefined;
  for (const [key, sub] of Object.entries(props ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (words[path] !== undefined && sub.description === undefined) sub.description = words[path];
    describeFields(sub, words, path);
  }
  const extra = schema.additionalProperties;
  if (extra && typeof extra === 'object' && words[`${prefix}.*`] !== undefined) (extra as Json).description ??= words[`${prefix}.*`];
  return schema;
}

/** Fastify `/a/:b` → OpenAPI `/a/{b}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** Error codes a route may answer: its own plus the common ones of its kind, in ERROR_CODES order. */
export function routeErrorCodes(spec: RouteSpec): ErrorCode[] {
  const all = new Set<ErrorCode>([...spec.errors, ...COMMON_ALL]);
  if (spec.access === 'mtls') for (const c of COMMON_MTLS) all.add(c);
  if (spec.body) for (const c of COMMON_BODY) all.add(c);
  return ERROR_CODES.filter((c) => all.has(c));
}

const errorSchema: Json = {
  type: 'object',
  required: ['error'],
  additionalProperties: false,
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      additionalProperties: false,
      properties: {
        code: { type: 'string', enum: [...ERROR_CODES], description: 'stable machine code' },
        message: { type: 'string', description: 'what was expected, in words; never an input value' },
        details: {
          type: 'object',
          description: 'field paths and constant codes only',
          properties: {
            issues: {
              type: 'array',
              items: {
                type: 'object',
                required: ['path', 'code'],
                properties: {
                  path: { type: 'string', description: 'dotted field path; segments that are not schema keys are *' },
                  code: { type: 'string' },
                  message: { type: 'string', description: 'what this field must be' },
                },
              },
            },
          },
        },
      },
    },
  },
};

const retryAfter = { description: 'seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } };

function errorResponses(spec: RouteSpec): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrorCodes(spec)) {
    const s = HTTP_STATUS[code];
    byStatus.set(s, [...(byStatus.get(s) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: `${STATUS_TEXT[status] ?? 'Error'}: ${codes.map((c) => `${c} (${ERROR_DESCRIPTIONS[c] ?? c})`).join('; ')}`,
      ...(status === 429 || status === 503 ? { headers: { 'Retry-After': retryAfter } } : {}),
      content: {
        'application/json': {
          schema: {
            allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { error: { properties: { code: { enum: codes } } } } }],
          },
        },
      },
    };
  }
  return out;
}

function parameters(spec: RouteSpec): Json[] {
  const out: Json[] = [];
  for (const [where, obj] of [['path', spec.params], ['query', spec.query]] as const) {
    if (!obj) continue;
    for (const [name, field] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
      const schema = jsonSchema(field, 'input');
      const { description, ...rest } = schema;
      out.push({
        name,
        in: where,
        required: where === 'path' || !field.safeParse(undefined).success,
        ...(typeof description === 'string' ? { description } : {}),
        schema: rest,
      });
    }
  }
  return out;
}

/** Builds the document from the registered routes (those without a spec are not documented). */
export function buildOpenApi(routes: readonly RegisteredRoute[]): Json {
  const schemas: Record<string, Json> = { Error: errorSchema };
  const ref = (name: string | undefined, schema: z.ZodType, io: 'input' | 'output', words?: Readonly<Record<string, string>>): Json => {
    const s = words ? describeFields(jsonSchema(schema, io), words) : jsonSchema(schema, io);
    if (!name) return s;
    schemas[name] = s;
    return { $ref: `#/components/schemas/${name}` };
  };
  const paths: Record<string, Record<string, Json>> = {};
  const seen = new Set<RouteSpec>();
  const tags = new Set<string>();
  for (const r of routes) {
    const spec = r.spec;
    if (!spec || seen.has(spec)) continue;
    seen.add(spec);
    tags.add(spec.tag);
    const responses: Record<string, Json> = {};
    for (const [status, res] of Object.entries(spec.responses)) {
      if (!res) continue;
      const ct = res.contentType ?? 'application/json';
      responses[status] = {
        description: res.description,
        ...(res.headers ? { headers: res.headers } : {}),
        ...(res.schema ? { content: { [ct]: { schema: ref(res.name, res.schema, 'output') } } } : {}),
      };
    }
    Object.assign(responses, errorResponses(spec));
    const params = parameters(spec);
    (paths[openApiPath(spec.url)] ??= {})[spec.method.toLowerCase()] = {
      operationId: spec.operationId,
      tags: [spec.tag],
      summary: spec.summary,
      description: [spec.description, spec.who ? `Who: ${spec.who}.` : undefined].filter(Boolean).join('\n\n') || undefined,
      ...(spec.access === 'public' ? { security: [] } : {}),
      ...(params.length > 0 ? { parameters: params } : {}),
      ...(spec.body
        ? {
            requestBody: {
              required: true,
              ...(spec.body.description ? { description: spec.body.description } : {}),
              content: {
                'application/json': {
                  schema: spec.body.oneOf
                    ? { oneOf: spec.body.oneOf.map((o) => ref(o.name, o.schema, 'input', spec.body!.fieldDescriptions)) }
                    : ref(spec.body.name, spec.body.schema, 'input', spec.body.fieldDescriptions),
                },
              },
            },
          }
        : {}),
      responses,
    };
  }
  return {
    openapi: OPENAPI_VERSION,
    info: {
      title: 'paylog',
      version: '1',
      description:
        'Append-only, tamper-evident, envelope-encrypted payment-data log. Every /v1 route needs a client certificate issued by the paylog CA (mTLS). Every error is `{ "error": { "code", "message", "details"? } }`.',
    },
    tags: [...tags].sort().map((name) => ({ name })),
    components: { schemas, securitySchemes: { mtls: { type: 'mutualTLS', description: 'client certificate issued by the paylog CA' } } },
    security: [{ mtls: [] }],
    paths,
  };
}
