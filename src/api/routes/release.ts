/** Routes: release, accesses, and admin (processors, revocations). */
import type { FastifyInstance } from 'fastify';
import type { ReleaseService } from '../../services/release.js';
import type { AdminService } from '../../services/admin.js';
import { requirePrincipal } from '../server.js';
import { parseIndexParam } from '../../services/log-read.js';
import { decodeUtf8Strict } from '../../validation/encoding.js';

type IdParams = { Params: { transactionId: string } };

export function registerReleaseRoutes(app: FastifyInstance, deps: { release: ReleaseService }): void {
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
    scope.post<IdParams>('/v1/transactions/:transactionId/release', async (req) => {
      return await deps.release.release(requirePrincipal(req), req.params.transactionId, req.body ?? '', req.ip);
    });
  });
  app.get<IdParams & { Querystring: Record<string, string | string[] | undefined> }>('/v1/transactions/:transactionId/accesses', async (req) => {
    const after = parseIndexParam('after', req.query.after);
    const limit = parseIndexParam('limit', req.query.limit);
    return await deps.release.accesses(requirePrincipal(req), req.params.transactionId, {
      ...(after !== undefined ? { after } : {}),
      ...(limit !== undefined ? { limit: Math.max(1, limit) } : {}),
    });
  });
}

export function registerAdminRoutes(app: FastifyInstance, deps: { admin: AdminService }): void {
  app.post('/v1/admin/revocations', async (req, reply) => {
    return reply.status(201).send({ revoked: await deps.admin.revoke(requirePrincipal(req), req.body, req.ip) });
  });
  app.get('/v1/admin/processors', async (req) => ({ processors: await deps.admin.listProcessors(requirePrincipal(req)) }));
  app.put<{ Params: { name: string } }>('/v1/admin/processors/:name', async (req) => {
    return await deps.admin.setProcessor(requirePrincipal(req), req.params.name, req.body, req.ip);
  });
}
