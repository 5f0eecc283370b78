/**
 * What a request carries once the server's hooks have run (principal, deadline, the open
 * revocation decision), and the helpers routes use to read it.
 *
 * Contract: this module owns the Fastify request/instance augmentation and the per-request
 * helpers. It MUST NOT import the server or any route (routes and server both import it, so the
 * import graph has no circle); it never authenticates — src/api/server.ts sets `principal`.
 */
import type { FastifyRequest } from 'fastify';
import { PaylogError } from '../errors.js';
import type { Principal } from '../auth/principal.js';
import type { RegisteredRoute } from './route-spec.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
    /** performance.now() by which the request must be answered (request budget). */
    deadline: number;
    /**
     * The principal's revocation is not decided yet (a route with `revocation: 'at-commit'`):
     * its handler hands it to the service, and until then the error handler checks it.
     */
    revocationPending: boolean;
    /**
     * The JSON body text held no `\u` escape: its strings, decoded from strict UTF-8, cannot hold
     * NUL or a lone surrogate (only an escape can put one into a parsed string), so the
     * body's string walk is skipped. Set by the JSON parser only.
     */
    bodyEscapeFree: boolean;
  }
  interface FastifyInstance {
    /** Every route Fastify registered, with its spec (the OpenAPI document is built from these). */
    paylogRoutes: RegisteredRoute[];
  }
}

/** `principal` (role, name, certificate fingerprint) for a request's log lines, once authenticated. */
export function principalLogFields(req: FastifyRequest): { principal?: { role: string; name: string; certificateFingerprint: string } } {
  const p = req.principal;
  return p ? { principal: { role: p.role, name: p.name, certificateFingerprint: p.certificateFingerprint } } : {};
}

/** The authenticated principal of a `/v1` request (set by the onRequest hook). */
export function requirePrincipal(req: FastifyRequest): Principal {
  if (!req.principal) throw new PaylogError('CLIENT_CERTIFICATE_REQUIRED', 'a client certificate is required');
  return req.principal;
}


/**
 * For a route with `revocation: 'at-commit'`: runs `f` with how the service must treat the
 * principal's revocation — `at-commit` when authentication left it open — and marks it decided
 * once `f` has answered or thrown (the service has then checked it either way).
 */
export async function deferredRevocation<T>(req: FastifyRequest, f: (revocation: 'at-commit' | 'checked') => Promise<T>): Promise<T> {
  const mode = req.revocationPending ? 'at-commit' : 'checked';
  try {
    return await f(mode);
  } finally {
    req.revocationPending = false;
  }
}

