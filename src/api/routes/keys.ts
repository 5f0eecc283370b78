/** Admin routes of the key lifecycle (issue 9): status, rotate, rewrap, retention, shred. */
import type { FastifyInstance } from 'fastify';
import type { KeyLifecycleService } from '../../services/key-lifecycle.js';
import { requirePrincipal } from '../server.js';

export function registerKeyRoutes(app: FastifyInstance, deps: { keys: KeyLifecycleService }): void {
  app.get('/v1/admin/keys', async (req) => await deps.keys.status(requirePrincipal(req)));
  app.post('/v1/admin/keys/rotate', async (req) => await deps.keys.rotate(requirePrincipal(req), req.body));
  app.post('/v1/admin/keys/rewrap', async (req) => await deps.keys.rewrapBatch(requirePrincipal(req), req.body));
  app.post('/v1/admin/retention/apply', async (req) => await deps.keys.applyRetention(requirePrincipal(req), req.body));
  app.post<{ Params: { transactionId: string } }>('/v1/admin/transactions/:transactionId/shred', async (req) => {
    return await deps.keys.shredTransaction(requirePrincipal(req), req.params.transactionId, req.body);
  });
}
