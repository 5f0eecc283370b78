/**
 * Starts a real paylog for a test file: real PostgreSQL (a fresh database on the run's server),
 * the local KMS endpoint through the real AWS SDK client, the dev PKI and real HTTPS with client
 * certificates on loopback. Captures every log line for scanning.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent } from 'node:https';
import { Agent as UndiciAgent, request } from 'undici';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { startPaylog, type Paylog } from '../../src/app.js';
import { createDatabase } from '../../src/db/connection.js';

export const PRINCIPALS = ['checkout', 'processor-acme', 'processor-globex', 'auditor', 'admin'] as const;
export type PrincipalName = (typeof PRINCIPALS)[number];

export interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  /** The body exactly as received (no Content-Encoding is undone). */
  bytes: Buffer;
  json: any;
}

export interface TestPaylog {
  paylog: Paylog;
  dataDir: string;
  databaseUrl: string;
  logLines: string[];
  /** HTTPS request as a dev principal (or null: no client certificate). */
  call(who: PrincipalName | null, method: string, path: string, body?: unknown, opts?: { raw?: string | Buffer; headers?: Record<string, string> }): Promise<HttpResult>;
  /** An https.Agent presenting `who`'s certificate (for tools like the verifier). */
  agent(who: PrincipalName | null): Agent;
  stop(): Promise<void>;
}

export function logCapture(): { stream: Writable; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(l);
      cb();
    },
  });
  return { stream, lines };
}

export async function newTestDatabase(): Promise<string> {
  return await createDatabase(inject('adminDatabaseUrl'), `t_${randomBytes(6).toString('hex')}`);
}

export async function startTestPaylog(
  opts: { env?: Record<string, string>; databaseUrl?: string; dataDir?: string; clock?: () => Date; /** Own embedded PostgreSQL under dataDir/pg (no DATABASE_URL). */ embedded?: boolean; /** Run the scheduled retention job, first after this many ms (default: not scheduled). */ retentionFirstRunMs?: number } = {},
): Promise<TestPaylog> {
  const databaseUrl = opts.embedded ? '' : (opts.databaseUrl ?? (await newTestDatabase()));
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'paylog-test-'));
  const config = loadConfig({
    PAYLOG_DATA_DIR: dataDir,
    PAYLOG_PORT: '0',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    PAYLOG_LOG_LEVEL: 'info',
    // The suite runs on shared, often overloaded machines: generous request and lock budgets
    // unless a test sets its own (test/resilience.test.ts, the fault tests), so slowness is not
    // turned into 503s where a test is about something else.
    PAYLOG_REQUEST_TIMEOUT_MS: '60000',
    PAYLOG_DB_LOCK_TIMEOUT_MS: '30000',
    PAYLOG_DB_STATEMENT_TIMEOUT_MS: '60000',
    // Tests submit the same public test card (same brand, last four, expiry) hundreds of times an
    // hour, which is what the probe limit refuses in production (issue 17): off unless a test
    // sets it (test/oracle.test.ts runs with the production default).
    PAYLOG_PROBE_LIMIT_PER_HOUR: '100000000',
    ...opts.env,
  });
  const { stream, lines } = logCapture();
  // No scheduled retention run: its entry would land mid-test (a minute after start) in tests
  // that count entries; retention tests run it explicitly.
  const paylog = await startPaylog(config, { logDestination: stream, ...(opts.retentionFirstRunMs !== undefined ? { retentionFirstRunMs: opts.retentionFirstRunMs } : { retentionSchedule: false }), ...(opts.clock ? { clock: opts.clock } : {}) });
  const pki = paylog.devPki!;
  const ca = pki.caCertPem;
  const agents = new Map<string, Agent>();
  const agent = (who: PrincipalName | null): Agent => {
    const k = who ?? '-';
    let a = agents.get(k);
    if (!a) {
      const p = who ? pki.principals[who] : undefined;
      a = new Agent({
        ca,
        keepAlive: true,
        maxSockets: 64,
        ...(p ? { cert: readFileSync(p.certPath), key: readFileSync(p.keyPath) } : {}),
      });
      agents.set(k, a);
    }
    return a;
  };
  // Requests go through undici, one keep-alive pool per principal.
  const dispatchers = new Map<string, UndiciAgent>();
  const dispatcher = (who: PrincipalName | null): UndiciAgent => {
    const k = who ?? '-';
    let d = dispatchers.get(k);
    if (!d) {
      const p = who ? pki.principals[who] : undefined;
      // Generous connect timeout: the shared test machine can be very loaded (undici's default is 10 s).
      d = new UndiciAgent({ connect: { ca, timeout: 120_000, ...(p ? { cert: readFileSync(p.certPath), key: readFileSync(p.keyPath) } : {}) }, connections: 64 });
      dispatchers.set(k, d);
    }
    return d;
  };
  const call: TestPaylog['call'] = async (who, method, path, body, o = {}) => {
    const payload = o.raw ?? (body === undefined ? undefined : JSON.stringify(body));
    const res = await request(`${paylog.url}${path}`, {
      method: method as 'GET',
      dispatcher: dispatcher(who),
      headers: { ...(payload !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
      ...(payload !== undefined ? { body: payload } : {}),
    });
    const bytes = Buffer.from(await res.body.arrayBuffer());
    const text = bytes.toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, text, bytes, json };
  };
  return {
    paylog,
    dataDir,
    databaseUrl: databaseUrl || paylog.ownerDatabaseUrl,
    logLines: lines,
    call,
    agent,
    stop: async () => {
      for (const a of agents.values()) a.destroy();
      for (const d of dispatchers.values()) await d.destroy();
      await paylog.close();
      if (!opts.dataDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A valid card transaction body (public test PAN), unique id unless given. */
export function cardTransaction(overrides: Record<string, unknown> = {}): Record<string, any> {
  return {
    transactionId: `ord-${randomBytes(6).toString('hex')}`,
    processor: 'acme',
    amount: { value: 12345, currency: 'USD' },
    paymentMethod: { type: 'card', pan: '4111111111111111', expiryMonth: 12, expiryYear: new Date().getUTCFullYear() + 3, holderName: 'Jane Q Customer' },
    metadata: { invoice: 'INV-77' },
    ...overrides,
  };
}

export const fixtures = JSON.parse(
  readFileSync(new URL('../fixtures/payment-methods.json', import.meta.url), 'utf8'),
) as {
  cards: { pan: string; brand: string }[];
  invalid_cards: { pan: string; why: string }[];
  ibans: { iban: string; country: string }[];
  invalid_ibans: { iban: string; why: string }[];
  us_routing_numbers: { routingNumber: string }[];
  invalid_us_routing_numbers: { routingNumber: string; why: string }[];
};
