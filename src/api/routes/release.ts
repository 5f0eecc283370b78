/** Routes: release, accesses, and admin (processors, revocations). */
import type { FastifyInstance } from 'fastify';
import { releaseRequestSchema, type ReleaseService } from '../../services/release.js';
import { processorUpdateSchema, revocationRequestSchema, type AdminService } from '../../services/admin.js';
import { requirePrincipal } from '../server.js';
import { parseIndexParam } from '../../services/log-read.js';
import { defineRoute } from '../route-spec.js';
import {
  accessesQuery,
  accessesSchema,
  processorNameParams,
  processorsSchema,
  processorUpdateResultSchema,
  releaseResultSchema,
  revocationResultSchema,
  transactionIdParams,
} from '../schemas.js';
import { decodeUtf8Strict } from '../../validation/encoding.js';

type Query = Record<string, string | string[] | undefined>;
type IdParams = { transactionId: string };

/** Window of the per-certificate release limit (PAYLOG_RELEASE_RATE_PER_MINUTE per window). */
export const RELEASE_RATE_WINDOW_MS = 60_000;

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
          'Every attempt, granted or refused, is an access entry in the log, committed before the answer. If it cannot be committed: 503 and no plaintext. Rate-limited per certificate (429 with Retry-After, not logged). The body is parsed by the service whatever its content type, so a malformed body is a logged refusal (422).',
        params: transactionIdParams,
        body: { schema: releaseRequestSchema, name: 'ReleaseRequest' },
        responses: { 200: { description: 'The plaintext payment method', schema: releaseResultSchema, name: 'ReleaseResult' } },
        errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'RATE_LIMITED', 'INTEGRITY_FAILURE', 'LOG_UNAVAILABLE', 'KMS_UNAVAILABLE'],
      },
      async (req) => {
        const params = req.params as IdParams;
        return await deps.release.release(requirePrincipal(req), params.transactionId, req.body ?? '', req.ip);
      },
      // Refused before the handler: a flood cannot grow the log (counted as 429 in metrics).
      { config: { rateLimit: { max: deps.releaseRatePerMinute, timeWindow: RELEASE_RATE_WINDOW_MS } } },
    );
  });
  defineRoute(
    app,
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
      responses: { 200: { description: 'One page of access entries', schema: accessesSchema, name: 'Accesses' } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'NOT_FOUND', 'LOG_UNAVAILABLE'],
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
}

export function registerAdminRoutes(app: FastifyInstance, deps: { admin: AdminService }): void {
  defineRoute(
    app,
    {
      method: 'POST',
      url: '/v1/admin/revocations',
      operationId: 'revokeCertificate',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Revoke a client certificate by SHA-256 fingerprint and/or serial; effective on the next request',
      body: { schema: revocationRequestSchema, name: 'RevocationRequest' },
      responses: { 201: { description: 'Revoked', schema: revocationResultSchema } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req, reply) => reply.status(201).send({ revoked: await deps.admin.revoke(requirePrincipal(req), req.body, req.ip) }),
  );
  defineRoute(
    app,
    {
      method: 'GET',
      url: '/v1/admin/processors',
      operationId: 'listProcessors',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Registered processors',
      responses: { 200: { description: 'All processors, by name', schema: processorsSchema } },
      errors: ['FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req) => ({ processors: await deps.admin.listProcessors(requirePrincipal(req)) }),
  );
  defineRoute(
    app,
    {
      method: 'PUT',
      url: '/v1/admin/processors/:name',
      operationId: 'setProcessor',
      tag: 'admin',
      access: 'mtls',
      who: 'admin',
      summary: 'Register, disable or re-enable a processor',
      description: 'A processor certificate is accepted only while its processor is registered and active.',
      params: processorNameParams,
      body: { schema: processorUpdateSchema, name: 'ProcessorUpdate' },
      responses: { 200: { description: 'Updated', schema: processorUpdateResultSchema } },
      errors: ['VALIDATION_FAILED', 'FORBIDDEN', 'LOG_UNAVAILABLE'],
    },
    async (req) => await deps.admin.setProcessor(requirePrincipal(req), (req.params as { name: string }).name, req.body, req.ip),
  );
}
