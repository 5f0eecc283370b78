/**
 * The OpenAPI 3.1 document, generated from the route specs (`route-spec.ts`): every registered
 * route, its path and query parameters, request body and responses as JSON Schema 2020-12 from
 * the same zod schemas (zod 4 `z.toJSONSchema`), every error response with its codes, and the
 * realistic examples of the specs (examples*.ts, error-catalog.ts). A new route that is
 * registered with `defineRoute` is documented without touching this file.
 */
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../errors.js';
import { HTTP_STATUS } from './errors.js';
import { ERROR_CATALOG, errorExampleBody } from './error-catalog.js';
import { PARAMETER_EXAMPLES } from './examples.js';
import type { Examples, RegisteredRoute, RouteSpec } from './route-spec.js';

const OPENAPI_VERSION = '3.1.0';

const COMMON_MTLS: readonly ErrorCode[] = ['CLIENT_CERTIFICATE_REQUIRED', 'CERTIFICATE_REVOKED'];
const COMMON_BODY: readonly ErrorCode[] = ['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE'];
/**
 * Every route: a URL (or body) with NUL, non-UTF-8 bytes or a lone surrogate is INVALID_ENCODING;
 * a request arriving while the service shuts down, or outliving its time budget
 * (PAYLOG_REQUEST_TIMEOUT_MS), is LOG_UNAVAILABLE (src/api/server.ts).
 */
const COMMON_ALL: readonly ErrorCode[] = ['INVALID_ENCODING', 'LOG_UNAVAILABLE', 'INTERNAL'];

/**
 * Tags in the order a user meets them (the order /docs shows them): submit, read, release or
 * forward, audit, administer, operate. A route's tag MUST be one of these.
 */
export const TAGS: ReadonlyArray<{ name: string; description: string }> = [
  { name: 'transactions', description: 'Checkout submits payment methods; everyone authorized reads the masked view and its log position.' },
  { name: 'client-side encryption', description: 'The key a payment page encrypts card data to, so that the checkout backend never sees it.' },
  { name: 'release', description: "The assigned processor takes the plaintext payment method; every attempt is logged first." },
  { name: 'forward', description: "Checkout has paylog fill a request template with the card data and send it to the processor's API." },
  { name: 'log', description: 'Auditors read the Merkle log: signed checkpoints, entries, inclusion and consistency proofs, tiles.' },
  { name: 'admin', description: 'Processors, their forward destinations, certificate revocations.' },
  { name: 'keys', description: 'Key lifecycle: epochs, rotation, rewrap, retention by crypto-shredding.' },
  { name: 'operations', description: 'Health, readiness, metrics and this reference; no client certificate needed.' },
];

/** The info description: what paylog is, the error shape, and what "Try it out" needs. */
const INFO_DESCRIPTION = [
  'Append-only, tamper-evident, envelope-encrypted payment-data log.',
  'Every /v1 route needs a client certificate issued by the paylog CA (mutual TLS); the role in it (checkout, processor, auditor, admin) decides what it may do.',
  'Errors: `{"error": {"code", "message", "details"?}}`. Each operation below lists the codes it may answer, with an example of each; docs/errors.md describes them all.',
  '**"Try it out" needs a client certificate in your browser.** The browser sends the request itself, so it must present a paylog client certificate: import one with its key, for example as PKCS#12, into the browser (or the OS keychain) and trust the paylog CA for this host; the browser then asks which certificate to present. Without one, every /v1 call answers 401 CLIENT_CERTIFICATE_REQUIRED; the operations routes need none.',
  '```\nopenssl pkcs12 -export -in data/pki/checkout.pem -inkey data/pki/checkout-key.pem -certfile data/pki/ca.pem -out checkout.p12\n```',
].join('\n\n');

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 400: 'Bad request', 401: 'Unauthenticated', 403: 'Forbidden', 404: 'Not found',
  409: 'Conflict', 410: 'Gone', 413: 'Payload too large', 415: 'Unsupported media type', 422: 'Unprocessable', 429: 'Too many requests',
  500: 'Internal error', 502: 'Bad gateway', 503: 'Unavailable', 504: 'Gateway timeout',
};

type Json = Record<string, unknown>;

/** JSON Schema of a zod schema as the client sends it (input) or receives it (output). */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any', target: 'draft-2020-12' }) as Json;
  return rest;
}

/** Sets `description` on each property of a JSON Schema from `words` (dotted paths; unions walked). */
function describeFields(schema: Json, words: Readonly<Record<string, string>>, prefix = ''): Json {
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

/** OpenAPI `examples` from the spec's named examples. */
function exampleObjects(examples: Examples | undefined): Json {
  return examples ? { examples: Object.fromEntries(Object.entries(examples).map(([k, v]) => [k, { summary: v.summary, value: v.value }])) } : {};
}

function errorResponses(spec: RouteSpec): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of routeErrorCodes(spec)) {
    const s = HTTP_STATUS[code];
    byStatus.set(s, [...(byStatus.get(s) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, codes] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    out[String(status)] = {
      description: [`${STATUS_TEXT[status] ?? 'Error'}:`, ...codes.map((c) => `- \`${c}\`: ${ERROR_CATALOG[c].meaning}`)].join('\n'),
      ...(status === 429 || status === 503 ? { headers: { 'Retry-After': retryAfter } } : {}),
      content: {
        'application/json': {
          schema: {
            allOf: [{ $ref: '#/components/schemas/Error' }, { properties: { error: { properties: { code: { enum: codes } } } } }],
          },
          examples: Object.fromEntries(
            codes.map((c) => [c, { summary: c, value: errorExampleBody(c, spec.errorExamples?.[c]) }]),
          ),
        },
      },
    };
  }
  return out;
}

/**
 * A status that is both a route's own answer and an error (503 of /readyz: not ready, or shutting
 * down): one response whose body is either, with the examples of both.
 */
function mergeResponses(own: Json | undefined, error: Json): Json {
  const ownMedia = (own?.content as Record<string, Json> | undefined)?.['application/json'];
  if (!own || !ownMedia) return error;
  const errMedia = (error.content as Record<string, Json>)['application/json']!;
  const headers = Object.fromEntries(
    Object.entries((error.headers ?? {}) as Record<string, Json>).map(([k, h]) => [k, { ...h, description: `with an error: ${String(h.description)}` }]),
  );
  return {
    ...error,
    ...(Object.keys(headers).length > 0 ? { headers } : {}),
    description: `${String(own.description)}; or an error:\n${String(error.description).split('\n').slice(1).join('\n')}`,
    content: {
      'application/json': {
        schema: { oneOf: [ownMedia.schema, errMedia.schema] },
        examples: { ...(ownMedia.examples as Json | undefined), ...(errMedia.examples as Json) },
      },
    },
  };
}

function parameters(spec: RouteSpec): Json[] {
  const out: Json[] = [];
  for (const [where, obj] of [['path', spec.params], ['query', spec.query], ['header', spec.headers]] as const) {
    if (!obj) continue;
    for (const [name, field] of Object.entries(obj.shape as Record<string, z.ZodType>)) {
      const schema = jsonSchema(field, 'input');
      const { description, ...rest } = schema;
      const example = spec.parameterExamples?.[name] ?? PARAMETER_EXAMPLES[name];
      out.push({
        name,
        in: where,
        required: where === 'path' || !field.safeParse(undefined).success,
        ...(typeof description === 'string' ? { description } : {}),
        schema: rest,
        ...(example !== undefined ? { example } : {}),
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
  for (const r of routes) {
    const spec = r.spec;
    if (!spec || seen.has(spec)) continue;
    seen.add(spec);
    if (!TAGS.some((t) => t.name === spec.tag)) throw new Error(`route ${spec.operationId}: tag ${spec.tag} is not one of TAGS`);
    const responses: Record<string, Json> = {};
    for (const [status, res] of Object.entries(spec.responses)) {
      if (!res) continue;
      const ct = res.contentType ?? 'application/json';
      responses[status] = {
        description: res.description,
        ...(res.headers ? { headers: res.headers } : {}),
        ...(res.schema ? { content: { [ct]: { schema: ref(res.name, res.schema, 'output'), ...exampleObjects(res.examples) } } } : {}),
      };
    }
    for (const [status, error] of Object.entries(errorResponses(spec))) responses[status] = mergeResponses(responses[status], error);
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
                  ...exampleObjects(spec.body.examples),
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
      description: INFO_DESCRIPTION,
    },
    tags: TAGS.map((t) => ({ ...t })),
    components: { schemas, securitySchemes: { mtls: { type: 'mutualTLS', description: 'client certificate issued by the paylog CA' } } },
    security: [{ mtls: [] }],
    paths,
  };
}
