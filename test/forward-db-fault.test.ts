/**
 * Forward (issue 18): the access entry is committed before any byte leaves. The database dies
 * (SIGQUIT to the postmaster, as `pg_ctl -m immediate`) while the forward's access entry waits
 * for the append lock: the destination receives nothing, the caller gets 503, and no granted
 * forward entry exists once the database is back. A dedicated embedded PostgreSQL cluster (see
 * test/db-faults.test.ts), a real HTTPS destination on loopback, real mTLS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from '../src/db/connection.js';
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js';
import { APPEND_LOCK_KEY } from '../src/log/appender.js';
import { createCa, issueServerCertificate } from '../src/pki/ca.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { alive, postmasterPid } from './helpers/postmaster.js';

let pgDir: string;
let pgPort: number;
let pgServer: EmbeddedServer;
let databaseUrl: string;
let t: TestPaylog;
let server: Server;
let caPem: string;
let hits = 0;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  pgDir = mkdtempSync(join(tmpdir(), 'paylog-fwdfault-pg-'));
  pgPort = await freePort();
  pgServer = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
  databaseUrl = await createDatabase(pgServer.adminUrl, 'paylog_fwdfault');
  t = await startTestPaylog({ databaseUrl, env: { PAYLOG_LOG_LEVEL: 'warn', PAYLOG_DB_CONNECT_TIMEOUT_MS: '1000', PAYLOG_DB_STATEMENT_TIMEOUT_MS: '20000', PAYLOG_REQUEST_TIMEOUT_MS: '30000' } });
  const ca = createCa({ commonName: 'test processor CA' });
  const leaf = issueServerCertificate(ca, ['localhost']);
  caPem = ca.certPem;
  server = createServer({ key: leaf.keyPem, cert: leaf.certPem }, (req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(201, { 'content-type': 'application/json' }).end('{"status":"authorized"}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await t?.stop();
  await pgServer?.stop();
  if (pgDir) rmSync(pgDir, { recursive: true, force: true });
});

describe('forward: the access entry is committed before any byte leaves', () => {
  it('the database is killed while the access entry waits to commit: 503, nothing reaches the destination, no granted entry; afterwards the forward goes through once', async () => {
    const port = (server.address() as AddressInfo).port;
    const put = await t.call('admin', 'PUT', '/v1/admin/processors/acme/destinations/payments', { url: `https://localhost:${port}`, paths: ['/v1/payments'], caPem, allowPrivateNetwork: true });
    expect(put.status, put.text).toBe(200);
    const tx = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', tx)).status).toBe(201);
    const body = { destination: 'payments', method: 'POST', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}', purpose: 'authorize' };

    // Hold the append lock so that the forward's access entry waits inside its batch.
    const holder = new pg.Client({ connectionString: databaseUrl });
    holder.on('error', () => {});
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1)', [APPEND_LOCK_KEY.toString()]);
    const pending = t.call('checkout', 'POST', `/v1/transactions/${tx.transactionId}/forward`, body, { headers: { 'idempotency-key': 'fault-1' } });
    let waiting = false;
    for (let i = 0; i < 400 && !waiting; i++) {
      const r = await holder.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted");
      waiting = (r.rows[0] as { n: number }).n > 0;
      if (!waiting) await sleep(25);
    }
    expect(waiting, 'the access entry never reached the append lock').toBe(true);
    const pid = postmasterPid(pgDir);
    process.kill(pid, 'SIGQUIT');
    for (let i = 0; i < 300 && alive(pid); i++) await sleep(50);
    const r = await pending;
    expect(r.status, r.text).toBe(503);
    expect(r.headers['retry-after']).toBeDefined();
    expect(hits).toBe(0);

    pgServer = await startEmbeddedPostgres({ dataDir: pgDir, port: pgPort });
    let list: Awaited<ReturnType<TestPaylog['call']>> | undefined;
    for (let i = 0; i < 200; i++) {
      list = await t.call('checkout', 'GET', `/v1/transactions/${tx.transactionId}/forwards`);
      if (list.status === 200) break;
      await sleep(100);
    }
    expect(list!.status, list!.text).toBe(200);
    expect(list!.json.forwards.filter((f: { outcome: string }) => f.outcome === 'granted')).toEqual([]);
    expect(hits).toBe(0);

    let ok: Awaited<ReturnType<TestPaylog['call']>> | undefined;
    for (let i = 0; i < 100; i++) {
      ok = await t.call('checkout', 'POST', `/v1/transactions/${tx.transactionId}/forward`, body, { headers: { 'idempotency-key': 'fault-2' } });
      if (ok.status !== 503) break;
      await sleep(100);
    }
    expect(ok!.status, ok!.text).toBe(200);
    expect(hits).toBe(1);
  });
});
