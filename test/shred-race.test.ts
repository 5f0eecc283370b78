/**
 * Issue 17 item 5, "shredding takes effect everywhere at once": no worker or instance releases a
 * shredded record's card data once the shred has committed.
 *
 * 1. The race at the appender (real PostgreSQL): a granted access entry requires its key
 *    material not to be shredded at COMMIT; a shred committing while the batch waits for the
 *    append lock (or holding the epoch row) makes the batch append the denied entry instead.
 * 2. The attack end to end: paylog started as `npm start` starts it (child process,
 *    PAYLOG_WORKERS=2), a processor certificate over real mTLS, both workers holding the epoch
 *    key in their caches; after an early single-transaction shred, a shred that sends no
 *    notice, and a retention run (`npm run retention -- apply --as-of`), every release is 410
 *    DATA_SHREDDED and logged as a denied access.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Agent, request } from 'undici';
import { applyMigrations, KEYS_ROLE, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { APPEND_LOCK_KEY, LogAppender, type AppendOutcome, type AppendRequest } from '../src/log/appender.js';
import { APPEND_PRECONDITIONS, keyMaterialRequires } from '../src/services/append-preconditions.js';
import { commitShred } from '../src/services/key-shred.js';
import { KeyNoticeListener, type KeyNotice } from '../src/kms/key-notifications.js';
import { EMBEDDED_DATABASE } from '../src/app.js';
import { startService, type ServiceHandle } from '../scripts/bench/service.js';
import { cardTransaction, newTestDatabase } from './helpers/paylog.js';
import { DATA_KEYS_WHOLE, query, withClient } from './helpers/db.js';
import { runScript } from './helpers/cli.js';

const PAN = '4111111111111111';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * How long a wait for something another connection or process does may take: bounded by time, not
 * by a count of polls (a loaded machine makes each poll, and what it waits for, slower).
 */
const WAIT_MS = 30_000;

/** Resolves once `ok()` holds, polling every `everyMs` (bounded by WAIT_MS; returns whether it held). */
async function eventually(ok: () => boolean | Promise<boolean>, everyMs: number): Promise<boolean> {
  for (const deadline = Date.now() + WAIT_MS; ; await sleep(everyMs)) {
    if (await ok()) return true;
    if (Date.now() > deadline) return false;
  }
}

/** Resolves once `n` lock requests of `locktype` wait in this test's database (bounded; the cluster is shared). */
async function waiters(url: string, locktype: 'advisory' | 'transactionid', n: number): Promise<void> {
  const waiting = async () => {
    const [{ c }] = await query(url, `SELECT count(*)::int AS c FROM pg_locks WHERE locktype = $1 AND NOT granted
       AND pid IN (SELECT pid FROM pg_stat_activity WHERE datname = current_database())`, [locktype]);
    return c >= n;
  };
  if (!(await eventually(waiting, 25))) throw new Error(`fewer than ${n} ${locktype} lock waiters after ${WAIT_MS} ms`);
}

describe('the race at the appender: "key material not shredded" is a commit-time precondition', () => {
  let url: string;
  let app: AppDatabase;
  let keys: AppDatabase;
  let appender: LogAppender;
  let listener: KeyNoticeListener;
  const notices: KeyNotice[] = [];
  let subscriptions = 0;
  let n = 0;

  const epoch = async (epochId: string) =>
    app.pool.query(
      `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, kms_key_id, wrapped_private_key, wrapped_key_sha256)
       VALUES ($1, 'race', 'month', '2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z', $3, $2, 'arn:aws:kms:us-east-1:000000000000:key/test', $2, $2)`,
      [epochId, Buffer.alloc(32, 7), n++],
    );
  /** Appends a record (v2 under `epochId`, or v1) and returns its transaction id. */
  const record = async (epochId: string | null): Promise<string> => {
    const id = `race-${n++}`;
    const o = await appender.append({
      kind: 'transaction',
      leaf: Buffer.from(`transaction ${id}`),
      createdAt: new Date(),
      transaction: { transactionId: id, requestMac: Buffer.alloc(32, 1) },
      dataKey: { wrappedKey: Buffer.alloc(80, 2), kmsKeyId: epochId ? null : 'arn:aws:kms:us-east-1:000000000000:key/test', epochId },
    });
    expect(o.status).toBe('appended');
    return id;
  };
  /** A granted release's access entry, as src/services/release.ts appends it. */
  const granted = (transactionId: string, epochId?: string): AppendRequest => ({
    kind: 'access',
    leaf: Buffer.from(`granted ${transactionId} ${n++}`),
    createdAt: new Date(),
    access: { transactionId },
    requires: keyMaterialRequires({ transactionId, ...(epochId ? { epochId } : {}) }, Buffer.from(`denied ${transactionId} ${n++}`)),
  });
  const leafAt = async (index: number) => ((await query(url, 'SELECT leaf FROM log_entries WHERE idx = $1', [index]))[0]?.leaf as Buffer).toString();
  const shredEpoch = (epochId: string) =>
    commitShred(
      keys,
      { text: 'UPDATE key_epochs SET wrapped_private_key = NULL, wrapped_key_sha256 = NULL, shredded_at = now(), retired_at = coalesce(retired_at, now()) WHERE epoch_id = $1', values: [epochId] },
      { event: 'epoch_shredded', epochId },
    );
  const shredDataKey = (transactionId: string) =>
    commitShred(keys, { text: 'UPDATE data_keys SET wrapped_key = NULL, shredded_at = now() WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)', values: [transactionId] }, null);
  /** Holds the append lock as another process's batch would, until `release` is called. */
  const holdAppendLock = async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`BEGIN; SELECT pg_advisory_xact_lock(${APPEND_LOCK_KEY.toString()})`);
    return async () => {
      await c.query('ROLLBACK');
      await c.end();
    };
  };

  beforeAll(async () => {
    url = await newTestDatabase();
    await applyMigrations(url);
    app = openAppDatabase(url); // paylog_app, pipeline mode: the runtime pool
    keys = openAppDatabase(url, { role: KEYS_ROLE }); // the key-destruction connection
    appender = new LogAppender(app, { preconditions: APPEND_PRECONDITIONS });
    listener = new KeyNoticeListener({
      url,
      role: 'paylog_app',
      onNotice: (x) => notices.push(x),
      onSubscribed: async () => void subscriptions++,
      reconnectMinMs: 50,
    });
    listener.start();
    expect(await eventually(() => listener.listening, 50)).toBe(true);
  });
  afterAll(async () => {
    await listener?.close();
    await appender?.close();
    await keys?.close();
    await app?.close();
  });

  it('an epoch shred that commits while the batch waits for the append lock: the batch appends the denied entry in place of the granted one; every process is notified', async () => {
    await epoch('race/e1');
    const id = await record('race/e1');
    const release = await holdAppendLock(); // a batch of another process is in flight
    const shred = shredEpoch('race/e1'); // queued first ...
    await waiters(url, 'advisory', 1);
    const access = appender.append(granted(id, 'race/e1')); // ... then the release's access entry
    await waiters(url, 'advisory', 2);
    await release();
    await shred;
    const o = await access;
    expect(o).toMatchObject({ status: 'denied', reason: 'epoch_shredded' });
    const at = (o as Extract<AppendOutcome, { status: 'denied' }>).logIndex;
    expect(await leafAt(at)).toMatch(/^denied /); // exactly one entry for the attempt: the denied one
    expect(await query(url, 'SELECT log_index::int AS i FROM access_entries WHERE transaction_id = $1', [id])).toEqual([{ i: at }]);
    expect((await query(url, "SELECT count(*)::int AS c FROM log_entries WHERE convert_from(leaf, 'UTF8') LIKE $1", [`granted ${id} %`]))[0].c).toBe(0);
    await eventually(() => notices.some((x) => x.epochId === 'race/e1'), 20);
    expect(notices).toContainEqual({ event: 'epoch_shredded', epochId: 'race/e1' });
  });

  it('an access entry whose batch commits before the shred is granted (the shred waits for the batch); every one after is denied', async () => {
    await epoch('race/e2');
    const id = await record('race/e2');
    const release = await holdAppendLock();
    const access = appender.append(granted(id, 'race/e2')); // queued first
    await waiters(url, 'advisory', 1);
    const shred = shredEpoch('race/e2');
    await waiters(url, 'advisory', 2);
    await release();
    expect((await access).status).toBe('appended');
    await shred;
    expect(await appender.append(granted(id, 'race/e2'))).toMatchObject({ status: 'denied', reason: 'epoch_shredded' });
  });

  it('a shred that bypasses the append lock (a raw UPDATE as paylog_keys) still orders against the batch: the epoch row is read FOR SHARE', async () => {
    await epoch('race/e3');
    const id = await record('race/e3');
    await withClient(url, async (c) => {
      await c.query(`SET ROLE ${KEYS_ROLE}`);
      await c.query('BEGIN');
      await c.query("UPDATE key_epochs SET wrapped_private_key = NULL, shredded_at = now() WHERE epoch_id = 'race/e3'");
      const access = appender.append(granted(id, 'race/e3'));
      await waiters(url, 'transactionid', 1); // the batch's FOR SHARE waits for the shred's row lock
      await c.query('COMMIT');
      expect(await access).toMatchObject({ status: 'denied', reason: 'epoch_shredded' });
    });
  });

  it('a single-transaction shred (v2 and v1 records) committing while the batch waits: denied; other records of the epoch are unaffected', async () => {
    await epoch('race/e4');
    const v2 = await record('race/e4');
    const sibling = await record('race/e4');
    const v1 = await record(null);
    const release = await holdAppendLock();
    const shreds = Promise.all([shredDataKey(v2), shredDataKey(v1)]);
    await waiters(url, 'advisory', 2);
    const accesses = Promise.all([appender.append(granted(v2, 'race/e4')), appender.append(granted(v1)), appender.append(granted(sibling, 'race/e4'))]);
    await waiters(url, 'advisory', 3);
    await release();
    await shreds;
    const [a2, a1, s] = await accesses;
    expect(a2).toMatchObject({ status: 'denied', reason: 'data_key_shredded' });
    expect(a1).toMatchObject({ status: 'denied', reason: 'data_key_shredded' });
    expect(s.status).toBe('appended');
  });
});

describe('the key notice listener (hygiene: every process zeroes a shredded epoch key promptly)', () => {
  it('its connection killed (as by a database restart), it reopens, re-checks what it caches, and receives the next notice; no unhandled error', async () => {
    const url = await newTestDatabase();
    await applyMigrations(url);
    const keys = openAppDatabase(url, { role: KEYS_ROLE });
    const got: KeyNotice[] = [];
    const errors: Error[] = [];
    let subscribed = 0;
    const l = new KeyNoticeListener({ url, role: 'paylog_app', onNotice: (x) => got.push(x), onSubscribed: async () => void subscribed++, onError: (e) => errors.push(e), reconnectMinMs: 50 });
    const until = async (ok: () => boolean, what: string) => {
      expect(await eventually(ok, 25), what).toBe(true);
    };
    try {
      l.start();
      await until(() => l.listening && subscribed === 1, 'not listening');
      const killed = await query(url, "SELECT pg_terminate_backend(pid) AS k FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN paylog_key_events%'");
      expect(killed).toEqual([{ k: true }]);
      await until(() => subscribed === 2 && l.listening, 'did not reopen and re-check');
      expect(errors.length).toBeGreaterThanOrEqual(1);
      await commitShred(keys, { text: 'SELECT 1', values: [] }, { event: 'epoch_shredded', epochId: 'after/reconnect' });
      await until(() => got.some((x) => x.epochId === 'after/reconnect'), 'no notice after reconnecting');
      // A rolled-back shred notifies nobody.
      await expect(commitShred(keys, { text: 'SELECT 1/0', values: [] }, { event: 'epoch_shredded', epochId: 'rolled/back' })).rejects.toThrow();
      await sleep(200);
      expect(got.some((x) => x.epochId === 'rolled/back')).toBe(false);
    } finally {
      await l.close();
      await keys.close();
    }
    expect(l.listening).toBe(false);
  });
});

// ---------------------------------------------------------------- the attack, end to end

type Principal = 'checkout' | 'processor-acme' | 'processor-globex' | 'auditor' | 'admin';
type Answer = { status: number; text: string; json: any };

describe('PAYLOG_WORKERS=2: a processor certificate over mTLS cannot release a shredded record from any worker', () => {
  let svc: ServiceHandle;
  let ownerUrl: string;
  const tls = (who: Principal) => {
    const pki = join(svc.dataDir, 'pki');
    return { ca: readFileSync(join(pki, 'ca.pem')), cert: readFileSync(join(pki, `${who}.pem`)), key: readFileSync(join(pki, `${who}-key.pem`)) };
  };
  const send = async (dispatcher: Agent, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> => {
    const r = await request(`${svc.url}${path}`, {
      method,
      dispatcher,
      ...(body !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) } : {}),
    });
    const text = await r.body.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: r.statusCode, text, json };
  };
  /** One request over a connection of its own (the primary hands new connections to the workers in turn). */
  const fresh = async (who: Principal, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> => {
    const a = new Agent({ connect: tls(who), connections: 1 });
    try {
      return await send(a, method, path, body);
    } finally {
      await a.close();
    }
  };
  const releaseBody = { purpose: 'capture' };
  /** Kept-alive processor connections, spread over both workers (checked with `ss`). */
  const keptFor = (who: Principal) => Array.from({ length: 8 }, () => new Agent({ connect: tls(who), connections: 1, keepAliveTimeout: 600_000, keepAliveMaxTimeout: 600_000 }));
  const kept: Partial<Record<Principal, Agent[]>> = {};

  /** Pids holding established connections on the service port (the workers). */
  const workerPids = () => {
    const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${svc.port} )`]).toString();
    return new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => m[1]!));
  };
  const submit = async (processor: string) => {
    const body = cardTransaction({ processor });
    const r = await fresh('checkout', 'POST', '/v1/transactions', body);
    expect(r.status, r.text).toBe(201);
    return body.transactionId as string;
  };
  /** Releases `id` on every kept connection and on `freshCount` new ones. */
  const releaseEverywhere = async (who: Principal, id: string, freshCount: number): Promise<Answer[]> => {
    const out: Answer[] = [];
    for (const a of kept[who]!) out.push(await send(a, 'POST', `/v1/transactions/${id}/release`, releaseBody));
    for (let i = 0; i < freshCount; i++) out.push(await fresh(who, 'POST', `/v1/transactions/${id}/release`, releaseBody));
    return out;
  };
  /** Before the shred: both workers release `id` (and so cache its epoch key). */
  const warm = async (who: Principal, id: string) => {
    const answers = await releaseEverywhere(who, id, 6);
    expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
    expect(answers[0]!.json.paymentMethod.pan).toBe(PAN);
    expect(workerPids().size, 'the kept connections do not reach both workers').toBe(2);
  };
  const releaseAccesses = async (id: string) => (await fresh('auditor', 'GET', `/v1/transactions/${id}/accesses`)).json.accesses as { outcome: string; reason: string | null; action: string }[];
  /** After the shred: ≥ 20 fresh connections plus every kept one; all 410, no card number, each logged as a denied access. */
  const expectShreddedEverywhere = async (who: Principal, id: string) => {
    const before = await releaseAccesses(id);
    const answers = await releaseEverywhere(who, id, 20);
    expect(answers.length).toBeGreaterThanOrEqual(28);
    for (const a of answers) {
      expect(a.status, a.text.includes(PAN) ? 'PLAINTEXT RELEASED after the shred' : a.text).toBe(410);
      expect(a.json.error.code).toBe('DATA_SHREDDED');
      expect(a.text).not.toContain(PAN);
    }
    expect(workerPids().size, 'the kept connections no longer reach both workers').toBe(2);
    const after = (await releaseAccesses(id)).slice(before.length);
    expect(after).toHaveLength(answers.length);
    expect(after.every((x) => x.action === 'release' && x.outcome === 'denied' && x.reason === 'DATA_SHREDDED')).toBe(true);
  };

  beforeAll(async () => {
    svc = await startService({
      env: {
        PAYLOG_WORKERS: '2',
        PAYLOG_LOG_LEVEL: 'warn',
        PAYLOG_KEY_EPOCH: 'hour',
        PAYLOG_RETENTION: 'PT1H',
        // The attack's window at its widest: a cached key would stay usable for an hour.
        PAYLOG_EPOCH_KEY_CACHE_TTL_S: '3600',
        PAYLOG_EPOCH_KEY_CACHE_MAX_USES: '1000000',
      },
    });
    const u = new URL(svc.pgAdminUrl());
    u.pathname = `/${EMBEDDED_DATABASE}`;
    ownerUrl = u.toString();
    kept['processor-acme'] = keptFor('processor-acme');
    kept['processor-globex'] = keptFor('processor-globex');
  }, 180_000);
  afterAll(async () => {
    for (const agents of Object.values(kept)) await Promise.all(agents.map((a) => a.close()));
    await svc?.stop();
  });

  it('early shred of one transaction (POST /v1/admin/transactions/{id}/shred): every later release is 410 from both workers; its epoch siblings still release', { timeout: 120_000 }, async () => {
    const id = await submit('acme');
    const sibling = await submit('acme');
    await warm('processor-acme', id);
    const s = await fresh('admin', 'POST', `/v1/admin/transactions/${id}/shred`, { reason: 'customer request' });
    expect(s.status, s.text).toBe(200);
    await expectShreddedEverywhere('processor-acme', id);
    expect((await fresh('processor-acme', 'POST', `/v1/transactions/${sibling}/release`, releaseBody)).status).toBe(200);
  });

  it('a shred committed with no notice (paylog_keys, straight SQL: an older instance, or an operator): the commit-time precondition alone refuses every release, although both workers still cache the key', { timeout: 120_000 }, async () => {
    const id = await submit('globex');
    await warm('processor-globex', id);
    const [{ epoch_id: epochId }] = await query(ownerUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]);
    await withClient(ownerUrl, async (c) => {
      await c.query(`SET ROLE ${KEYS_ROLE}`);
      await c.query(
        'UPDATE key_epochs SET wrapped_private_key = NULL, wrapped_key_sha256 = NULL, shredded_at = now(), retired_at = coalesce(retired_at, now()) WHERE epoch_id = $1',
        [epochId],
      );
    });
    await expectShreddedEverywhere('processor-globex', id);
  });

  it('retention (`npm run retention -- apply`) shreds the epoch: every later release is 410 from both workers, each logged as denied', { timeout: 180_000 }, async () => {
    const id = await submit('acme');
    await warm('processor-acme', id);
    const asOf = new Date(Date.now() + 3 * 3600_000).toISOString(); // cutoff = now + 2 h: this hour's period has ended
    const pki = join(svc.dataDir, 'pki');
    const run = await runScript('retention', ['apply', '--as-of', asOf, '--url', svc.url, '--cacert', join(pki, 'ca.pem'), '--cert', join(pki, 'admin.pem'), '--key', join(pki, 'admin-key.pem')]);
    expect(run.code, run.stderr).toBe(0);
    const [{ epoch_id: epochId }] = await query(ownerUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]);
    expect(JSON.parse(run.stdout).epochs.map((e: { epochId: string }) => e.epochId)).toContain(epochId);
    // Hygiene (the notice): before any further release, no worker holds an epoch key any more.
    const gauges = async () => Promise.all(kept['processor-acme']!.map(async (a) => (await send(a, 'GET', '/metrics')).text));
    let texts: string[] = [];
    await eventually(async () => (texts = await gauges()).every((t) => /^paylog_epoch_keys_cached 0$/m.test(t)), 100);
    expect(texts.map((t) => /^paylog_epoch_keys_cached (\d+)$/m.exec(t)?.[1])).toEqual(texts.map(() => '0'));
    expect(texts.map((t) => /^paylog_key_notices_listening (\d+)$/m.exec(t)?.[1])).toEqual(texts.map(() => '1'));
    await expectShreddedEverywhere('processor-acme', id);
  });
});
