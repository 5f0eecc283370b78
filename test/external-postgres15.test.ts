/**
 * Issue 9 "done when": rotation, rewrap and retention work through the operator commands on an
 * EXTERNAL PostgreSQL 15 (the production path: DATABASE_URL, migrations, the paylog_app /
 * paylog_keys roles), not only on the embedded PostgreSQL 17 the rest of the suite uses.
 *
 * The server is Debian's postgresql-15 (/usr/lib/postgresql/15), started as its own cluster in a
 * temporary directory (as root it runs as the `postgres` OS user, see src/db/embedded.ts) and
 * reached only through DATABASE_URL. CI installs the package (.ci/run); when the binaries are
 * missing this test FAILS, saying how to install them — it never skips.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js';
import { createDatabase } from '../src/db/connection.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query } from './helpers/db.js';
import { runScript } from './helpers/cli.js';
import { expectedRanges, transactionLeaves } from './helpers/shred.js';

const PG15 = process.env.PAYLOG_TEST_PG15_DIR ?? '/usr/lib/postgresql/15';
const INSTALL_HINT =
  `PostgreSQL 15 server binaries not found at ${PG15}/bin/postgres. Install them: ` +
  '`DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15` (Debian/Ubuntu; .ci/run does this), ' +
  'or set PAYLOG_TEST_PG15_DIR to a PostgreSQL 15 build directory holding bin/.';

let server: EmbeddedServer | undefined;
let dir: string;
let t: TestPaylog | undefined;

const argsOf = (who: 'admin' | 'auditor') => {
  const p = t!.paylog.devPki!;
  const a = p.principals[who]!;
  return ['--url', t!.paylog.url, '--cacert', p.caPath, '--cert', a.certPath, '--key', a.keyPath];
};
async function submit(processor = 'acme'): Promise<string> {
  const body = cardTransaction({ processor });
  const r = await t!.call('checkout', 'POST', '/v1/transactions', body);
  expect(r.status, r.text).toBe(201);
  return body.transactionId as string;
}
const release = (id: string, who: 'processor-acme' | 'processor-globex' = 'processor-acme') => t!.call(who, 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' });

describe('external PostgreSQL 15: rotate, rewrap and retention through the commands', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'paylog-pg15-'));
  });
  afterAll(async () => {
    await t?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keys rotate, keys rewrap --new-period-keys --to, retention apply, then verify-log passes and names the shredded ranges', { timeout: 180_000 }, async () => {
    if (!existsSync(join(PG15, 'bin', 'postgres'))) throw new Error(INSTALL_HINT);
    server = await startEmbeddedPostgres({ dataDir: join(dir, 'pg15'), ownedRoot: dir, binaries: PG15 });
    const [{ server_version: version }] = await query(server.adminUrl, 'SHOW server_version');
    expect(version).toMatch(/^15\./);

    // paylog as in production: only a DATABASE_URL (superuser of the external server → migrations and roles).
    const databaseUrl = await createDatabase(server.adminUrl, 'paylog_pg15');
    const dataDir = join(dir, 'paylog');
    let now = new Date(Date.UTC(2026, 0, 1, 10, 30));
    const env = { PAYLOG_KEY_EPOCH: 'hour', PAYLOG_RETENTION: 'PT2H' };
    // One envelope-v1 record (per-transaction mode) first, then hierarchical mode.
    t = await startTestPaylog({ databaseUrl, dataDir, env: { ...env, PAYLOG_KEY_MODE: 'per-transaction' }, clock: () => now });
    const v1Id = await submit();
    await t.paylog.close();
    t = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now });
    const roles = await query(server.adminUrl, "SELECT rolname FROM pg_roles WHERE rolname IN ('paylog_app', 'paylog_keys') ORDER BY rolname");
    expect(roles.map((r) => r.rolname)).toEqual(['paylog_app', 'paylog_keys']);

    const oldIds = [await submit(), await submit('globex')];
    // npm run keys -- rotate: new epochs now; the old ones are retired (decrypt-only).
    const rot = await runScript('keys', ['rotate', ...argsOf('admin')]);
    expect(rot.code, rot.stderr).toBe(0);
    expect(JSON.parse(rot.stdout).epochs.sort()).toEqual(['acme/2026-01-01T10/1', 'globex/2026-01-01T10/1']);
    oldIds.push(await submit());
    now = new Date(Date.UTC(2026, 0, 1, 11, 30));
    const newIds = [await submit(), await submit('globex')];

    // npm run keys -- rewrap --new-period-keys --to <KMS key id>: every epoch key under a new KMS
    // key of its own period (alias ...-r1), the v1 data key under the named key.
    const target = await t.paylog.kms.ensureKey('paylog-pg15-rewrap', 'SYMMETRIC_DEFAULT');
    const rw = await runScript('keys', ['rewrap', '--new-period-keys', '--to', target, ...argsOf('admin')]);
    expect(rw.code, rw.stderr).toBe(0);
    expect(JSON.parse(rw.stdout)).toMatchObject({ done: true, to: target, rewrapped: 6 + 1, skipped: { count: 0 } });
    const epochKeys = await query(
      databaseUrl,
      "SELECT e.kms_key_id, k.kms_key_id AS period_key FROM key_epochs e LEFT JOIN key_period_kms_keys k ON k.granularity = e.granularity AND k.period_start = e.period_start AND k.round = 1",
    );
    expect(epochKeys).toHaveLength(6);
    expect(epochKeys.every((r) => r.kms_key_id === r.period_key)).toBe(true);
    expect(new Set(epochKeys.map((r) => r.kms_key_id)).size).toBe(2); // two periods, one new key each
    const v1Keys = await query(databaseUrl, 'SELECT kms_key_id FROM data_keys WHERE kms_key_id IS NOT NULL');
    expect(v1Keys).toEqual([{ kms_key_id: target }]);
    for (const id of [v1Id, oldIds[0]!, oldIds[2]!, newIds[0]!]) expect((await release(id)).status).toBe(200);

    // npm run retention -- apply, two hours later (cutoff 11:05): the 10:00–11:00 epochs and the 10:30 v1 record.
    now = new Date(Date.UTC(2026, 0, 1, 13, 5));
    const run = await runScript('retention', ['apply', ...argsOf('admin')]);
    expect(run.code, run.stderr).toBe(0);
    const rep = JSON.parse(run.stdout);
    expect(rep).toMatchObject({ policy: 'PAYLOG_RETENTION=PT2H', cutoff: '2026-01-01T11:05:00.000Z', dryRun: false, v1Records: 1 });
    const gone = ['acme/2026-01-01T10/0', 'acme/2026-01-01T10/1', 'globex/2026-01-01T10/0', 'globex/2026-01-01T10/1'];
    expect(rep.epochs.map((e: { epochId: string }) => e.epochId).sort()).toEqual(gone);
    // Both KMS keys of the 10:00 period (its own and the rewrap's) are scheduled for deletion.
    expect(rep.periods).toHaveLength(1);
    expect(rep.periods[0].kmsKeys.map((k: { action: string }) => k.action)).toEqual(['schedule', 'schedule']);
    for (const k of rep.periods[0].kmsKeys) expect(await t.paylog.kms.keyState(k.kmsKeyId)).toBe('PendingDeletion');
    for (const id of [v1Id, oldIds[0]!, oldIds[2]!]) expect((await release(id)).json?.error?.code).toBe('DATA_SHREDDED');
    expect((await release(oldIds[1]!, 'processor-globex')).status).toBe(410);
    expect((await release(newIds[0]!)).status).toBe(200);
    expect((await release(newIds[1]!, 'processor-globex')).status).toBe(200);

    // The log still verifies 100% and names exactly the shredded transactions' indices.
    await t.paylog.checkpoints.publish();
    const v = await runScript('verify-log', [...argsOf('auditor'), '--json']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const vr = JSON.parse(v.stdout);
    expect(vr.ok).toBe(true);
    const txs = await transactionLeaves(databaseUrl);
    const shreddedIds = new Set([v1Id, ...oldIds]);
    expect(vr.shredded.ranges).toEqual(expectedRanges(txs, (x) => shreddedIds.has(x.id)));
    expect(vr.shredded.transactions).toBe(4);
    const byKind = (k: string) => vr.shredded.events.filter((e: { event: string }) => e.event === k);
    expect(byKind('epoch_shredded').map((e: { epoch: string }) => e.epoch).sort()).toEqual(gone);
    expect(byKind('retention_run')).toHaveLength(1);
    expect(byKind('retention_run')[0]).toMatchObject({ transactions: 1, policy: { retention: 'PT2H', cutoff: '2026-01-01T11:05:00.000Z' } });
    const v1Index = txs.find((x) => x.id === v1Id)!.index;
    expect(byKind('retention_run')[0].ranges).toEqual([[v1Index, v1Index]]);
  });
});
