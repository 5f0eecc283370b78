/**
 * zod schemas of what the forward routes answer (issue 18), with realistic examples, for the
 * OpenAPI document. The request bodies are the services' own schemas
 * (src/services/forward/request.ts, src/services/forward/destinations.ts).
 */
import { z } from 'zod';
import { FORWARD_OUTCOMES } from '../log/leaf.js';
import { FORWARD_METHODS } from '../services/forward/destinations.js';

const logIndex = z.int().min(0).describe('0-based index of an entry in the Merkle log');

export const destinationParams = z.object({
  name: z.string().describe('processor name, e.g. acme'),
  destination: z.string().describe('destination name: 1-63 lower-case letters, digits and -, e.g. payments'),
});

export const destinationRequestExample = {
  url: 'https://api.acme-payments.example:8443/gateway',
  paths: ['/v1/payments', '/v1/payments/*/captures'],
  methods: ['POST'],
  pins: ['sha256/6hJ5oWp8zG2bL9yXcQe1Vt0sRk3mN4aD7fU2iH8jKlE='],
  allowPrivateNetwork: false,
  timeoutMs: 10000,
};

export const destinationViewSchema = z
  .object({
    name: z.string(),
    url: z.string(),
    paths: z.array(z.string()),
    methods: z.array(z.enum(FORWARD_METHODS)),
    caPem: z.string().optional(),
    pins: z.array(z.string()).optional(),
    clientCertPem: z.string().optional(),
    hasClientKey: z.boolean().describe('a client key is held (KMS-wrapped); it is never served'),
    allowPrivateNetwork: z.boolean(),
    timeoutMs: z.int(),
    adminLogIndex: logIndex.describe('the admin_event entry that registered this configuration'),
  })
  .meta({ examples: [{ name: 'payments', ...destinationRequestExample, hasClientKey: false, adminLogIndex: 17 }] });

export const destinationsSchema = z.object({ destinations: z.array(destinationViewSchema) });
export const destinationRemovedSchema = z.object({ removed: z.literal(true) });

export const forwardRequestExample = {
  destination: 'payments',
  method: 'POST',
  path: '/v1/payments',
  headers: { 'content-type': 'application/json', authorization: 'Bearer sk_test_processor_api_key' },
  body: '{"amount":{{amount.value}},"currency":"{{amount.currency}}","card":{"number":"{{card.number}}","exp_month":"{{card.expiryMonth}}","exp_year":"{{card.expiryYear}}","cvc":"{{card.cvc}}","name":"{{card.holderName}}"},"reference":"{{transactionId}}"}',
  purpose: 'authorize',
  reference: 'INV-77',
};

export const forwardAnswerSchema = z
  .object({
    status: z.int().describe("the destination's HTTP status (a 3xx is not followed)"),
    headers: z.record(z.string(), z.string()).describe('the passed response headers (content-type, date, etag, location, request-id, …), masked'),
    body: z.string().describe('the response body, decompressed, every card-number-like and every substituted CVC / account number / IBAN masked'),
    masked: z.int().min(0).describe('how many values were masked'),
    accessLogIndex: logIndex.describe('the access entry committed before anything was sent'),
    resultLogIndex: logIndex.nullable().describe('the result entry (null if it could not be made durable: verify-log then reports the forward)'),
    durationMs: z.int().min(0),
  })
  .meta({
    examples: [
      {
        status: 201,
        headers: { 'content-type': 'application/json', date: 'Mon, 07 Dec 2026 06:00:00 GMT' },
        body: '{"id":"pay_8f2a","status":"authorized","authorizationCode":"A1B2C3","card":{"number":"************1111"}}',
        masked: 1,
        accessLogIndex: 41,
        resultLogIndex: 42,
        durationMs: 87,
      },
    ],
  });

const forwardViewSchema = z.object({
  accessLogIndex: logIndex,
  time: z.iso.datetime(),
  principal: z.object({ role: z.string(), name: z.string(), certificateFingerprint: z.string() }),
  outcome: z.enum(['granted', 'denied']),
  reason: z.string().nullable().describe('for a refused forward: the error code'),
  destination: z.string().nullable(),
  method: z.string().nullable(),
  path: z.string().nullable(),
  purpose: z.string().nullable(),
  reference: z.string().nullable(),
  templateSha256: z.string().nullable().describe('hex SHA-256 of the template as sent (placeholders, never values)'),
  result: z
    .object({ logIndex, outcome: z.enum(FORWARD_OUTCOMES), status: z.int().nullable(), durationMs: z.int(), masked: z.int(), error: z.string().nullable() })
    .nullable()
    .describe('null while in flight, or when the result entry is missing'),
});

export const forwardsSchema = z
  .object({ forwards: z.array(forwardViewSchema) })
  .meta({
    examples: [
      {
        forwards: [
          {
            accessLogIndex: 41,
            time: '2026-12-07T06:00:00.000Z',
            principal: { role: 'checkout', name: 'checkout', certificateFingerprint: 'sha256:5d1c…' },
            outcome: 'granted',
            reason: null,
            destination: 'payments',
            method: 'POST',
            path: '/v1/payments',
            purpose: 'authorize',
            reference: 'INV-77',
            templateSha256: '3b7e…',
            result: { logIndex: 42, outcome: 'completed', status: 201, durationMs: 87, masked: 1, error: null },
          },
        ],
      },
    ],
  });
