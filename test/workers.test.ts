/**
 * PAYLOG_WORKERS: the service as it is started (`node --import tsx src/main.ts`, a child
 * process), with two node:cluster workers sharing the port and the one log. /readyz reports how
 * many workers listen; connections made after both listen reach both; every submission lands
 * in one dense log; SIGTERM stops everything cleanly. Both ways of appending: each worker its
 * own batches (the default), and one integrator in the primary (PAYLOG_CLUSTER_APPENDS=primary).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startService, type ServiceHandle } from '../scripts/bench/service.js';
import { cardTransaction } from './helpers/paylog.js';


/** Pids holding established connections on the service port (Linux `ss`), with counts. */
function connectionOwners(port: number): Map<string, number> {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`]).toString();
  const owners = new Map<string, number>();
  for (const m of out.matchAll(/pid=(\d+)/g)) owners.set(m[1]!, (owners.get(m[1]!) ?? 0) + 1);
  return owners;
}

describe.each(['workers', 'primary'])('PAYLOG_WORKERS=2, PAYLOG_CLUSTER_APPENDS=%s', (appends) => {
  let svc: ServiceHandle;
  beforeAll(async () => {
    svc = await startService({ env: { PAYLOG_WORKERS: '2', PAYLOG_LOG_LEVEL: 'warn', PAYLOG_CLUSTER_APPENDS: appends } });
  }, 180_000);
  afterAll(async () => {
    await svc?.stop();
  });

  it('/readyz reports both workers listening', async () => {
    const r = await svc.get('/readyz');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).details.workers).toEqual({ listening: 2, configured: 2 });
  });

  it('connections reach both workers, and their submissions form one dense log', async () => {
    const agents = Array.from({ length: 8 }, () => new Agent({ connect: { ...svc.checkoutTls }, connections: 1 }));
    try {
      const post = (a: Agent) =>
        request(`${svc.url}/v1/transactions`, { method: 'POST', dispatcher: a, headers: { 'content-type': 'application/json' }, body: JSON.stringify(cardTransaction()) }).then(async (r) => ({
          status: r.statusCode,
          json: (await r.body.json()) as { logIndex: number },
        }));
      const first = await Promise.all(agents.map(post));
      expect(first.map((r) => r.status)).toEqual(agents.map(() => 201));
      // Eight kept-alive connections, spread by the primary over both workers.
      expect(connectionOwners(svc.port).size).toBe(2);
      const more = await Promise.all(Array.from({ length: 40 }, (_, i) => post(agents[i % agents.length]!)));
      expect(more.every((r) => r.status === 201)).toBe(true);
      const indexes = [...first, ...more].map((r) => r.json.logIndex).sort((a, b) => a - b);
      expect(new Set(indexes).size).toBe(48);
      // An identical replay, through whichever worker: the same entry (idempotency at commit).
      const body = JSON.stringify(cardTransaction());
      const replays = await Promise.all(
        agents.slice(0, 4).map((a) =>
          request(`${svc.url}/v1/transactions`, { method: 'POST', dispatcher: a, headers: { 'content-type': 'application/json' }, body }).then(async (r) => ({ status: r.statusCode, json: (await r.body.json()) as { logIndex: number } })),
        ),
      );
      expect(new Set(replays.map((r) => r.json.logIndex)).size).toBe(1);
      expect(replays.map((r) => r.status).sort()).toEqual([200, 200, 200, 201]);
    } finally {
      await Promise.all(agents.map((a) => a.close()));
    }
  });

  it('a release is granted and logged (its access entry carries a denied leaf made on demand, which must cross to the integrator by value)', async () => {
    const pki = join(svc.dataDir, 'pki');
    const checkout = new Agent({ connect: { ...svc.checkoutTls } });
    const acme = new Agent({ connect: { ca: readFileSync(join(pki, 'ca.pem')), cert: readFileSync(join(pki, 'processor-acme.pem')), key: readFileSync(join(pki, 'processor-acme-key.pem')) } });
    try {
      const tx = cardTransaction();
      const submitted = await request(`${svc.url}/v1/transactions`, { method: 'POST', dispatcher: checkout, headers: { 'content-type': 'application/json' }, body: JSON.stringify(tx) });
      expect(submitted.statusCode).toBe(201);
      await submitted.body.dump();
      const released = await request(`${svc.url}/v1/transactions/${tx.transactionId as string}/release`, { method: 'POST', dispatcher: acme, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ purpose: 'capture' }) });
      const text = await released.body.text();
      expect(released.statusCode, text).toBe(200);
      expect(JSON.parse(text)).toHaveProperty('accessLogIndex');
    } finally {
      await Promise.all([checkout.close(), acme.close()]);
    }
  });
});
