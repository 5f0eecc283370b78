/**
 * The HTTPS server (Fastify) with client-certificate authentication on every `/v1` route.
 * Routes only translate HTTP to service calls; errors are mapped in `./errors.ts`.
 */
import type { TLSSocket } from 'node:tls';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { PaylogError } from '../errors.js';
import { principalFromSocket, type Principal } from '../auth/principal.js';
import type { Metrics } from '../metrics.js';
import { errorResponse, toPaylogError } from './errors.js';
import { registerTransactionRoutes } from './routes/transactions.js';
import { registerOpsRoutes } from './routes/ops.js';
import type { TransactionService } from '../services/transactions.js';
import { DEFAULT_BODY_LIMIT_BYTES } from '../config.js';
import { assertStorableRequestTarget, assertStorableStrings, decodeUtf8Strict } from '../validation/encoding.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/**
 * Request log lines name the route pattern, never the URL: a path or query string can carry
 * whatever a client typed, including a card number (PCI DSS 3.5.1 / 10.3).
 */
class RedactingLogController extends LogController {
  private static fields(request: FastifyRequest) {
    return { method: request.method, route: request.routeOptions.url ?? 'unmatched', remoteAddress: request.ip };
  }
  override incomingRequest(request: FastifyRequest): void {
    request.log.info({ req: RedactingLogController.fields(request) }, 'incoming request');
  }
  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    const res = { statusCode: reply.statusCode };
    if (error) reply.log.error({ res, err: { type: error.name } }, 'request errored');
    else reply.log.info({ res, responseTime: reply.elapsedTime }, 'request completed');
  }
  override defaultErrorLog(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    reply.log.info({ req: RedactingLogController.fields(request), res: { statusCode: reply.statusCode }, err: { type: error?.name } }, 'request failed');
  }
  override routeNotFound(request: FastifyRequest): void {
    request.log.info({ req: { method: request.method } }, 'route not found');
  }
  override writeHeadError(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.warn({ err: { type: error?.name } }, 'response header write failed');
  }
}

export interface RevocationCheck {
  isRevoked(certificateFingerprint: string, serialHex?: string): Promise<boolean>;
}

export interface ServerDeps {
  tls: { key: string; cert: string; ca: string };
  logger: Logger;
  metrics: Metrics;
  transactions: TransactionService;
  revocations: RevocationCheck;
  readiness: () => Promise<{ ok: boolean; checks: Record<string, boolean> }>;
  bodyLimit?: number;
  /** Extra route modules (release, log, admin), registered after authentication. */
  extraRoutes?: Array<(app: FastifyInstance) => void>;
}

/** The authenticated principal of a `/v1` request (set by the onRequest hook). */
export function requirePrincipal(req: FastifyRequest): Principal {
  if (!req.principal) throw new PaylogError('CLIENT_CERTIFICATE_REQUIRED', 'a client certificate is required');
  return req.principal;
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // TLS 1.3 only: modern suites, and no renegotiation, so a connection's client certificate
    // cannot change under it (the principal is cached per connection).
    https: { key: deps.tls.key, cert: deps.tls.cert, ca: deps.tls.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES,
    return503OnClosing: true,
    logController: new RedactingLogController(),
    forceCloseConnections: 'idle',
    // Router refusals (a path that does not percent-decode to UTF-8, a parameter over the router's
    // length limit) in our error format; Fastify's default answer would echo the path, which can
    // hold anything a client typed, including a card number.
    frameworkErrors: (error: { code?: string }, req: FastifyRequest, reply: FastifyReply) => {
      const pe =
        error.code === 'FST_ERR_BAD_URL'
          ? new PaylogError('INVALID_ENCODING', 'request URL must be UTF-8 text without NUL characters or lone surrogates', { where: 'request URL' })
          : new PaylogError('BAD_REQUEST', 'malformed request URL');
      req.log.info({ code: pe.code }, 'request refused');
      const { status, body } = errorResponse(pe);
      void reply.status(status).header('cache-control', 'no-store').send(body);
    },
    // Requests the HTTP parser refuses (bytes after a body without a length, bad header bytes,
    // oversized headers): answered in our error format; the connection cannot be reused.
    clientErrorHandler: (err: Error & { code?: string }, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) return;
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
      const body = JSON.stringify(errorResponse(new PaylogError('BAD_REQUEST', timeout ? 'request not received in time' : 'malformed HTTP request')).body);
      socket.end(
        `HTTP/1.1 ${timeout ? '408 Request Timeout' : '400 Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    },
  }) as unknown as FastifyInstance;
  app.decorateRequest('principal', null);
  // JSON only: a text/plain body must be 415, not parsed as a string.
  app.removeContentTypeParser('text/plain');

  // Authentication: verified client certificate for every /v1 route; revocation checked live.
  app.addHook('onRequest', async (req) => {
    if (!req.url.startsWith('/v1/') && req.url !== '/v1') return;
    const principal = principalFromSocket(req.raw.socket as TLSSocket);
    if (!principal) throw new PaylogError('CLIENT_CERTIFICATE_REQUIRED', 'a valid paylog client certificate is required');
    if (await deps.revocations.isRevoked(principal.certificateFingerprint, principal.serialHex)) {
      throw new PaylogError('CERTIFICATE_REVOKED', 'this client certificate has been revoked');
    }
    req.principal = principal;
  });

  // Input PostgreSQL would refuse (NUL, bytes that are not UTF-8, lone surrogates) is refused
  // first, on every route, with 400 INVALID_ENCODING (src/validation/encoding.ts): the raw URL
  // here, JSON body bytes in the parser below, parsed body/params/query in preValidation.
  app.addHook('onRequest', async (req) => {
    assertStorableRequestTarget(req.raw.url ?? '');
  });
  // JSON bodies: strict UTF-8 (the default parser would turn bad bytes into U+FFFD silently),
  // then Fastify's own JSON parser (prototype-poisoning protection unchanged).
  const parseJsonText = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    let text: string;
    try {
      text = decodeUtf8Strict(body as Buffer, 'request body');
    } catch (e) {
      done(e as Error, undefined);
      return;
    }
    parseJsonText(req, text, done);
  });
  app.addHook('preValidation', async (req) => {
    assertStorableStrings(req.params, 'path parameter');
    assertStorableStrings(req.query, 'query parameter');
    assertStorableStrings(req.body, 'request body');
  });

  app.addHook('onSend', async (req, reply) => {
    if (req.url.startsWith('/v1')) reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    deps.metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    deps.metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler(async (err, req, reply) => {
    const pe = toPaylogError(err);
    if (pe.code === 'INTERNAL') req.log.error({ err: { type: (err as Error)?.name, code: (err as { code?: string })?.code } }, 'internal error');
    else req.log.info({ code: pe.code }, 'request refused');
    const { status, body } = errorResponse(pe);
    if (pe.code === 'RATE_LIMITED' && typeof pe.details?.retryAfterSeconds === 'number') {
      reply.header('retry-after', String(pe.details.retryAfterSeconds));
    }
    return reply.status(status).header('cache-control', 'no-store').send(body);
  });
  app.setNotFoundHandler(async (_req, reply) => {
    const { status, body } = errorResponse(new PaylogError('NOT_FOUND', 'no such route'));
    return reply.status(status).send(body);
  });

  registerOpsRoutes(app, { metrics: deps.metrics, readiness: deps.readiness });
  registerTransactionRoutes(app, { transactions: deps.transactions });
  for (const r of deps.extraRoutes ?? []) r(app);
  return app;
}
