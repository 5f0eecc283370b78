/** Routes: release and accesses (who released a record, when). */
import type { FastifyInstance } from 'fastify';
import { RELEASE_PURPOSES, releaseRequestSchema, type ReleaseService } from '../../services/release.js';
import { requirePrincipal } from '../request-context.js';
import { parseIndexParam } from '../../services/log-read.js';
import { defineRoute } from '../route-spec.js';
import {
  accessesQuery,
  accessesSchema,
  releaseResultSchema,
  transactionIdParams,
} from '../schemas.js';
import { decodeUtf8Strict } from '../../validation/encoding.js';
import { ACCESSES_EXAMPLES, RELEASE_REQUEST_EXAMPLES, RELEASE_RESULT_EXAMPLES } from '../examples.js';

type Query = Record<string, string | string[] | undefined>;
type IdParams = { transactionId: string };

/** Window of the per-certificate release limit (PAYLOG_RELEASE_RATE_PER_MINUTE per window). */
const RELEASE_RATE_WINDOW_MS = 60_000;

export function registerReleaseRoutes(app: FastifyInstance, deps: { release: ReleaseService; releaseRatePerMinute: number }): void {
  // The release route takes its body as text, whatever the content type, and the service parses
  // it: a malformed body is then a refused attempt that is logged like any other.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => {
      let text: string;
      try {
        text = decodeUtf8Strict(body as Buffer, 'request body'); // INVALID_ENCODING, before anything else
      } catch (e) {
        done(e as Error, undefined);
        return;
      }
      // JSON is parsed here so that the server's encoding check sees escaped NULs and lone
      // surrogates; text that is not JSON goes to the service as it is (a refused, logged attempt).
      try {
        done(null, JSON.parse(text) as unknown);
      } catch {
        done(null, text);
      }
    });
    defineRoute(
      scope,
      {
        method: 'POST',
        url: '/v1/transactions/:transactionId/release',
        operationId: 'releasePaymentMethod',
        tag: 'release',
        access: 'mtls',
        who: 'the processor the transaction is assigned to',
        summary: 'Release the plaintext payment method; the access entry is committed first',
        description:
          'Every attempt, granted or refused, is an access entry in the log, committed before the answer. If it cannot be committed: 503 and no plaintext. Rate-limited per certificate (429 with Retry-After, not logged). The body is parsed by the service whatever its content type, so a malformed body is a logged refusal (422). A granted release with purpose `authorize` of a card also takes the card security code held for the transaction, if any (`paymentMethod.cvc`, once: the next one answers without it; held at most PAYLOG_CVC_TTL).',
        params: transactionIdParams,
        body: { schema: releaseRequestSchema, name: 'ReleaseRequest', examples: RELEASE_REQUEST_EXAMPLES },
        responses: { 200: { description: 'The plaintext payment method', schema: releaseResultSchema, name: 'ReleaseResult', examples: RELEASE_RESULT_EXAMPLES } },
        errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'INTEGRITY_FAILURE', 'DATA_SHREDDED', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
        errorExamples: {
          VALIDATION_FAILED: { message: 'release body must be { "purpose": one of ' + RELEASE_PURPOSES.join('|') + ', "reference"?: short text }' },
          LOG_UNAVAILABLE: { message: 'the access could not be logged durably; nothing was released' },
        },
      },
      async (req) => {
        const params = req.params as IdParams;
        return await deps.release.release(requirePrincipal(req), params.transactionId, req.body ?? '', req.ip);
      },
      // Refused before the handler: a flood cannot grow the log (counted as 429 in metrics).
      { config: { rateLimit: { max: deps.releaseRatePerMinute, timeWindow: RELEASE_RATE_WINDOW_MS } } },
    );
  });
  // In a plugin of its own so that it registers after the release route above (plugins load in
  // order): the OpenAPI document lists a release before the accesses that record it.
  void app.register(async (scope) => {
    defineRoute(
      scope,
      {
        method: 'GET',
        url: '/v1/transactions/:transactionId/accesses',
        operationId: 'listAccesses',
        tag: 'release',
        access: 'mtls',
        who: 'auditor; the assigned processor for its own transactions',
        summary: 'Access entries of a transaction, in log order, paged',
        params: transactionIdParams,
        query: accessesQuery,
        responses: { 200: { description: 'One page of access entries', schema: accessesSchema, name: 'Accesses', examples: ACCESSES_EXAMPLES } },
        errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'LOG_UNAVAILABLE'],
        errorExamples: { VALIDATION_FAILED: { message: 'query parameter limit must be a non-negative decimal integer' } },
      },
      async (req) => {
        const query = req.query as Query;
        const after = parseIndexParam('after', query.after);
        const limit = parseIndexParam('limit', query.limit);
        return await deps.release.accesses(requirePrincipal(req), (req.params as IdParams).transactionId, {
          ...(after !== undefined ? { after } : {}),
          ...(limit !== undefined ? { limit: Math.max(1, limit) } : {}),
        });
      },
    );
  });
}
