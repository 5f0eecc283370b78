/** Operational routes without client certificates and without card data. */
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.js';
import { buildOpenApi } from '../openapi.js';

export function registerOpsRoutes(
  app: FastifyInstance,
  deps: { metrics: Metrics; readiness: () => Promise<{ ok: boolean; checks: Record<string, boolean>; details?: Record<string, unknown> }> },
): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = await deps.readiness();
    return reply.status(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not ready', checks: r.checks, ...(r.details ? { details: r.details } : {}) });
  });
  app.get('/metrics', async (_req, reply) => {
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  const openapi = buildOpenApi();
  app.get('/openapi.json', async () => openapi);
}
