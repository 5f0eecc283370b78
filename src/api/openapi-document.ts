/**
 * The OpenAPI document without a running service: the route table registered on a bare Fastify
 * instance with inert dependencies (the handlers are registered, never called). For
 * `npm run docs:errors` (scripts/gen-errors-doc.ts) and the tests that compare the committed
 * docs with what the routes declare; the served `/openapi.json` is built from the same specs.
 */
import Fastify from 'fastify';
import { buildOpenApi } from './openapi.js';
import { collectRoutes, type RegisteredRoute } from './route-spec.js';
import { registerRoutes, type RouteDeps } from './routes/index.js';

/** Every dependency undefined (never used: nothing is served), a number where registration reads one. */
const INERT_DEPS = new Proxy({} as RouteDeps, { get: (_target, key) => (key === 'releaseRatePerMinute' ? 1 : undefined) });

/** The routes of the route table, each with its spec, as a running service registers them. */
export async function documentedRoutes(): Promise<RegisteredRoute[]> {
  const app = Fastify({ logger: false });
  const routes = collectRoutes(app);
  app.decorate('paylogRoutes', routes);
  registerRoutes(app, INERT_DEPS);
  await app.ready();
  await app.close();
  return routes;
}

/** The document `/openapi.json` serves, built without a service. */
export async function openApiDocument(): Promise<Record<string, unknown>> {
  return buildOpenApi(await documentedRoutes());
}
