/** Operational routes without client certificates and without card data. */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Metrics } from '../../metrics.js';
import { buildOpenApi } from '../openapi.js';
import { defineRoute, type RegisteredRoute } from '../route-spec.js';
import { healthSchema, readinessSchema, textSchema } from '../schemas.js';
import { DOCS_ASSETS, DOCS_CSP, DOCS_HTML, DOCS_INIT_JS, docsAsset } from '../docs.js';
import { PaylogError } from '../../errors.js';
import { READINESS_CACHE_MS } from '../../readiness.js';
import * as ex from '../examples-log.js';

export function registerOpsRoutes(
  app: FastifyInstance,
  deps: { metrics: Metrics; readiness: () => Promise<{ ok: boolean; checks: Record<string, boolean>; details?: Record<string, unknown> }>; routes: readonly RegisteredRoute[] },
): void {
  const ops = { tag: 'operations', access: 'public', errors: [] } as const;
  defineRoute(
    app,
    { ...ops, method: 'GET', url: '/healthz', operationId: 'healthz', summary: 'Liveness: the process answers', responses: { 200: { description: 'Alive', schema: healthSchema, examples: ex.HEALTH_EXAMPLES } } },
    async () => ({ status: 'ok' }),
  );
  defineRoute(
    app,
    {
      ...ops,
      method: 'GET',
      url: '/readyz',
      operationId: 'readyz',
      summary: `Readiness: the database answers and the KMS data key is enabled (the answer is cached ${READINESS_CACHE_MS / 1000} s)`,
      responses: {
        200: { description: 'Ready', schema: readinessSchema, name: 'Readiness', examples: ex.READY_EXAMPLES },
        503: { description: 'Not ready (checks and details say which part)', schema: readinessSchema, name: 'Readiness', examples: ex.NOT_READY_EXAMPLES },
      },
    },
    async (_req, reply) => {
      const r = await deps.readiness();
      return reply.status(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not ready', checks: r.checks, ...(r.details ? { details: r.details } : {}) });
    },
  );
  defineRoute(
    app,
    {
      ...ops,
      method: 'GET',
      url: '/metrics',
      operationId: 'metrics',
      summary: 'Prometheus metrics (text exposition format); see docs/operations.md',
      responses: { 200: { description: 'Metrics', schema: textSchema, contentType: 'text/plain', examples: ex.METRICS_EXAMPLES } },
    },
    async (_req, reply) => reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics()),
  );
  // Generated on first request, when every route (plugins included) has been registered.
  let openapi: Record<string, unknown> | undefined;
  defineRoute(
    app,
    {
      ...ops,
      method: 'GET',
      url: '/openapi.json',
      operationId: 'openapi',
      summary: 'This OpenAPI 3.1 document',
      responses: { 200: { description: 'The document', schema: z.record(z.string(), z.unknown()), examples: ex.OPENAPI_EXAMPLES } },
    },
    async () => (openapi ??= buildOpenApi(deps.routes)),
  );
  defineRoute(
    app,
    {
      ...ops,
      method: 'GET',
      url: '/docs',
      operationId: 'docs',
      summary: 'Interactive API reference (Swagger UI served by paylog; nothing loaded from elsewhere)',
      responses: { 200: { description: 'HTML page', schema: textSchema, contentType: 'text/html', examples: ex.DOCS_EXAMPLES } },
    },
    async (_req, reply) => reply.type('text/html; charset=utf-8').header('content-security-policy', DOCS_CSP).send(DOCS_HTML),
  );
  defineRoute(
    app,
    {
      ...ops,
      method: 'GET',
      url: '/docs/:asset',
      operationId: 'docsAsset',
      summary: 'Assets of the API reference page',
      params: z.object({ asset: z.enum(['init.js', ...Object.keys(DOCS_ASSETS)]) }),
      responses: { 200: { description: 'The asset', schema: textSchema, contentType: 'application/octet-stream' } },
      errors: ['NOT_FOUND'],
      errorExamples: { NOT_FOUND: { message: 'no such asset' } },
    },
    async (req, reply) => {
      const name = (req.params as { asset: string }).asset;
      if (name === 'init.js') return reply.type('text/javascript; charset=utf-8').send(DOCS_INIT_JS);
      const a = docsAsset(name);
      if (!a) throw new PaylogError('NOT_FOUND', 'no such asset');
      return reply.type(a.type).header('cache-control', 'public, max-age=86400').send(a.body);
    },
  );
}
