/**
 * One declarative place per route: method, URL, who may call it, the zod schemas of its path
 * and query parameters, request body and responses, and the error codes it may answer. The
 * route is registered from this spec (`defineRoute`) and `openapi.ts` generates the OpenAPI
 * document from the same specs, so a route cannot be registered undocumented by accident
 * (test/openapi.test.ts walks every route Fastify registered).
 *
 * Contract: a spec only documents. Request bodies are still validated by the services (the
 * sensitive-data check runs before any schema, and every error keeps the one error shape of
 * `errors.ts`); Fastify's own schema validation and serialisation are not used.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import type { z } from 'zod';
import type { ErrorCode } from '../errors.js';

type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/**
 * Named examples (OpenAPI Example Objects), shown in /docs. Each MUST validate against the
 * schema it illustrates (test/openapi-examples.test.ts checks every one).
 */
export type Examples = Readonly<Record<string, { summary: string; value: unknown }>>;

interface ResponseSpec {
  description: string;
  /** Body schema (JSON unless `contentType` says otherwise). */
  schema?: z.ZodType;
  /** Name under components.schemas (reused when several routes answer the same shape). */
  name?: string;
  contentType?: string;
  headers?: Record<string, { description: string; schema: Record<string, unknown> }>;
  /** Realistic answers (required for every JSON or text body; test/openapi-examples.test.ts). */
  examples?: Examples;
}

export interface RouteSpec {
  method: HttpMethod;
  /** Fastify pattern, e.g. `/v1/transactions/:transactionId`. */
  url: string;
  operationId: string;
  summary: string;
  description?: string;
  tag: string;
  /** `mtls`: a paylog client certificate is required (every /v1 route); `public`: none. */
  access: 'mtls' | 'public';
  /** Who may call it, in words (the authorization matrix in SECURITY.md is the rule). */
  who?: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  /** Request headers the route reads (documented as header parameters). */
  headers?: z.ZodObject;
  /**
   * Examples of path, query and header parameters by name, where the shared ones
   * (`PARAMETER_EXAMPLES` in examples.ts) do not fit.
   */
  parameterExamples?: Readonly<Record<string, unknown>>;
  body?: {
    schema: z.ZodType;
    name?: string;
    description?: string;
    /** Named alternatives (documented as `oneOf` of components); `schema` is then their union. */
    oneOf?: ReadonlyArray<{ name: string; schema: z.ZodType }>;
    /** Words for each field, by dotted path (`*` = any key): the same texts the errors use. */
    fieldDescriptions?: Readonly<Record<string, string>>;
    /** Realistic request bodies (required; test/openapi-examples.test.ts). */
    examples?: Examples;
  };
  /** Success responses by status. */
  responses: Partial<Record<number, ResponseSpec>>;
  /**
   * Error codes this route itself may answer. The generator adds the ones every route of its
   * kind can answer (no/revoked certificate, malformed/too large/non-JSON body, INTERNAL).
   */
  errors: readonly ErrorCode[];
  /**
   * The message (and details) this route answers a code with, where it differs from the
   * catalog's example (`ERROR_CATALOG` in error-catalog.ts), e.g. NOT_FOUND "no such destination".
   */
  errorExamples?: Partial<Record<ErrorCode, { message: string; details?: Record<string, unknown> }>>;
  /**
   * `at-commit`: authentication does not query the revocation list for this route; its handler
   * MUST pass the decision to its service (see `deferredRevocation` in request-context.ts), which checks
   * it at commit, under the append lock, or by a query for any answer that commits nothing, or
   * (a forward) by a query run beside its first reads and decided before anything commits or leaves.
   * Errors raised before the handler runs are checked by the error handler.
   */
  revocation?: 'at-commit';
}

/** Key under Fastify's route `config` where the spec travels (read back by the onRoute hook). */
const ROUTE_SPEC_CONFIG_KEY = 'paylogRouteSpec';

/** The spec a route was defined with (its Fastify `config`), if it was defined by defineRoute. */
export function routeSpecOf(config: unknown): RouteSpec | undefined {
  return (config as Record<string, unknown> | undefined)?.[ROUTE_SPEC_CONFIG_KEY] as RouteSpec | undefined;
}

type Handler = (req: FastifyRequest<any>, reply: FastifyReply) => unknown;

/** Registers `handler` for `spec.method spec.url` and attaches the spec for the generator. */
export function defineRoute(app: FastifyInstance, spec: RouteSpec, handler: Handler, extra: Partial<RouteOptions> = {}): void {
  app.route({
    ...extra,
    method: spec.method,
    url: spec.url,
    config: { ...((extra.config as object) ?? {}), [ROUTE_SPEC_CONFIG_KEY]: spec } as RouteOptions['config'],
    handler: handler as RouteOptions['handler'],
  });
}

/** A route as Fastify registered it, with its spec when it has one. */
export interface RegisteredRoute {
  method: string;
  url: string;
  spec?: RouteSpec;
}

/**
 * Collects every route registered on `app` from now on (Fastify's onRoute hook, inherited by
 * plugins). Call before any route is added.
 */
export function collectRoutes(app: FastifyInstance): RegisteredRoute[] {
  const routes: RegisteredRoute[] = [];
  app.addHook('onRoute', (r) => {
    const spec = routeSpecOf(r.config);
    for (const method of Array.isArray(r.method) ? r.method : [r.method]) {
      routes.push({ method: String(method).toUpperCase(), url: r.url, ...(spec ? { spec } : {}) });
    }
  });
  return routes;
}
