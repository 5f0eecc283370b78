/**
 * Starts a real paylog for a test file: real PostgreSQL (a fresh database on the run's server),
 * the local KMS endpoint through the real AWS SDK client, the dev PKI and real HTTPS with client
 * certificates on loopback. Captures every log line for scanning.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpsRequest, Agent } from 'node:https';
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
  opts: { env?: Record<string, string>; databaseUrl?: string; dataDir?: string; clock?: () => Date; /** Own embedded PostgreSQL under dataDir/pg (no DATABASE_URL). */ embedded?: boolean } = {},
): Promise<TestPaylog> {
  const databaseUrl = opts.embedded ? '' : (opts.databaseUrl ?? (await newTestDatabase()));
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'paylog-test-'));
  const config = loadConfig({
    PAYLOG_DATA_DIR: dataDir,
    PAYLOG_PORT: '0',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    PAYLOG_LOG_LEVEL: 'info',
    ...opts.env,
  });
  const { stream, lines } = logCapture();
  const paylog = await startPaylog(config, { logDestination: stream, ...(opts.clock ? { clock: opts.clock } : {}) });
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
  const call: TestPaylog['call'] = (who, method, path, body, o = {}) =>
    new Promise((resolve, reject) => {
      const payload = o.raw ?? (body === undefined ? undefined : JSON.stringify(body));
      const req = httpsRequest(
        `${paylog.url}${path}`,
        {
          method,
          agent: agent(who),
          headers: {
            ...(payload !== undefined ? { 'content-type': 'application/json' } : {}),
            ...o.headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let json: unknown;
            try {
              json = JSON.parse(text);
            } catch {
              json = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      if (payload !== undefined) req.end(payload);
      else req.end();
    });
  return {
    paylog,
    dataDir,
    databaseUrl: databaseUrl || paylog.ownerDatabaseUrl,
    logLines: lines,
    call,
    agent,
    stop: async () => {
      for (const a of agents.values()) a.destroy();
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
