/**
 * zod schemas of what the forward routes answer (issue 18), and realistic examples of their
 * requests and answers (the story of `examples.ts`), for the OpenAPI document. The request bodies are the services' own schemas
 * (src/services/forward/request.ts, src/services/forward/destinations.ts).
 */
import { z } from 'zod';
import { FORWARD_OUTCOMES } from '../log/leaf.js';
import { FORWARD_METHODS } from '../services/forward/destinations.js';
import { EXAMPLE, exampleBytes } from './examples.js';
import type { Examples } from './route-spec.js';

const logIndex = z.int().min(0).describe('0-based index of an entry in the Merkle log');

export const destinationParams = z.object({
  name: z.string().describe('processor name, e.g. acme'),
  destination: z.string().describe('destination name: 1-63 lower-case letters, digits and -, e.g. payments'),
});

/** The header a forward reads (its idempotency key). */
export const forwardHeaders = z.object({
  'Idempotency-Key': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/)
    .describe('1-255 visible ASCII characters, no card number: a retry with the same key and request returns the recorded answer and sends nothing'),
});

const destinationRequestExample = {
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
  });

const destinationView = { name: 'payments', ...destinationRequestExample, hasClientKey: false, adminLogIndex: 17 };
export const DESTINATION_REQUEST_EXAMPLES: Examples = {
  pinned: { summary: "The processor's payments API, with an SPKI pin", value: destinationRequestExample },
  mtls: {
    summary: 'A bank gateway that requires a client certificate (the key is stored KMS-wrapped, never served)',
    value: {
      url: 'https://gateway.examplebank.example/api',
      paths: ['/v2/authorizations'],
      clientCertPem: '-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIUY3VzdG9tZXItY2VydC0yMDI2LTEy…\n-----END CERTIFICATE-----\n',
      clientKeyPem: '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQ…\n-----END PRIVATE KEY-----\n',
      timeoutMs: 15000,
    },
  },
};
export const DESTINATION_EXAMPLES: Examples = { payments: { summary: 'Registered', value: destinationView } };
export const DESTINATIONS_EXAMPLES: Examples = { list: { summary: "acme's destinations", value: { destinations: [destinationView] } } };
export const DESTINATION_REMOVED_EXAMPLES: Examples = { removed: { summary: 'Removed', value: { removed: true } } };

export const destinationsSchema = z.object({ destinations: z.array(destinationViewSchema) });
export const destinationRemovedSchema = z.object({ removed: z.literal(true) });

const forwardRequestExample = {
  destination: 'payments',
  method: 'POST',
  path: '/v1/payments',
  headers: { 'content-type': 'application/json', authorization: 'Bearer sk_test_processor_api_key' },
  body: '{"amount":{{amount.value}},"currency":"{{amount.currency}}","card":{"number":"{{card.number}}","exp_month":"{{card.expiryMonth}}","exp_year":"{{card.expiryYear}}","cvc":"{{card.cvc}}","name":"{{card.holderName}}"},"reference":"{{transactionId}}"}',
  purpose: 'authorize',
  reference: 'INV-2026-0042',
};

export const FORWARD_REQUEST_EXAMPLES: Examples = {
  json: { summary: 'JSON authorization request with the held security code', value: forwardRequestExample },
  form: {
    summary: 'Form-urlencoded (a Stripe-style API)',
    value: {
      destination: 'payments',
      method: 'POST',
      path: '/v1/payment_intents',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: 'Bearer sk_test_processor_api_key' },
      body: 'amount={{amount.value}}&currency={{amount.currency}}&payment_method_data[card][number]={{card.number}}&payment_method_data[card][exp_month]={{card.expiryMonth}}&payment_method_data[card][exp_year]={{card.expiryYear2}}&confirm=true',
      purpose: 'authorize',
      reference: 'INV-2026-0042',
    },
  },
  xml: {
    summary: 'XML (a bank gateway), IBAN direct debit',
    value: {
      destination: 'payments',
      method: 'POST',
      path: '/v1/payments',
      headers: { 'content-type': 'application/xml' },
      body: '<debit><amount currency="{{amount.currency}}">{{amount.value}}</amount><iban>{{iban.iban}}</iban><bic>{{iban.bic}}</bic><ref>{{transactionId}}</ref></debit>',
      purpose: 'settlement',
      reference: 'SEPA-2026-12-07',
    },
  },
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
  });

export const FORWARD_ANSWER_EXAMPLES: Examples = {
  authorized: {
    summary: 'Authorized; the card number the processor echoed is masked',
    value: {
      status: 201,
      headers: { 'content-type': 'application/json', date: 'Mon, 07 Dec 2026 09:41:31 GMT', 'request-id': 'req_8f2a61c0d4' },
      body: '{"id":"pay_8f2a61c0d4","status":"authorized","authorizationCode":"A1B2C3","card":{"number":"************1111","brand":"visa"}}',
      masked: 1,
      accessLogIndex: 1061,
      resultLogIndex: 1062,
      durationMs: 87,
    },
  },
  declined: {
    summary: 'Declined by the processor (its 402 is passed on as status, the forward itself succeeded)',
    value: {
      status: 402,
      headers: { 'content-type': 'application/json', date: 'Mon, 07 Dec 2026 09:42:05 GMT' },
      body: '{"status":"declined","declineCode":"insufficient_funds"}',
      masked: 0,
      accessLogIndex: 1063,
      resultLogIndex: 1064,
      durationMs: 112,
    },
  },
};

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

export const forwardsSchema = z.object({ forwards: z.array(forwardViewSchema) });

export const FORWARDS_EXAMPLES: Examples = {
  list: {
    summary: 'One completed forward',
    value: {
      forwards: [
        {
          accessLogIndex: 1061,
          time: '2026-12-07T09:41:31.204Z',
          principal: { role: 'checkout', name: 'checkout', certificateFingerprint: EXAMPLE.checkoutFingerprint },
          outcome: 'granted',
          reason: null,
          destination: 'payments',
          method: 'POST',
          path: '/v1/payments',
          purpose: 'authorize',
          reference: 'INV-2026-0042',
          templateSha256: Buffer.from(exampleBytes('template json'), 'base64').toString('hex'),
          result: { logIndex: 1062, outcome: 'completed', status: 201, durationMs: 87, masked: 1, error: null },
        },
      ],
    },
  },
};
