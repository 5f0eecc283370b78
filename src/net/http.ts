/**
 * The one outbound HTTP module (undici). Every request paylog makes to another party goes through
 * an {@link HttpClient} built from an {@link EgressPolicy} that belongs to the use: the auditor's
 * entries API client (src/audit/log-client.ts), its tile source (src/audit/tile-source.ts) and the
 * witness submitter (src/log/witness/submitter.ts). Forwards (issue 18) add their own policy
 * (their destinations, their limits) through {@link EgressPolicy.checkDestination}: no new stack.
 *
 * Contract:
 * - redirects are NEVER followed: a 3xx is handed back as a response like any other status;
 * - a response body larger than `maxResponseBytes` is NEVER buffered: the read stops and
 *   {@link ResponseTooLargeError} is thrown (the answer arrived, but is unusable);
 * - every other failure before a full answer (refused, reset, TLS, DNS, timeout, deadline) throws
 *   {@link HttpTransportError};
 * - TLS trust is exactly the policy's `ca` when given (replaces Node's built-in roots), with the
 *   client certificate and key when given (mTLS).
 * This file MUST stay free of service code (no src/api, src/services, src/db, src/kms, src/app.ts):
 * it ships in the standalone verifier (dist/paylog-verify.mjs).
 */
import type { LookupFunction } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { Agent, request } from 'undici';

/** TLS material for one use (PEM contents, not paths). */
interface EgressTls {
  ca?: string | Buffer;
  cert?: string | Buffer;
  key?: string | Buffer;
}

/** How one use of outbound HTTP behaves. */
export interface EgressPolicy {
  /** Milliseconds to wait for the response headers, and between body chunks. */
  timeoutMs: number;
  /** Milliseconds to establish the connection (TCP and TLS); undici's default when absent. */
  connectTimeoutMs?: number;
  /** Milliseconds for the whole request, headers and body (no limit beyond `timeoutMs` when absent). */
  deadlineMs?: number;
  /** Largest response body read, in bytes. */
  maxResponseBytes: number;
  tls?: EgressTls;
  /** Concurrent connections per origin (undici's default when absent). */
  connections?: number;
  /**
   * Called with every destination before connecting; throws to refuse it (the error is passed
   * through unchanged). The seam for an egress allowlist (forwards, issue 18).
   */
  checkDestination?: (url: URL) => void;
  /**
   * Name resolution for every new connection: the socket connects to the address this returns,
   * so a policy that checks addresses here checks the very address used (no DNS rebinding).
   */
  lookup?: LookupFunction;
  /** Extra server certificate check after Node's own (chain and host name): SPKI pins. */
  checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined;
}

/** A full answer: status, lower-case headers, the whole body. */
interface HttpResponse {
  status: number;
  /** One header's value (the first, if repeated), or undefined. */
  header(name: string): string | undefined;
  body: Buffer;
  /** Every response header, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
}

/** No full answer arrived (connection refused/reset, TLS, DNS, timeout, deadline). */
export class HttpTransportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HttpTransportError';
  }
}

/** The answer's body is larger than the policy allows; nothing beyond the limit was read. */
export class ResponseTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`response body exceeds ${limit} bytes`);
    this.name = 'ResponseTooLargeError';
  }
}

interface HttpRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  headers?: Record<string, string>;
  body?: string | Buffer;
}

/** A connection pool bound to one {@link EgressPolicy}. */
export interface HttpClient {
  /** Sends one request and reads the whole answer (see the module contract for what throws). */
  request(url: string, req?: HttpRequest): Promise<HttpResponse>;
  /** Waits for requests in flight, then closes the connections. */
  close(): Promise<void>;
  /** Closes the connections at once (requests in flight fail). */
  destroy(): Promise<void>;
}

/** Reads a body up to `limit` bytes; stops reading and throws past it. */
async function readBounded(body: AsyncIterable<Buffer> & { destroy(): unknown }, limit: number, declared: string | undefined): Promise<Buffer> {
  if (declared !== undefined && Number(declared) > limit) {
    body.destroy();
    throw new ResponseTooLargeError(limit);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += chunk.length;
    if (total > limit) {
      body.destroy();
      throw new ResponseTooLargeError(limit);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

function firstValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** An HTTP client applying `policy` to every request it sends. */
export function httpClient(policy: EgressPolicy): HttpClient {
  const tls = policy.tls ?? {};
  const agent = new Agent({
    connect: {
      ...(policy.connectTimeoutMs !== undefined ? { timeout: policy.connectTimeoutMs } : {}),
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
      ...(tls.key !== undefined ? { key: tls.key } : {}),
      ...(policy.lookup !== undefined ? { lookup: policy.lookup } : {}),
      ...(policy.checkServerIdentity !== undefined ? { checkServerIdentity: policy.checkServerIdentity } : {}),
    },
    ...(policy.connections !== undefined ? { connections: policy.connections } : {}),
  });
  return {
    async request(url: string, req: HttpRequest = {}): Promise<HttpResponse> {
      policy.checkDestination?.(new URL(url));
      try {
        // undici's request() never follows redirects (no redirect interceptor is installed).
        const res = await request(url, {
          method: req.method ?? 'GET',
          dispatcher: agent,
          headersTimeout: policy.timeoutMs,
          bodyTimeout: policy.timeoutMs,
          ...(req.headers !== undefined ? { headers: req.headers } : {}),
          ...(req.body !== undefined ? { body: req.body } : {}),
          ...(policy.deadlineMs !== undefined ? { signal: AbortSignal.timeout(policy.deadlineMs) } : {}),
        });
        const headers = res.headers;
        const body = await readBounded(res.body, policy.maxResponseBytes, firstValue(headers['content-length']));
        return { status: res.statusCode, header: (name) => firstValue(headers[name.toLowerCase()]), body, headers };
      } catch (e) {
        if (e instanceof ResponseTooLargeError) throw e;
        throw new HttpTransportError((e as Error)?.message ?? 'request failed', { cause: e });
      }
    },
    close: () => agent.close(),
    destroy: () => agent.destroy(),
  };
}
