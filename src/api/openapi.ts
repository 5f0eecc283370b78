/** OpenAPI 3.1 document, request schemas generated from the zod schemas (zod v4 toJSONSchema). */
import { z } from 'zod';
import { ERROR_CODES } from '../errors.js';
import { encryptedTransactionRequestSchema, transactionRequestSchema } from '../validation/transaction.js';
import { PROCESSOR_NAME_PATTERN, TRANSACTION_ID_MAX, TRANSACTION_ID_PATTERN } from '../validation/identifiers.js';

const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', enum: [...ERROR_CODES] }, message: { type: 'string' }, details: { type: 'object' } },
    },
  },
};

const err = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });
/** Parameter schemas from the one identifier module (src/validation/identifiers.ts). */
const txIdSchema = { type: 'string', minLength: 1, maxLength: TRANSACTION_ID_MAX, pattern: TRANSACTION_ID_PATTERN.source };
const txIdParam = { name: 'transactionId', in: 'path', required: true, schema: txIdSchema };

export function buildOpenApi(): Record<string, unknown> {
  const txSchema = z.toJSONSchema(transactionRequestSchema, { unrepresentable: 'any', io: 'input' });
  // Client-side encrypted variant: paymentMethod { type: "encrypted", jwe } (SECURITY.md "Client-side encryption").
  const encryptedTxSchema = z.toJSONSchema(encryptedTransactionRequestSchema, { unrepresentable: 'any', io: 'input' });
  return {
    openapi: '3.1.0',
    info: {
      title: 'paylog',
      version: '1',
      description:
        'Append-only, tamper-evident, envelope-encrypted payment-data log. Every /v1 route needs a client certificate issued by the paylog CA (mTLS).',
    },
    components: {
      schemas: { TransactionRequest: txSchema, EncryptedTransactionRequest: encryptedTxSchema, Error: errorSchema },
      securitySchemes: { mtls: { type: 'mutualTLS' } },
    },
    security: [{ mtls: [] }],
    paths: {
      '/v1/transactions': {
        post: {
          summary: 'Submit one transaction (checkout). transactionId is the idempotency key.',
          requestBody: { required: true, content: { 'application/json': { schema: { oneOf: [{ $ref: '#/components/schemas/TransactionRequest' }, { $ref: '#/components/schemas/EncryptedTransactionRequest' }] } } } },
          responses: {
            '201': { description: 'Committed to the log' },
            '400': err('BAD_REQUEST (not JSON) or INVALID_ENCODING (NUL, bytes that are not UTF-8, or a lone surrogate, anywhere in the URL or body; every route)'),
            '200': { description: 'Identical replay of an earlier submission' },
            '401': err('No valid client certificate'),
            '403': err('Not a checkout principal'),
            '409': err('IDEMPOTENCY_CONFLICT: same transactionId, different body'),
            '413': err('PAYLOAD_TOO_LARGE'),
            '422': err('Validation failed (VALIDATION_FAILED, SENSITIVE_AUTHENTICATION_DATA, INVALID_CARD_NUMBER, ...)'),
            '503': err('LOG_UNAVAILABLE or KMS_UNAVAILABLE; nothing acknowledged'),
          },
        },
      },
      '/v1/transactions/{transactionId}': {
        get: {
          summary: 'Masked metadata and log index (checkout, assigned processor, auditor). Never plaintext.',
          parameters: [txIdParam],
          responses: {
            '200': {
              description:
                'Masked view decoded from the transaction\'s log leaf, with `leaf` (base64 leaf bytes), `leafFormat`, and once a signed checkpoint covers it `proof { treeSize, hashes (RFC 9162 audit path), checkpoint (signed note) }`, so the caller can check every value alone.',
            },
            '403': err('Role may not read'),
            '404': err('Unknown or not yours'),
            '422': err('INTEGRITY_FAILURE: the stored record does not match its log entry'),
          },
        },
      },
      '/v1/transactions/{transactionId}/release': {
        post: {
          summary: 'Release the plaintext payment method to the assigned processor; the access entry is committed first.',
          parameters: [txIdParam],
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['purpose'],
                  properties: {
                    purpose: { enum: ['authorize', 'capture', 'refund', 'chargeback', 'settlement'] },
                    reference: { type: 'string', maxLength: 128 },
                  },
                },
              },
            },
          },
          responses: { '200': { description: 'Plaintext payment method' }, '403': err('Not a processor'), '404': err('Unknown or not yours'), '429': err('RATE_LIMITED'), '503': err('Access entry not durable: nothing released') },
        },
      },
      '/v1/transactions/{transactionId}/accesses': {
        get: {
          summary: 'Access entries of a transaction (auditor; assigned processor), in log order, paged',
          parameters: [
            txIdParam,
            { name: 'after', in: 'query', schema: { type: 'integer', minimum: 0 }, description: 'cursor: the `next` of the previous page' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 1000 } },
          ],
          responses: { '200': { description: '{ accesses: [...], next?: number }' }, '403': err('Role may not list accesses'), '404': err('Unknown or not yours') },
        },
      },
      '/v1/admin/processors': { get: { summary: 'Registered processors (admin)', responses: { '200': { description: '{ processors: [...] }' }, '403': err('Not an admin') } } },
      '/v1/admin/processors/{name}': {
        put: {
          summary: 'Register, disable or re-enable a processor (admin)',
          parameters: [{ name: 'name', in: 'path', required: true, schema: { type: 'string', pattern: PROCESSOR_NAME_PATTERN.source } }],
          requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['status'], properties: { status: { enum: ['active', 'disabled'] } } } } } },
          responses: { '200': { description: 'updated' }, '403': err('Not an admin'), '422': err('VALIDATION_FAILED') },
        },
      },
      '/v1/admin/revocations': {
        post: {
          summary: 'Revoke a principal certificate by SHA-256 fingerprint and/or serial (admin); effective on the next request',
          requestBody: {
            required: true,
            content: { 'application/json': { schema: { type: 'object', properties: { fingerprint: { type: 'string', pattern: '^sha256:[0-9a-f]{64}$' }, serial: { type: 'string' }, reason: { type: 'string', maxLength: 200 } } } } },
          },
          responses: { '201': { description: 'revoked' }, '403': err('Not an admin'), '422': err('VALIDATION_FAILED') },
        },
      },
      '/v1/log/checkpoint': { get: { summary: 'Latest signed checkpoint (C2SP signed note), text/plain; ?size= for an earlier one', responses: { '200': { description: 'checkpoint' } } } },
      '/v1/cse/jwks.json': { get: { summary: 'Client-side encryption: the JWK Set (RFC 7517) browsers encrypt payment methods to (ECDH-ES P-256, A256GCM); any certificate', responses: { '200': { description: 'application/jwk-set+json' } } } },
      '/v1/log/key': { get: { summary: 'Checkpoint verifier key(s): signed-note vkey and PEM', responses: { '200': { description: 'keys' } } } },
      '/v1/log/entries': { get: { summary: 'Entries [start, end) (auditor)', responses: { '200': { description: 'entries' } } } },
      '/v1/log/proof/inclusion': {
        get: {
          summary: 'RFC 9162 §2.1.3 inclusion proof, by index or by transactionId',
          parameters: [
            { name: 'index', in: 'query', schema: { type: 'integer', minimum: 0 } },
            { name: 'transactionId', in: 'query', schema: txIdSchema },
            { name: 'treeSize', in: 'query', schema: { type: 'integer', minimum: 1 } },
          ],
          responses: { '200': { description: 'proof' } },
        },
      },
      '/v1/log/proof/consistency': { get: { summary: 'RFC 9162 §2.1.4 consistency proof', responses: { '200': { description: 'proof' } } } },
      '/healthz': { get: { security: [], summary: 'Liveness', responses: { '200': { description: 'ok' } } } },
      '/readyz': { get: { security: [], summary: 'Readiness (database + KMS)', responses: { '200': { description: 'ready' }, '503': { description: 'not ready' } } } },
      '/metrics': { get: { security: [], summary: 'Prometheus metrics', responses: { '200': { description: 'metrics' } } } },
    },
  };
}
