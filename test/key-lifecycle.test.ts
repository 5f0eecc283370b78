/**
 * Key lifecycle (issue 9) through the operator commands and admin routes: early shred, rewrap
 * killed halfway and resumed, retention by crypto-shredding (exactly the expired epochs;
 * verify-log passes; release 410), and a backup taken before the shred (the stopped cluster's
 * files, without the KMS key store) served by a fresh paylog with the same KMS.
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query, withClient } from './helpers/db.js';
import { runScript } from './helpers/cli.js';
import { logLeaves, releaseTo, submitCard } from './helpers/keys.js';
import { expectedRanges, transactionLeaves } from './helpers/shred.js';

/** `cp -a`: the cluster's files keep their owner and modes (the server may run as another OS user). */
function copyPreserving(from: string, to: string): void {
  execFileSync('cp', ['-a', from, to]);
}

const leaves = logLeaves;
const submit = submitCard;
const release = releaseTo;
const adminArgs = (t: TestPaylog) => {
  const a = t.paylog.devPki!.principals.admin!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
};
const auditorArgs = (t: TestPaylog) => {
  const a = t.paylog.devPki!.principals.auditor!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
};

describe('early shred of one transaction and the key-destruction role', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('admin shred → GET shows shredded, release is 410 DATA_SHREDDED and logged; the event names the admin certificate', async () => {
    const id = await submit(t);
    const keep = await submit(t);
    expect((await t.call('checkout', 'POST', `/v1/admin/transactions/${id}/shred`, { reason: 'customer request' })).status).toBe(403);
    expect((await t.call('admin', 'POST', `/v1/admin/transactions/${id}/shred`, {})).status).toBe(422);
    const s = await t.call('admin', 'POST', `/v1/admin/transactions/${id}/shred`, { reason: 'customer request' });
    expect(s.status, s.text).toBe(200);
    const g = await t.call('checkout', 'GET', `/v1/transactions/${id}`);
    expect(g.json.shredded).toBe(true);
    expect(g.text).not.toContain('4111111111111111');
    expect((await t.call('checkout', 'GET', `/v1/transactions/${keep}`)).json.shredded).toBe(false);
    const r = await release(t, id);
    expect(r.status).toBe(410);
    expect(r.json.error.code).toBe('DATA_SHREDDED');
    expect(r.text).not.toContain('4111111111111111');
    expect((await release(t, keep)).status).toBe(200);
    const ls = await leaves(t.databaseUrl);
    const ev = ls.find((l) => l.type === 'key_event' && l.event === 'transaction_shredded' && l.transactionId === id);
    expect(ev.actor).toMatchObject({ role: 'admin', name: 'admin' });
    expect(ev.actor.certificateFingerprint).toMatch(/^sha256:/);
    expect(ev.reason).toBe('customer request');
    const denied = ls.filter((l) => l.type === 'access' && l.transactionId === id);
    expect(denied.at(-1)).toMatchObject({ outcome: 'denied', reason: 'DATA_SHREDDED' });
    expect(ev.index).toBeLessThan(denied.at(-1).index);
    const [dk] = await query(t.databaseUrl, 'SELECT wrapped_key, shredded_at FROM data_keys WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)', [id]);
    expect(dk.wrapped_key).toBeNull();
    expect(dk.shredded_at).not.toBeNull();

    // verify-log still verifies everything and names the shredded transaction's log index, from the leaves alone.
    const at = ls.find((l) => l.type === 'transaction' && l.transactionId === id).index as number;
    await t.paylog.checkpoints.publish();
    const v = await runScript('verify-log', [...auditorArgs(t), '--json']);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    const rep = JSON.parse(v.stdout);
    expect(rep.ok).toBe(true);
    expect(rep.shredded.ranges).toEqual([[at, at]]);
    expect(rep.shredded.transactions).toBe(1);
    expect(ev.epoch).toMatch(/^acme\//); // hierarchical mode: the leaf names the epoch too
    expect(rep.shredded.events).toEqual([
      { index: ev.index, event: 'transaction_shredded', time: new Date(ev.time).toISOString(), actor: 'admin:admin', transactionId: id, epoch: ev.epoch, reason: 'customer request', transactions: 1, ranges: [[at, at]] },
    ]);
    // The human report, and the bundled standalone verifier built from the same code, say the same.
    const human = await runScript('verify-log', auditorArgs(t));
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`shredded:   1 transaction at log indices [[${at},${at}]]`);
    expect(human.stdout).toContain(`index ${ev.index} transaction_shredded ${id}`);
    const dir = mkdtempSync(join(tmpdir(), 'paylog-bundle-'));
    try {
      const bundle = join(dir, 'paylog-verify.mjs');
      const built = await runScript('build-verifier', ['--outfile', bundle]);
      expect(built.code, built.stderr).toBe(0);
      const b = await runScript('verify-log', [...auditorArgs(t), '--json'], { bin: process.execPath, cwd: process.cwd(), script: bundle });
      expect(b.code, b.stdout + b.stderr).toBe(0);
      expect(JSON.parse(b.stdout).shredded).toEqual(rep.shredded);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the runtime role cannot replace or destroy key material; paylog_keys can, and cannot touch the log', async () => {
    await withClient(t.databaseUrl, async (c) => {
      await c.query('SET ROLE paylog_app');
      for (const sql of [
        'UPDATE data_keys SET wrapped_key = NULL',
        'UPDATE key_epochs SET wrapped_private_key = NULL',
        'DELETE FROM data_keys',
        'DELETE FROM key_epochs',
        // The KMS keys of each key period (retention destroys each): the runtime role can neither add, change nor remove one.
        "INSERT INTO key_period_kms_keys (granularity, period_start, kms_key_id, role) VALUES ('month', now(), 'arn:attacker', 'rewrap_source')",
        "UPDATE key_period_kms_keys SET kms_key_id = 'arn:attacker'",
        'DELETE FROM key_period_kms_keys',
      ]) {
        await expect(c.query(sql), sql).rejects.toMatchObject({ code: '42501' });
      }
      await c.query('RESET ROLE');
      await c.query('SET ROLE paylog_keys');
      await expect(c.query('DELETE FROM data_keys')).rejects.toMatchObject({ code: '42501' });
      // paylog_keys adds a period's KMS keys (rewrap) and can never change or remove one.
      await expect(c.query("UPDATE key_period_kms_keys SET kms_key_id = 'x'")).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('DELETE FROM key_period_kms_keys')).rejects.toMatchObject({ code: '42501' });
      await expect(c.query("INSERT INTO log_entries (idx, entry_type, leaf) VALUES (999999, 'x', '\\x00')")).rejects.toMatchObject({ code: '42501' });
      await c.query('BEGIN');
      await c.query('UPDATE data_keys SET shredded_at = shredded_at'); // allowed (column grant)
      await c.query('ROLLBACK');
    });
  });
});

describe('rewrap: batched, killed halfway, resumed', () => {
  it('npm run keys -- rewrap --new-period-keys --to, killed after its first batch and resumed with --run, leaves every epoch key under a new key of its period and every v1 key under --to, once', { timeout: 240_000 }, async () => {
    const databaseUrl = await newTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'paylog-rewrap-'));
    const v1 = await startTestPaylog({ databaseUrl, dataDir, env: { PAYLOG_KEY_MODE: 'per-transaction' } });
    const v1Ids = [await submit(v1), await submit(v1)];
    await v1.paylog.close();
    const t = await startTestPaylog({ databaseUrl, dataDir });
    try {
      const ids = [await submit(t), await submit(t, { processor: 'globex' })];
      for (let i = 0; i < 3; i++) expect((await t.call('admin', 'POST', '/v1/admin/keys/rotate', { processor: 'acme' })).status).toBe(200);
      ids.push(await submit(t));
      const target = await t.paylog.kms.ensureKey('paylog-rewrap-target', 'SYMMETRIC_DEFAULT');
      const [{ n: keysTotal }] = await query(databaseUrl, 'SELECT (SELECT count(*) FROM key_epochs) + (SELECT count(*) FROM data_keys WHERE kms_key_id IS NOT NULL) AS n');
      expect(Number(keysTotal)).toBe(5 + 2);
      // An epoch key never moves to --to: a key period's own key is refused as the v1 target too.
      const [period] = await query(databaseUrl, 'SELECT granularity, period_start, kms_key_id FROM key_periods');
      const refused = await t.call('admin', 'POST', '/v1/admin/keys/rewrap', { to: period.kms_key_id });
      expect(refused.status).toBe(422);
      expect(refused.json.error.message).toMatch(/not a key period's key/);
      const periodTarget = async () =>
        (await query(databaseUrl, 'SELECT kms_key_id FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2 AND round = 1', [period.granularity, period.period_start]))[0]?.kms_key_id as string | undefined;

      // First run: its second batch is held up by a row lock on the third epoch (in batch 2),
      // and the command is killed (SIGKILL) as soon as it has reported its first batch.
      let stderr = '';
      await withClient(databaseUrl, async (lock) => {
        await lock.query('BEGIN');
        await lock.query("SELECT 1 FROM key_epochs WHERE epoch_id = 'acme/2026-12/2' FOR UPDATE");
        await new Promise<void>((resolve, reject) => {
          // One process (node --import tsx), so SIGKILL really ends the command.
          const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/keys.ts', 'rewrap', '--new-period-keys', '--to', target, '--batch', '2', ...adminArgs(t)], { stdio: ['ignore', 'pipe', 'pipe'] });
          p.stderr.on('data', (d) => {
            stderr += String(d);
            if (stderr.includes('rewrap (run')) p.kill('SIGKILL');
          });
          p.on('error', reject);
          p.on('exit', () => resolve());
        });
        await lock.query('ROLLBACK');
      });
      const run = /rewrap \(run ([0-9a-f-]{36})\)/.exec(stderr)?.[1];
      expect(run, stderr).toBeDefined();
      expect(stderr).toContain(`rerun with --run ${run}`);
      const newKey = await periodTarget();
      expect(newKey).toBeDefined();
      expect(newKey).not.toBe(period.kms_key_id);
      expect(await t.paylog.kms.keyArn(`alias/paylog-epoch-month-2026-12-r1`)).toBe(newKey);
      // The batch that was in flight in the service finishes on its own.
      for (let i = 0; i < 100; i++) {
        const [{ n }] = await query(databaseUrl, 'SELECT count(*)::int AS n FROM key_epochs WHERE kms_key_id = $1', [newKey]);
        if (n >= 4) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const [{ n: left }] = await query(databaseUrl, 'SELECT (SELECT count(*) FROM key_epochs WHERE kms_key_id <> $1) + (SELECT count(*) FROM data_keys WHERE kms_key_id <> $2) AS n', [newKey, target]);
      expect(Number(left)).toBeGreaterThan(0);
      expect(Number(left)).toBeLessThan(7);

      const second = await runScript('keys', ['rewrap', '--new-period-keys', '--to', target, '--run', run!, '--batch', '2', ...adminArgs(t)]);
      expect(second.code, second.stderr).toBe(0);
      expect(JSON.parse(second.stdout)).toMatchObject({ done: true, to: target, run, skipped: { count: 0 } });
      expect(await periodTarget()).toBe(newKey); // the resumed run kept its key: no second round
      const epochKeys = await query(databaseUrl, 'SELECT kms_key_id FROM key_epochs');
      expect(epochKeys.every((r) => r.kms_key_id === newKey)).toBe(true);
      const v1Keys = await query(databaseUrl, 'SELECT kms_key_id FROM data_keys WHERE kms_key_id IS NOT NULL');
      expect(v1Keys.every((r) => r.kms_key_id === target)).toBe(true);
      // One key event per epoch rewrapped (+ one per v1 batch), at most one batch redone.
      const ls = await leaves(databaseUrl);
      const events = ls.filter((l) => l.type === 'key_event' && l.event === 'epoch_rewrapped');
      const epochEvents = events.filter((l) => l.epochId);
      expect(new Set(epochEvents.map((e) => e.epochId)).size).toBe(5);
      expect(epochEvents.length).toBeLessThanOrEqual(5 + 2);
      expect(epochEvents.every((e) => e.kmsKeyId === newKey && e.previousKmsKeyId === period.kms_key_id)).toBe(true);
      // The rows hold what the last event for each epoch committed to.
      const epochRows = await query(databaseUrl, "SELECT epoch_id, encode(wrapped_key_sha256, 'base64') AS h FROM key_epochs");
      for (const r of epochRows) expect(epochEvents.filter((e) => e.epochId === r.epoch_id).at(-1).wrappedKeySha256).toBe(r.h);
      // Everything still opens, through the new KMS keys.
      for (const id of [...v1Ids, ids[0]!, ids[2]!]) expect((await release(t, id)).status).toBe(200);
      expect((await release(t, ids[1]!, 'processor-globex')).status).toBe(200);
      // A rotation after the rewrap wraps the new epoch under the period's newest key.
      expect((await t.call('admin', 'POST', '/v1/admin/keys/rotate', { processor: 'acme' })).status).toBe(200);
      const [{ kms_key_id: rotated }] = await query(databaseUrl, "SELECT kms_key_id FROM key_epochs WHERE epoch_id = 'acme/2026-12/4'");
      expect(rotated).toBe(newKey);
      const status = await runScript('keys', ['status', ...adminArgs(t)]);
      expect(status.code).toBe(0);
      const st = JSON.parse(status.stdout);
      expect(st.epochs.filter((e: any) => e.state === 'active').length).toBe(2);
      expect(st.epochs.every((e: any) => e.kmsKeyId === newKey)).toBe(true);
      expect(st.keyPeriods[0].kmsKeyIds).toEqual([period.kms_key_id, newKey]);
    } finally {
      await t.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('retention by crypto-shredding, and a backup taken before the shred', () => {
  let dir: string;
  let now = new Date(Date.UTC(2026, 0, 1, 10, 30));
  const env = { PAYLOG_KEY_EPOCH: 'hour', PAYLOG_RETENTION: 'PT2H' };
  let oldIds: string[] = [];
  let newIds: string[] = [];
  let backup: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'paylog-retention-'));
    backup = mkdtempSync(join(tmpdir(), 'paylog-backup-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(backup, { recursive: true, force: true });
  });

  it('shreds exactly the expired epochs; dry run changes nothing; verify-log passes; release is 410', { timeout: 240_000 }, async () => {
    let t = await startTestPaylog({ embedded: true, dataDir: dir, env, clock: () => now });
    oldIds = [await submit(t), await submit(t, { processor: 'globex' })];
    now = new Date(Date.UTC(2026, 0, 1, 11, 30));
    newIds = [await submit(t), await submit(t, { processor: 'globex' })];
    await t.paylog.close();
    // Backup: the stopped cluster's files only (the KMS key store stays out of it).
    copyPreserving(join(dir, 'pg'), join(backup, 'pg'));
    now = new Date(Date.UTC(2026, 0, 1, 13, 5)); // cutoff = 11:05: the 10:00–11:00 period has expired, 11:00–12:00 not
    t = await startTestPaylog({ embedded: true, dataDir: dir, env, clock: () => now });
    try {
      const dry = await runScript('retention', ['apply', '--dry-run', ...adminArgs(t)]);
      expect(dry.code, dry.stderr).toBe(0);
      const dr = JSON.parse(dry.stdout);
      expect(dr.dryRun).toBe(true);
      expect(dr.epochs.map((e: any) => e.epochId).sort()).toEqual(['acme/2026-01-01T10/0', 'globex/2026-01-01T10/0']);
      expect((await release(t, oldIds[0]!)).status).toBe(200); // nothing shredded by a dry run

      const run = await runScript('retention', ['apply', ...adminArgs(t)]);
      expect(run.code, run.stderr).toBe(0);
      const rep = JSON.parse(run.stdout);
      expect(rep).toMatchObject({ policy: 'PAYLOG_RETENTION=PT2H', cutoff: '2026-01-01T11:05:00.000Z', dryRun: false });
      expect(rep.epochs.map((e: any) => e.epochId).sort()).toEqual(['acme/2026-01-01T10/0', 'globex/2026-01-01T10/0']);
      expect(rep.periods).toHaveLength(1);
      expect(rep.periods[0].scheduledDeletion).not.toBeNull();

      const r = await release(t, oldIds[0]!);
      expect(r.status).toBe(410);
      expect(r.json.error.code).toBe('DATA_SHREDDED');
      expect((await release(t, oldIds[1]!, 'processor-globex')).status).toBe(410);
      expect((await t.call('auditor', 'GET', `/v1/transactions/${oldIds[0]}`)).json.shredded).toBe(true);
      expect((await release(t, newIds[0]!)).status).toBe(200);
      expect((await release(t, newIds[1]!, 'processor-globex')).status).toBe(200);
      // The period's KMS key is pending deletion, as KMS would have it.
      const [p] = await query(t.databaseUrl, "SELECT kms_key_id, state FROM key_periods WHERE period_start = '2026-01-01T10:00:00Z'");
      expect(p.state).toBe('pending_deletion');
      expect(await t.paylog.kms.keyState(p.kms_key_id)).toBe('PendingDeletion');
      // Each shredded epoch and the run itself are leaves committed before the change; the log verifies.
      const ls = await leaves(t.databaseUrl);
      const shredded = ls.filter((l) => l.type === 'key_event' && l.event === 'epoch_shredded');
      expect(shredded.map((l) => l.epochId).sort()).toEqual(['acme/2026-01-01T10/0', 'globex/2026-01-01T10/0']);
      expect(shredded.every((l) => l.policy === 'PAYLOG_RETENTION=PT2H' && l.actor.role === 'admin')).toBe(true);
      expect(ls.some((l) => l.type === 'key_event' && l.event === 'retention_run' && l.index === rep.logIndex)).toBe(true);
      // Access entries are never shredded.
      expect(ls.filter((l) => l.type === 'access' && l.transactionId === oldIds[0]).length).toBe(2);
      await t.paylog.checkpoints.publish();
      const v = await runScript('verify-log', [...auditorArgs(t), '--json']);
      expect(v.code, v.stdout + v.stderr).toBe(0);
      // ... and reports exactly the expired epochs' transactions as shredded ranges, with each shred's policy and time.
      const gone = new Set(['acme/2026-01-01T10/0', 'globex/2026-01-01T10/0']);
      const txs = await transactionLeaves(t.databaseUrl);
      const oldIdx = txs.filter((x) => oldIds.includes(x.id)).map((x) => x.index);
      expect(oldIdx).toHaveLength(2);
      const want = expectedRanges(txs, (x) => x.epoch !== undefined && gone.has(x.epoch));
      expect(want.flat().length).toBeGreaterThan(0);
      const vr = JSON.parse(v.stdout);
      expect(vr.shredded.ranges).toEqual(want);
      expect(vr.shredded.transactions).toBe(2);
      for (const i of oldIdx) expect(vr.shredded.ranges.some(([a, b]: number[]) => a! <= i && i <= b!)).toBe(true);
      for (const x of txs.filter((x) => newIds.includes(x.id))) expect(vr.shredded.ranges.some(([a, b]: number[]) => a! <= x.index && x.index <= b!)).toBe(false);
      const evs = vr.shredded.events.filter((e: any) => e.event === 'epoch_shredded');
      expect(evs.map((e: any) => e.epoch).sort()).toEqual([...gone].sort());
      for (const e of evs) {
        const leaf = shredded.find((l) => l.epochId === e.epoch);
        expect(e).toMatchObject({ index: leaf.index, time: new Date(leaf.time).toISOString(), actor: 'admin:admin', transactions: 1, policy: { retention: 'PT2H', asOf: '2026-01-01T13:05:00.000Z', cutoff: '2026-01-01T11:05:00.000Z' } });
      }
      expect(vr.shredded.events.find((e: any) => e.event === 'retention_run')).toMatchObject({ index: rep.logIndex, transactions: 0, policy: { retention: 'PT2H' } });
    } finally {
      await t.paylog.close();
    }
  });

  it('the pre-shred backup, served by a fresh paylog with the same KMS, cannot release the shredded transactions', async () => {
    // The restored data dir: backup cluster files + the live KMS key store (same KMS) + the PKI.
    cpSync(join(dir, 'kms'), join(backup, 'kms'), { recursive: true });
    cpSync(join(dir, 'pki'), join(backup, 'pki'), { recursive: true });
    const t = await startTestPaylog({ embedded: true, dataDir: backup, env, clock: () => now });
    try {
      // The backup still holds the epoch's wrapped private key and calls it active ...
      const [e] = await query(t.databaseUrl, "SELECT wrapped_private_key IS NOT NULL AS has, shredded_at FROM key_epochs WHERE epoch_id = 'acme/2026-01-01T10/0'");
      expect(e).toMatchObject({ has: true, shredded_at: null });
      // ... but KMS refuses to unwrap it: the period's KMS key is pending deletion.
      const r = await release(t, oldIds[0]!);
      expect(r.status).toBe(410);
      expect(r.json.error.code).toBe('DATA_SHREDDED');
      expect(r.text).not.toContain('4111111111111111');
      expect((await release(t, oldIds[1]!, 'processor-globex')).status).toBe(410);
      expect((await release(t, newIds[0]!)).status).toBe(200);
    } finally {
      await t.paylog.close();
    }
  });
});

describe('the scheduled retention run', () => {
  it('runs in the service without an operator: a system retention_run, and the expired epoch is shredded', { timeout: 180_000 }, async () => {
    let now = new Date(Date.UTC(2026, 11, 1, 10, 30, 0, 0));
    const env = { PAYLOG_KEY_EPOCH: 'hour', PAYLOG_RETENTION: 'PT2H' };
    // The record is submitted by a first start (no retention scheduled), and the scheduled run is
    // watched in a second start whose clock is already past the retention: in one start, a run
    // firing 3 s after start could come before the clock was moved (a loaded machine can take that
    // long for the first submission, which creates the epoch), and the next run is a day later.
    const databaseUrl = await newTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'paylog-scheduled-retention-'));
    let id: string;
    const first = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now });
    try {
      id = await submit(first);
    } finally {
      await first.stop();
    }
    now = new Date(Date.UTC(2026, 11, 1, 14, 0, 0, 0)); // the 10:00 epoch ended more than 2 h ago
    const t = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now, retentionFirstRunMs: 3000 });
    try {
      const find = async () => (await leaves(t.databaseUrl)).find((l) => l.type === 'key_event' && l.event === 'retention_run');
      let run = await find();
      for (let i = 0; i < 150 && !run; i++) {
        await new Promise((r) => setTimeout(r, 200));
        run = await find();
      }
      expect(run, 'no retention_run within 30 s of start').toBeDefined();
      expect(run.actor).toEqual({ role: 'system', name: 'paylog' });
      const ls = await leaves(t.databaseUrl);
      expect(ls.some((l) => l.type === 'key_event' && l.event === 'epoch_shredded' && l.epochId === 'acme/2026-12-01T10/0')).toBe(true);
      const r = await release(t, id);
      expect(r.status, r.text).toBe(410);
    } finally {
      await t.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
