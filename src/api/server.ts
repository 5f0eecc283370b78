/**
 * The HTTPS server (Fastify) with client-certificate authentication on every `/v1` route.
 * Routes only translate HTTP to service calls; errors are mapped in `./errors.ts`.
 *
 * Contract: this file owns the cross-cutting hooks (authentication, revocation, request budget,
 * encoding checks, headers, metrics, the error handler). It MUST NOT import a route module: the
 * routes are registered by the caller's route table (`deps.routes`, src/api/routes/index.ts),
 * and routes take their request helpers from ./request-context.ts (no import circle).
 */
import { randomUUID } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { PaylogError } from '../errors.js';
import { principalFromSocket } from '../auth/principal.js';
import { assertNotRevoked, type RevocationCheck } from '../auth/revocations.js';
import type { Metrics } from '../metrics.js';
import { errorResponse, toPaylogError } from './errors.js';
import { DEFAULT_BODY_LIMIT_BYTES } from '../config.js';
import { errorForLog } from '../logging.js';
import { RETRY_AFTER_SECONDS } from './errors.js';
import { collectRoutes, routeSpecOf } from './route-spec.js';
import { principalLogFields } from './request-context.js';
import { requestLoggerFactory } from './request-logger.js';
import { assertStorableRequestTarget, assertStorableStrings, decodeUtf8Strict } from '../validation/encoding.js';

/** Response header carrying the request id that every log line of the request names (`reqId`). */
const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Request log lines name the route pattern, never the URL: a path or query string can carry
 * whatever a client typed, including a card number (PCI DSS 3.5.1 / 10.3). Every line of a
 * request carries its `reqId` (a random UUID, also sent back as `x-request-id`); the completion
 * line carries method, route pattern, status and duration, and — once the client certificate is
 * verified — the principal (role, name, certificate fingerprint; PCI DSS 10.2.1 / 10.2.2), so a
 * refused submission names who sent it (issue 17). Never a body.
 */
class RedactingLogController extends LogController {
  /** `logger`: the service's logger; info lines are not even built when it does not log info. */
  constructor(private readonly logger: Logger) {
    super();
  }
  /**
   * Top-level fields, not under `req`/`res`: Fastify's default `req` serializer would replace
   * an object under `req` with its own view (which has the URL).
   */
  private static fields(request: FastifyRequest) {
    return { method: request.method, route: request.routeOptions.url ?? 'unmatched', ...principalLogFields(request) };
  }
  override incomingRequest(request: FastifyRequest): void {
    if (!this.logger.isLevelEnabled('info')) return;
    request.log.info({ ...RedactingLogController.fields(request), remoteAddress: request.ip }, 'incoming request');
  }
  override requestCompleted(error: Error | null, request: FastifyRequest, reply: FastifyReply): void {
    if (!error && !this.logger.isLevelEnabled('info')) return;
    const f = { ...RedactingLogController.fields(request), statusCode: reply.statusCode, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...f, err: { type: error.name } }, 'request errored');
    else reply.log.info(f, 'request completed');
  }
  override defaultErrorLog(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    reply.log.info({ ...RedactingLogController.fields(request), statusCode: reply.statusCode, err: { type: error?.name } }, 'request failed');
  }
  override routeNotFound(request: FastifyRequest): void {
    request.log.info({ method: request.method, route: 'unmatched' }, 'route not found');
  }
  override writeHeadError(error: Error, _request: FastifyRequest, reply: FastifyReply): void {
    reply.log.warn({ err: { type: error?.name } }, 'response header write failed');
  }
}

interface ServerDeps {
  tls: { key: string; cert: string; ca: string };
  logger: Logger;
  metrics: Metrics;
  revocations: RevocationCheck;
  bodyLimit?: number;
  /**
   * Whole-request time budget (PAYLOG_REQUEST_TIMEOUT_MS), counted from the request's arrival:
   * a request not answered within it is answered 503 LOG_UNAVAILABLE with Retry-After.
   */
  requestTimeoutMs?: number;
  /**
   * Registers every route (the route table, src/api/routes/index.ts), after the hooks above:
   * authentication, encoding checks, budgets and the error handler apply to each of them.
   */
  routes: (app: FastifyInstance) => void;
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // TLS 1.3 only: modern suites, and no renegotiation, so a connection's client certificate
    // cannot change under it (the principal is cached per connection).
    https: { key: deps.tls.key, cert: deps.tls.cert, ca: deps.tls.ca, requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.3' },
    loggerInstance: deps.logger as unknown as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT_BYTES,
    // While closing, requests still arriving are refused by our own hook below (503 with
    // Retry-After in the one error format), not by Fastify's bare 503.
    return503OnClosing: false,
    logController: new RedactingLogController(deps.logger),
    // request.log: pino's child with the reqId, made only when the request logs (./request-logger.ts).
    childLoggerFactory: requestLoggerFactory,
    forceCloseConnections: 'idle',
    // Our own ids: a client-supplied request-id header could carry anything, card numbers included.
    genReqId: () => randomUUID(),
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
  const routes = collectRoutes(app);
  app.decorate('paylogRoutes', routes);
  app.decorateRequest('principal', null);
  app.decorateRequest('deadline', Infinity);
  app.decorateRequest('revocationPending', false);
  app.decorateRequest('bodyEscapeFree', false);
  // Per-route limits (`config.rateLimit`), keyed by the client certificate, checked after
  // authentication (preHandler) so the key is the verified certificate's fingerprint.
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    keyGenerator: (req) => req.principal?.certificateFingerprint ?? req.ip,
    errorResponseBuilder: (_req, ctx) =>
      new PaylogError('RATE_LIMITED', 'too many requests from this certificate; retry after Retry-After seconds', {
        retryAfterSeconds: Math.max(1, Math.ceil(ctx.ttl / 1000)),
      }),
  });
  // JSON only: a text/plain body must be 415, not parsed as a string.
  app.removeContentTypeParser('text/plain');

  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  // The request budget. (Not Fastify's `handlerTimeout`: on Node 20 its timer is cleared as soon
  // as a request body has been read, so it never fires for a POST.) A handler still running when
  // its budget answered 503 must not touch the reply again (Fastify would log "already sent"
  // with the URL, which can hold client input).
  const budgetMs = deps.requestTimeoutMs;
  if (budgetMs) {
    app.addHook('onRoute', (route) => {
      const handler = route.handler;
      // One promise per request settled by whichever comes first, the handler or the budget's
      // timer (not an async wrapper around Promise.race: that costs several promises a request).
      route.handler = function (this: FastifyInstance, req: FastifyRequest, reply: FastifyReply) {
        let expired = false;
        const guarded = guardLateReply(reply, () => expired);
        return new Promise<unknown>((resolve, reject) => {
          const timer = setTimeout(() => {
            if (reply.sent) return resolve(undefined);
            expired = true;
            reject(new PaylogError('LOG_UNAVAILABLE', 'the request did not complete within its time budget; retry later (retrying the same request is safe)'));
          }, Math.max(0, req.deadline - performance.now()));
          let work: Promise<unknown>;
          try {
            work = Promise.resolve(handler.call(this, req, guarded));
          } catch (e) {
            clearTimeout(timer);
            reject(e);
            return;
          }
          // After the budget has answered, a late result or failure has nobody to tell.
          work.then(
            (out) => {
              clearTimeout(timer);
              resolve(out === guarded ? reply : out);
            },
            (e: unknown) => {
              clearTimeout(timer);
              reject(e);
            },
          );
        });
      };
    });
  }

  // Every request, in this order, in ONE hook (each hook is a promise per request): refused while
  // closing; its budget starts; authentication: verified client certificate for every /v1 route,
  // revocation checked live; then input PostgreSQL would refuse (NUL, bytes that are not UTF-8,
  // lone surrogates) is refused, on every route, with 400 INVALID_ENCODING
  // (src/validation/encoding.ts): the raw URL here, JSON body bytes in the parser below, parsed
  // body/params/query in preValidation.
  // Hooks are written in Fastify's callback style (a throw is the same as `done(error)`): an async
  // hook costs a promise and a microtask turn per request, and most requests need neither.
  app.addHook('onRequest', (req, reply, done) => {
    if (closing) {
      reply.header('connection', 'close');
      throw new PaylogError('LOG_UNAVAILABLE', 'the service is shutting down; retry later');
    }
    if (budgetMs) req.deadline = performance.now() + budgetMs;
    if (req.url.startsWith('/v1/') || req.url === '/v1') {
      const principal = principalFromSocket(req.raw.socket as TLSSocket);
      if (!principal) throw new PaylogError('CLIENT_CERTIFICATE_REQUIRED', 'a valid paylog client certificate is required');
      req.principal = principal;
      const spec = routeSpecOf(req.routeOptions.config);
      // A submission's revocation is decided where its entry commits (one read per batch, not one
      // query per request): see RouteSpec.revocation.
      if (spec?.revocation === 'at-commit') req.revocationPending = true;
      else {
        assertNotRevoked(deps.revocations, principal).then(() => {
          try {
            assertStorableRequestTarget(req.raw.url ?? '');
          } catch (e) {
            done(e as Error);
            return;
          }
          done();
        }, done);
        return;
      }
    }
    assertStorableRequestTarget(req.raw.url ?? '');
    done();
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
    // JSON text rejects raw control characters in strings, and strict UTF-8 has no lone
    // surrogates: without a `\u` escape no parsed string can hold what assertStorableStrings refuses.
    req.bodyEscapeFree = !text.includes('\\u');
    parseJsonText(req, text, done);
  });
  app.addHook('preValidation', (req, _reply, done) => {
    assertStorableStrings(req.params, 'path parameter');
    assertStorableStrings(req.query, 'query parameter');
    if (!req.bodyEscapeFree) assertStorableStrings(req.body, 'request body');
    done();
  });

  app.addHook('onSend', (req, reply, _payload, done) => {
    // Routes that set their own caching (immutable tlog tiles) keep it; everything else is no-store.
    if (req.url.startsWith('/v1') && !reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    reply.header(REQUEST_ID_HEADER, req.id);
    reply.header('x-content-type-options', 'nosniff');
    // Every 503 carries Retry-After (/readyz included); error answers set theirs in the handler.
    if (reply.statusCode === 503 && !reply.hasHeader('retry-after')) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
    done();
  });

  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url ?? 'unmatched';
    deps.metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    deps.metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    done();
  });

  app.setErrorHandler(async (err, req, reply) => {
    let pe = toPaylogError(err);
    // An error before the handler took over the revocation decision: a revoked certificate is
    // told only that (and if the list cannot be read, the request fails as unavailable).
    if (req.revocationPending && req.principal && pe.code !== 'CERTIFICATE_REVOKED') {
      req.revocationPending = false;
      try {
        await assertNotRevoked(deps.revocations, req.principal);
      } catch (e) {
        pe = toPaylogError(e);
      }
    }
    // The operator finds an INTERNAL error's cause by its request id (also in the answer).
    const who = principalLogFields(req);
    if (pe.code === 'INTERNAL') {
      req.log.error({ reqId: req.id, route: req.routeOptions.url ?? 'unmatched', ...who, error: errorForLog(err) }, 'internal error');
      pe = new PaylogError('INTERNAL', pe.message, { ...pe.details, requestId: req.id }, { cause: err });
    } else if (pe.code === 'LOG_UNAVAILABLE' || pe.code === 'KMS_UNAVAILABLE') {
      req.log.warn({ code: pe.code, route: req.routeOptions.url ?? 'unmatched', ...who, error: errorForLog(pe.cause ?? err) }, 'request refused: dependency unavailable');
    } else if (pe.code === 'PROBE_LIMIT_EXCEEDED' || pe.code === 'IDEMPOTENCY_CONFLICT') {
      // Possible probing (issue 17): named, at warn, with nothing of the body.
      req.log.warn({ code: pe.code, route: req.routeOptions.url ?? 'unmatched', ...who }, 'request refused');
    } else req.log.info({ code: pe.code, route: req.routeOptions.url ?? 'unmatched', ...who }, 'request refused');
    const { status, body, headers } = errorResponse(pe);
    return reply.status(status).headers(headers).header('cache-control', 'no-store').send(body);
  });
  app.setNotFoundHandler(async (_req, reply) => {
    const { status, body } = errorResponse(new PaylogError('NOT_FOUND', 'no such route'));
    return reply.status(status).send(body);
  });

  deps.routes(app);
  return app;
}

/** The reply as a handler sees it: once `expired`, every method call is a no-op (`then` excepted). */
function guardLateReply(reply: FastifyReply, expired: () => boolean): FastifyReply {
  const guarded: FastifyReply = new Proxy(reply, {
    get(target, prop) {
      const v: unknown = Reflect.get(target, prop, target);
      if (typeof v !== 'function' || prop === 'then') return typeof v === 'function' ? v.bind(target) : v;
      return (...args: unknown[]) => {
        if (expired()) return guarded;
        const out: unknown = (v as (...a: unknown[]) => unknown).apply(target, args);
        return out === target ? guarded : out;
      };
    },
  });
  return guarded;
}
