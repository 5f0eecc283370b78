/** Routes: forwards to the processor (issue 18) and the destinations admins register for them. */
import type { FastifyInstance } from 'fastify';
import type { ForwardService } from '../../services/forward/forward.js';
import type { ForwardHistory } from '../../services/forward/history.js';
import { destinationRequestSchema, type DestinationService } from '../../services/forward/destinations.js';
import { forwardRequestSchema } from '../../services/forward/request.js';
import { deferredRevocation, requirePrincipal } from '../request-context.js';
import { defineRoute } from '../route-spec.js';
import { processorNameParams, transactionIdParams } from '../schemas.js';
import {
  DESTINATION_EXAMPLES,
  DESTINATION_REMOVED_EXAMPLES,
  DESTINATION_REQUEST_EXAMPLES,
  DESTINATIONS_EXAMPLES,
  destinationParams,
  destinationRemovedSchema,
  destinationsSchema,
  destinationViewSchema,
  FORWARD_ANSWER_EXAMPLES,
  FORWARD_REQUEST_EXAMPLES,
  FORWARDS_EXAMPLES,
  forwardAnswerSchema,
  forwardHeaders,
  forwardsSchema,
} from '../forward-schemas.js';

type IdParams = { transactionId: string };
type DestParams = { name: string; destination: string };

export function registerForwardRoutes(app: FastifyInstance, deps: { forward: ForwardService; history: ForwardHistory; destinations: DestinationService }): void {
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/transactions/:transactionId/forward',
      operationId: 'forwardToProcessor',
      tag: 'forward',
      access: 'mtls',
      who: 'checkout',
      // Decided by the service beside its first reads, before anything is logged or sent.
      revocation: 'at-commit',
      summary: "Fill a request template with the transaction's card data and send it to a destination of its processor",
      description:
        'Header `Idempotency-Key` (required). The template (`body`) is JSON, form-urlencoded or XML as the `content-type` entry of `headers` says; placeholders ({{card.number}}, {{card.cvc}}, {{card.expiryMonth}}, {{card.expiryYear}}, {{card.expiryYear2}}, {{card.holderName}}, {{bank.accountNumber}}, {{bank.routingNumber}}, {{bank.accountType}}, {{iban.iban}}, {{iban.bic}}, {{amount.value}}, {{amount.currency}}, {{transactionId}}) stand only in values and are encoded for their position. Method, path and headers are literal. The access entry is committed before anything is sent; the result entry after. A retry with the same key and request returns the recorded answer and sends nothing.',
      params: transactionIdParams,
      headers: forwardHeaders,
      body: { schema: forwardRequestSchema, name: 'ForwardRequest', examples: FORWARD_REQUEST_EXAMPLES },
      responses: { 200: { description: "The destination's answer, masked", schema: forwardAnswerSchema, name: 'ForwardAnswer', examples: FORWARD_ANSWER_EXAMPLES } },
      errors: [
        'VALIDATION_FAILED',
        'TEMPLATE_INVALID',
        'FORBIDDEN',
        'NOT_FOUND',
        'DESTINATION_NOT_ALLOWED',
        'CVC_NOT_AVAILABLE',
        'IDEMPOTENCY_CONFLICT',
        'FORWARD_IN_PROGRESS',
        'FORWARD_OUTCOME_UNKNOWN',
        'DATA_SHREDDED',
        'DESTINATION_UNREACHABLE',
        'DESTINATION_TIMEOUT',
        'DESTINATION_TLS_FAILED',
        'DESTINATION_RESPONSE_TOO_LARGE',
        'DESTINATION_RESPONSE_UNREADABLE',
        'LOG_UNAVAILABLE',
        'KMS_UNAVAILABLE',
        'INTEGRITY_FAILURE',
      ],
      errorExamples: {
        VALIDATION_FAILED: {
          message: 'a forward needs an Idempotency-Key header of 1-255 visible ASCII characters (no card number)',
          details: { issues: [{ path: 'Idempotency-Key', code: 'invalid_value', message: 'required' }] },
        },
        NOT_FOUND: { message: 'no such transaction' },
        IDEMPOTENCY_CONFLICT: { message: 'this Idempotency-Key was used for a different forward request' },
        INTEGRITY_FAILURE: { message: 'the stored record failed its integrity checks; nothing was sent' },
        LOG_UNAVAILABLE: { message: 'the forward could not be logged durably; nothing was sent' },
      },
    },
    async (req) => {
      const principal = requirePrincipal(req);
      return await deferredRevocation(req, (revocation) => deps.forward.forward(principal, (req.params as IdParams).transactionId, req.body, req.headers['idempotency-key'], req.ip, revocation));
    },
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/transactions/:transactionId/forwards',
      operationId: 'listForwards',
      tag: 'forward',
      access: 'mtls',
      who: 'checkout, auditor',
      summary: 'Forwards of a transaction, from the log: each access entry with its result entry',
      params: transactionIdParams,
      responses: { 200: { description: 'The forwards, in log order', schema: forwardsSchema, name: 'Forwards', examples: FORWARDS_EXAMPLES } },
      errors: ['FORBIDDEN', 'NOT_FOUND', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.history.list(requirePrincipal(req), (req.params as IdParams).transactionId),
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/admin/processors/:name/destinations',
      operationId: 'listDestinations',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: "A processor's forward destinations (no key material)",
      params: processorNameParams,
      responses: { 200: { description: 'By name', schema: destinationsSchema, name: 'Destinations', examples: DESTINATIONS_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.destinations.list(requirePrincipal(req), (req.params as { name: string }).name),
  );
  defineRoute(
    app,
    {
      method: 'PUT',
      url: '/v1/admin/processors/:name/destinations/:destination',
      operationId: 'putDestination',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: "Register or replace one of a processor's forward destinations",
      description:
        'An admin_event entry (with the SHA-256 of the configuration) is committed before the destination takes effect; a stored destination is used only while it matches that entry. The client key is stored KMS-wrapped only and never served.',
      params: destinationParams,
      body: { schema: destinationRequestSchema, name: 'DestinationRequest', examples: DESTINATION_REQUEST_EXAMPLES },
      responses: { 200: { description: 'Registered', schema: destinationViewSchema, name: 'Destination', examples: DESTINATION_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'UNKNOWN_PROCESSOR', 'FORBIDDEN', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
      errorExamples: {
        VALIDATION_FAILED: {
          message: 'url must be https://host[:port][/base], without credentials, query or fragment',
          details: { issues: [{ path: 'url', code: 'invalid_value', message: 'url must be https://host[:port][/base], without credentials, query or fragment' }] },
        },
        UNKNOWN_PROCESSOR: { message: 'no such processor: register it first (PUT /v1/admin/processors/{name})' },
      },
    },
    async (req) => {
      const p = req.params as DestParams;
      return await deps.destinations.put(requirePrincipal(req), p.name, p.destination, req.body, req.ip);
    },
  );
  defineRoute(
    app,
    {
      method: 'DELETE',
      url: '/v1/admin/processors/:name/destinations/:destination',
      operationId: 'deleteDestination',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Remove a forward destination (its admin_event entry is committed first)',
      params: destinationParams,
      responses: { 200: { description: 'Removed', schema: destinationRemovedSchema, examples: DESTINATION_REMOVED_EXAMPLES } },
      errors: ['VALIDATION_FAILED', 'NOT_FOUND', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
      errorExamples: { NOT_FOUND: { message: 'no such destination' } },
    },
    async (req) => {
      const p = req.params as DestParams;
      return await deps.destinations.remove(requirePrincipal(req), p.name, p.destination, req.ip);
    },
  );
}
