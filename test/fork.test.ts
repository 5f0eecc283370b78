/**
 * Never a signed fork (issue 17 item 4): a database superuser who deletes every row above an
 * older genuine tree head, or restores an older copy of the whole database, cannot make paylog
 * sign a different history. The signer remembers its last checkpoint in a state file outside
 * the database (PAYLOG_SIGNER_STATE); a witness that has cosigned another history refuses the
 * checkpoint before it is stored; and a genuine restore from backup is completed by
 * re-appending the lost tail from an export (`npm run restore-log`), never by signing a fork.
 *
 * Real PostgreSQL (superuser behind the service's back), the real KMS client against the local
 * endpoint, real HTTPS with the dev certificates, the real witness.
 */
import { execFileSync } from 'node:child_process';
import { Agent, request } from 'undici';
import { startService, embeddedAdminUrl, type ServiceHandle } from '../scripts/bench/service.js';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import pg from 'pg';
import { cardTransaction, newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { withClient } from './helpers/db.js';
import { runScript, type CliResult } from './helpers/cli.js';
import { verifyCheckpoint } from '../src/log/checkpoint.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import type { StoredCheckpoint } from '../src/log/checkpoint-publisher.js';
import { startWitness, type RunningWitness } from '../src/log/witness/witness.js';
import { startLocalKms } from '../src/kms/local/server.js';
import { createKmsClient, PaylogKms } from '../src/kms/client.js';

/** Every table the appender and the signer read, and the lookup rows written beside leaves. */
const ROLLBACK_TABLES = ['log_entries', 'merkle_nodes', 'tree_heads', 'checkpoints', 'transactions', 'access_entries', 'data_keys', 'witness_cosignatures'];

const dirs: string[] = [];
const running: TestPaylog[] = [];
const tmp = (prefix = 'paylog-fork-') => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
afterAll(async () => {
  for (const t of running) await t.stop().catch(() => {});
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function start(opts: Parameters<typeof startTestPaylog>[0]): Promise<TestPaylog> {
  const t = await startTestPaylog(opts);
  running.push(t);
  return t;
}
async function stop(t: TestPaylog): Promise<void> {
  running.splice(running.indexOf(t), 1);
  await t.stop();
}

async function submit(t: TestPaylog, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const body = cardTransaction();
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect(r.status, r.text).toBe(201);
    ids.push(body.transactionId);
  }
  return ids;
}

/**
 * As the superuser: disables the triggers of the log tables (append-only triggers are ENABLE
 * ALWAYS, so session_replication_role would not help), deletes every row above `size`, and puts
 * each trigger back as it was.
 */
async function rollBackTo(databaseUrl: string, size: number): Promise<void> {
  await withClient(databaseUrl, async (c) => {
    const saved: Array<{ table: string; name: string; enabled: string }> = [];
    for (const table of ROLLBACK_TABLES) {
      const r = await c.query(`SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`, [table]);
      for (const row of r.rows as Array<{ tgname: string; tgenabled: string }>) saved.push({ table, name: row.tgname, enabled: row.tgenabled });
      await c.query(`ALTER TABLE ${table} DISABLE TRIGGER ALL`);
    }
    try {
      await c.query('BEGIN');
      await c.query('DELETE FROM access_entries WHERE log_index >= $1', [size]);
      await c.query('DELETE FROM data_keys WHERE log_index >= $1', [size]);
      await c.query('DELETE FROM transactions WHERE log_index >= $1', [size]);
      await c.query('DELETE FROM log_entries WHERE idx >= $1', [size]);
      await c.query('DELETE FROM merkle_nodes WHERE (idx + 1) * (1::bigint << level) > $1', [size]);
      await c.query('DELETE FROM tree_heads WHERE size > $1', [size]);
      await c.query('DELETE FROM checkpoints WHERE size > $1', [size]);
      await c.query('DELETE FROM witness_cosignatures WHERE checkpoint_size > $1', [size]);
      await c.query('COMMIT');
    } finally {
      for (const s of saved) {
        const how = s.enabled === 'A' ? 'ENABLE ALWAYS' : s.enabled === 'R' ? 'ENABLE REPLICA' : s.enabled === 'D' ? 'DISABLE' : 'ENABLE';
        await c.query(`ALTER TABLE ${s.table} ${how} TRIGGER ${s.name}`);
      }
    }
  });
}

async function treeSize(databaseUrl: string): Promise<number> {
  return await withClient(databaseUrl, async (c) => Number((await c.query('SELECT count(*) AS n FROM log_entries')).rows[0].n));
}

async function checkpointRowsAbove(databaseUrl: string, size: number): Promise<number> {
  return await withClient(databaseUrl, async (c) => Number((await c.query('SELECT count(*) AS n FROM checkpoints WHERE size > $1', [size])).rows[0].n));
}

function verifiersOf(t: TestPaylog) {
  return toNoteVerifiers(t.paylog.logKeys.map((k) => k.vkey));
}

/** GET /v1/log/checkpoint: the served note, verified under the service's keys. */
async function served(t: TestPaylog): Promise<{ size: number; rootHash: Buffer }> {
  const r = await t.call('auditor', 'GET', '/v1/log/checkpoint');
  expect(r.status, r.text).toBe(200);
  return verifyCheckpoint(r.text, verifiersOf(t));
}

/** The served checkpoint is `genuine` or a checkpoint of a prefix of it (never another history). */
function expectPrefixOf(c: { size: number; rootHash: Buffer }, earlier: StoredCheckpoint[]): void {
  const same = earlier.find((e) => e.size === c.size);
  expect(same, `served size ${c.size} is none of the genuine checkpoints`).toBeDefined();
  expect(c.rootHash.equals(same!.rootHash)).toBe(true);
}

async function metric(t: TestPaylog, line: RegExp): Promise<number> {
  const text = (await t.call(null, 'GET', '/metrics')).text;
  const m = text.match(line);
  return m ? Number(m[1]) : 0;
}

/** The captured log lines as JSON objects (a line that is not JSON is skipped). */
function logObjects(t: TestPaylog): Array<Record<string, any>> {
  return t.logLines.flatMap((l) => {
    try {
      return [JSON.parse(l) as Record<string, any>];
    } catch {
      return [];
    }
  });
}

function stateFile(t: TestPaylog): string {
  return t.paylog.config.signerStatePath;
}

describe('a superuser deletes every row above an older genuine tree head and lets paylog append', () => {
  it('paylog never signs the forked tree: publication refused (behind, then inconsistent), /readyz 503 with the reason, metric, error log with both sizes', async () => {
    const t = await start({});
    await submit(t, 4);
    const c1 = (await t.paylog.checkpoints.publish())!;
    await submit(t, 4);
    const c2 = (await t.paylog.checkpoints.publish())!;
    expect(c2.size).toBeGreaterThan(c1.size);
    expect(stateFile(t)).toBe(join(t.dataDir, 'signer', 'last-checkpoint'));
    expect(readFileSync(stateFile(t), 'utf8')).toBe(c2.note);

    await rollBackTo(t.databaseUrl, c1.size);
    // A fresh verify of what the database now holds would pass: it is a consistent shorter log.
    expectPrefixOf(await served(t), [c1, c2]);

    // The attacker lets paylog append: appends go on, signing does not.
    await submit(t, 2);
    await expect(t.paylog.checkpoints.publish()).rejects.toMatchObject({ code: 'INCONSISTENT_TREE', details: { reason: 'behind', signedSize: c2.size, headSize: c1.size + 2 } });
    await submit(t, c2.size - c1.size + 1);
    const forkSize = await treeSize(t.databaseUrl);
    expect(forkSize).toBeGreaterThan(c2.size);
    await expect(t.paylog.checkpoints.publish()).rejects.toMatchObject({ code: 'INCONSISTENT_TREE', details: { reason: 'inconsistent', signedSize: c2.size, headSize: forkSize } });

    // Nothing signed for the fork: no new checkpoint row, the served one is genuine.
    expect(await checkpointRowsAbove(t.databaseUrl, c1.size)).toBe(0);
    expectPrefixOf(await served(t), [c1, c2]);
    expect(readFileSync(stateFile(t), 'utf8')).toBe(c2.note);

    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.headers['retry-after']).toBeDefined();
    expect(ready.json.details.signing).toMatchObject({ refused: true, reason: 'inconsistent', signedSize: c2.size, headSize: forkSize });
    expect(await metric(t, /^paylog_checkpoint_refused_total\{reason="behind"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    expect(await metric(t, /^paylog_checkpoint_refused_total\{reason="inconsistent"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    expect(await metric(t, /^paylog_checkpoint_refusing (\d+)/m)).toBe(1);
    const logged = logObjects(t).filter((l) => l.msg?.startsWith('checkpoint refused'));
    // An error line names both sizes. (Which refusal is logged first depends on when the
    // background publication runs; a reason is logged again only after 10 s.)
    expect(logged.some((l) => l.level === 50 && l.signedSize === c2.size && l.headSize >= c1.size && (l.reason === 'behind' || l.reason === 'inconsistent')), JSON.stringify(logged)).toBe(true);

    // A restart does not forget: the state file is read again.
    const dataDir = t.dataDir;
    const databaseUrl = t.databaseUrl;
    running.splice(running.indexOf(t), 1);
    await t.paylog.close();
    const again = await start({ dataDir, databaseUrl });
    dirs.push(dataDir);
    expect(await checkpointRowsAbove(databaseUrl, c1.size)).toBe(0);
    const ready2 = await again.call(null, 'GET', '/readyz');
    expect(ready2.status).toBe(503);
    expect(ready2.json.details.signing).toMatchObject({ reason: 'inconsistent', signedSize: c2.size });
  });

  it('a state file that does not verify under the service keys stops the start (not ignored)', async () => {
    const dataDir = tmp();
    mkdirSync(join(dataDir, 'signer'), { recursive: true });
    writeFileSync(join(dataDir, 'signer', 'last-checkpoint'), 'dev.paylog.invalid/log\n99\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— dev.paylog.invalid/log AAAAAAAA\n');
    await expect(startTestPaylog({ dataDir })).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
  });
});

/** Runs `npm run restore-log` as an operator would, with the service's settings in the environment. */
function restoreLog(env: Record<string, string>, args: string[]): Promise<CliResult> {
  return runScript('restore-log', args, { env: { ...process.env, ...env } });
}

function dbName(url: string): string {
  return new URL(url).pathname.slice(1);
}

/** As the superuser on the cluster: CREATE DATABASE `to` as a copy of `from` (a backup, or its restore). */
async function copyDatabase(from: string, to: string, dropFirst = false): Promise<void> {
  const admin = inject('adminDatabaseUrl');
  await withClient(admin, async (c: pg.Client) => {
    if (dropFirst) await c.query(`DROP DATABASE ${to} WITH (FORCE)`);
    for (let i = 0; ; i++) {
      try {
        await c.query(`CREATE DATABASE ${to} TEMPLATE ${from}`);
        return;
      } catch (e) {
        // The source may still have a closing connection for a moment.
        if (i >= 50) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
}

describe('the whole database is restored from an earlier copy while the state file survives', () => {
  it('refused the same way; restore-log re-appends the lost tail from an export and the signer resumes; verify-log --state with the old state passes', async () => {
    const dataDir = tmp();
    const databaseUrl = await newTestDatabase();
    let t = await start({ dataDir, databaseUrl });
    await submit(t, 4);
    const c1 = (await t.paylog.checkpoints.publish())!;
    await stop(t);
    const backup = `${dbName(databaseUrl)}_backup`;
    await copyDatabase(dbName(databaseUrl), backup);

    t = await start({ dataDir, databaseUrl });
    const lost = await submit(t, 5);
    const c2 = (await t.paylog.checkpoints.publish())!;
    expect(c2.size).toBeGreaterThan(c1.size);
    const pki = t.paylog.devPki!;
    const auditor = pki.principals['auditor']!;
    const tls = ['--url', t.paylog.url, '--cacert', pki.caPath, '--cert', auditor.certPath, '--key', auditor.keyPath];
    const vkey = t.paylog.logKeys[0]!.vkey;
    // An auditor's state and an export, both taken before the loss.
    const auditorState = join(tmp(), 'verify-state.json');
    const before = await runScript('verify-log', [...tls, '--log-key', vkey, '--state', auditorState, '--json']);
    expect(before.code, before.stderr + before.stdout).toBe(0);
    const exportFile = join(tmp(), 'export.ndjson');
    const exported = await runScript('export-log', [...tls, '--out', exportFile, '--quiet']);
    expect(exported.code, exported.stderr).toBe(0);
    await stop(t);

    // The database is restored from the earlier copy; the state file is not.
    await copyDatabase(backup, dbName(databaseUrl), true);
    t = await start({ dataDir, databaseUrl });
    expect(await treeSize(databaseUrl)).toBe(c1.size);
    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.headers['retry-after']).toBeDefined();
    expect(ready.json.details.signing).toMatchObject({ refused: true, reason: 'behind', signedSize: c2.size, headSize: c1.size });
    expect(await metric(t, /^paylog_checkpoint_refused_total\{reason="behind"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
    expectPrefixOf(await served(t), [c1, c2]);
    expect(await checkpointRowsAbove(databaseUrl, c1.size)).toBe(0);
    await stop(t);

    const env = { PAYLOG_DATA_DIR: dataDir, DATABASE_URL: databaseUrl, PAYLOG_LOG_LEVEL: 'warn' };
    // A wrong file is refused before anything is written.
    const wrong = join(tmp(), 'wrong.ndjson');
    const lines = readFileSync(exportFile, 'utf8').trimEnd().split('\n');
    const last = JSON.parse(lines[lines.length - 1]!) as { index: number; leaf: string };
    expect(last.index).toBe(c2.size - 1);
    const flipped = Buffer.from(last.leaf, 'base64');
    flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 1;
    lines[lines.length - 1] = JSON.stringify({ ...last, leaf: flipped.toString('base64') });
    writeFileSync(wrong, `${lines.join('\n')}\n`);
    const refused = await restoreLog(env, ['--file', wrong]);
    expect(refused.code, refused.stderr).toBe(1);
    expect(await treeSize(databaseUrl)).toBe(c1.size);

    const restored = await restoreLog(env, ['--file', exportFile]);
    expect(restored.code, restored.stderr + restored.stdout).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ fromSize: c1.size, toSize: c2.size, signedSize: c2.size, appended: c2.size - c1.size, signing: 'resumed' });

    t = await start({ dataDir, databaseUrl });
    expect((await t.call(null, 'GET', '/readyz')).status).toBe(200);
    // The lost records are back in the log, but their wrapped keys are not: effectively shredded.
    const release = await t.call('processor-acme', 'POST', `/v1/transactions/${lost[0]}/release`, { purpose: 'capture' });
    expect(release.status, release.text).toBe(410);
    await submit(t, 1);
    const c3 = (await t.paylog.checkpoints.publish())!;
    expect(c3.size).toBeGreaterThan(c2.size);
    const after = await runScript('verify-log', [...tls.map((a) => (a === tls[1] ? t.paylog.url : a)), '--log-key', vkey, '--state', auditorState, '--json']);
    expect(after.code, JSON.stringify(JSON.parse(after.stdout).failures)).toBe(0);
    expect(JSON.parse(after.stdout)).toMatchObject({ ok: true });
    await withClient(inject('adminDatabaseUrl'), (c) => c.query(`DROP DATABASE ${backup} WITH (FORCE)`));
  });
});

describe('a witness that has cosigned another history (whole data directory rolled back, state file included)', () => {
  let w: RunningWitness | undefined;
  afterAll(async () => {
    await w?.close();
  });

  it('the checkpoint it answers 409/422 to is never stored nor served; /readyz 503 (reason witness)', async () => {
    const dataDir = tmp();
    const databaseUrl = await newTestDatabase();
    const first = await start({ dataDir, databaseUrl });
    const logVkey = first.paylog.logKeys[0]!.vkey;
    await stop(first);
    w = await startWitness({ host: '127.0.0.1', port: 0, dataDir: tmp(), name: 'fork.test/w1', logVkeys: [logVkey] });
    const env = { PAYLOG_WITNESSES: `${w.url} ${w.witness.vkey}` };
    let t = await start({ dataDir, databaseUrl, env });
    const origin = t.paylog.config.logOrigin;
    await submit(t, 4);
    const c1 = (await t.paylog.checkpoints.publish())!;
    expect(w.witness.state(origin)?.size).toBe(c1.size);
    const stateAtC1 = readFileSync(stateFile(t), 'utf8');
    await submit(t, 4);
    const c2 = (await t.paylog.checkpoints.publish())!;
    expect(w.witness.state(origin)?.size).toBe(c2.size);
    await stop(t);

    // Database and state file both rolled back to c1 (e.g. the whole directory restored).
    await rollBackTo(databaseUrl, c1.size);
    writeFileSync(join(dataDir, 'signer', 'last-checkpoint'), stateAtC1);
    t = await start({ dataDir, databaseUrl, env });
    await submit(t, c2.size - c1.size + 2);
    await expect(t.paylog.checkpoints.publish()).rejects.toMatchObject({ code: 'INCONSISTENT_TREE', details: { reason: 'witness', signedSize: c2.size } });

    expect(w.witness.state(origin)?.size).toBe(c2.size);
    expect(await checkpointRowsAbove(databaseUrl, c1.size)).toBe(0);
    expectPrefixOf(await served(t), [c1, c2]);
    // Not remembered as signed either.
    expect(readFileSync(stateFile(t), 'utf8')).toBe(stateAtC1);
    const ready = await t.call(null, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.json.details.signing).toMatchObject({ refused: true, reason: 'witness', signedSize: c2.size });
    expect(await metric(t, /^paylog_checkpoint_refused_total\{reason="witness"\} (\d+)/m)).toBeGreaterThanOrEqual(1);
  });
});

describe('production without witnesses', () => {
  it('AWS KMS (AWS_ENDPOINT_URL_KMS) and no PAYLOG_WITNESSES: one warning at start; with a witness list or the local KMS: none', async () => {
    const kmsDir = tmp();
    const endpoint = await startLocalKms({ keyStoreDir: kmsDir });
    // The SDK needs credentials even for the local endpoint (as in test/operations.test.ts).
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'PAYLOGTESTONLY';
    process.env.AWS_SECRET_ACCESS_KEY = 'paylog-test-only';
    try {
      const kms = new PaylogKms(createKmsClient({ endpoint: endpoint.url, region: 'us-east-1' }));
      await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
      await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
      const aws = await start({ env: { AWS_ENDPOINT_URL_KMS: endpoint.url } });
      const warns = logObjects(aws).filter((l) => l.level === 40 && l.setting === 'PAYLOG_WITNESSES');
      expect(warns).toHaveLength(1);
      expect(warns[0]!.msg).toMatch(/no witnesses configured/);
      await stop(aws);
      const local = await start({});
      expect(local.logLines.some((l) => l.includes('no witnesses configured'))).toBe(false);
      await stop(local);
    } finally {
      await endpoint.close();
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    }
  });
});

/** Pids holding established connections on the service port (Linux `ss`), as in test/workers.test.ts. */
function connectionOwners(port: number): Set<string> {
  const out = execFileSync('ss', ['-tnpH', 'state', 'established', `( sport = :${port} )`]).toString();
  return new Set([...out.matchAll(/pid=(\d+)/g)].map((m) => m[1]!));
}

describe('PAYLOG_WORKERS=2 (the service as started: node:cluster, embedded PostgreSQL)', () => {
  let svc: ServiceHandle | undefined;
  afterAll(async () => {
    await svc?.stop();
  });

  it('worker 0 refuses to sign the rolled-back database, and /readyz is 503 with the reason in every worker', async () => {
    svc = await startService({ env: { PAYLOG_WORKERS: '2', PAYLOG_LOG_LEVEL: 'warn' } });
    const s = svc;
    const databaseUrl = embeddedAdminUrl(s.dataDir).replace(/\/postgres$/, '/paylog');
    const agents = Array.from({ length: 8 }, () => new Agent({ connect: { ...s.checkoutTls }, connections: 1 }));
    try {
      const post = async (a: Agent) => {
        const r = await request(`${s.url}/v1/transactions`, { method: 'POST', dispatcher: a, headers: { 'content-type': 'application/json' }, body: JSON.stringify(cardTransaction()) });
        await r.body.text();
        expect(r.statusCode).toBe(201);
      };
      const signedAll = async () => {
        for (let i = 0; i < 400; i++) {
          const [row] = await withClient(databaseUrl, async (c) => (await c.query('SELECT (SELECT count(*) FROM log_entries) AS n, (SELECT max(size) FROM checkpoints) AS s')).rows as Array<{ n: string; s: string | null }>);
          if (row && row.s !== null && Number(row.s) === Number(row.n)) return Number(row.n);
          await new Promise((r) => setTimeout(r, 50));
        }
        throw new Error('the log was not signed');
      };
      await Promise.all(agents.map(post));
      const c1 = await signedAll();
      await Promise.all(agents.map(post));
      const c2 = await signedAll();
      expect(c2).toBeGreaterThan(c1);
      expect(connectionOwners(s.port).size).toBe(2);
      await rollBackTo(databaseUrl, c1);
      await post(agents[1]!); // appended by either worker; worker 0 is told and tries to sign
      const readyz = async (a: Agent) => {
        const r = await request(`${s.url}/readyz`, { dispatcher: a });
        return { status: r.statusCode, retryAfter: r.headers['retry-after'], json: (await r.body.json()) as { details?: { signing?: Record<string, unknown> } } };
      };
      let answers: Awaited<ReturnType<typeof readyz>>[] = [];
      for (let i = 0; i < 200; i++) {
        answers = await Promise.all(agents.map(readyz));
        if (answers.every((a) => a.status === 503)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const a of answers) {
        expect(a.status).toBe(503);
        expect(a.retryAfter).toBeDefined();
        expect(a.json.details?.signing).toMatchObject({ refused: true, reason: 'behind', signedSize: c2, headSize: c1 + 1 });
      }
      expect(connectionOwners(s.port).size).toBe(2); // both workers answered
      expect(await checkpointRowsAbove(databaseUrl, c1)).toBe(0);
    } finally {
      await Promise.all(agents.map((a) => a.close()));
    }
  });
});
