/**
 * Issue 17, item 6 and item 8 (first half): after a rewrap, shredding still reaches backups, and
 * one bad key_epochs row does not stop a rewrap.
 *
 * The attack exactly as the issue describes it: rewrap, take a copy of the database AFTER the
 * rewrap (the stopped cluster's files), let retention shred the period on the live service,
 * then with the copy and the same KMS try KMS Decrypt of every wrapped epoch key the copy holds
 * (the real KMS client against the local endpoint) and release through a paylog started from
 * the copy. The runtime role `paylog_app` plants the bad rows (garbage wrapped key; a genuine
 * wrapped key under another epoch's id, so its KMS context does not match; a row naming another
 * period).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query, withClient } from './helpers/db.js';
import { runScript } from './helpers/cli.js';
import { releaseTo as release, submitCard as submit } from './helpers/keys.js';
import { decodeLeaf } from '../src/log/leaf.js';
import { epochKmsContext } from '../src/kms/epoch-keys.js';
import { isPaylogError } from '../src/errors.js';

const PAN = '4111111111111111';
const env = { PAYLOG_KEY_EPOCH: 'hour', PAYLOG_RETENTION: 'PT2H' };
const P10 = '2026-01-01T10:00:00.000Z';
const P11 = '2026-01-01T11:00:00.000Z';
/** Epochs the service makes: period 10:00 (acme rotated once) and period 11:00. */
const GENUINE_10 = ['acme/2026-01-01T10/0', 'acme/2026-01-01T10/1', 'globex/2026-01-01T10/0'];
const GENUINE_11 = ['acme/2026-01-01T11/0', 'globex/2026-01-01T11/0'];
/** Rows planted by the runtime role. */
const PLANTED = ['acme/2026-01-01T10/7', 'acme/2026-01-01T10/8', 'globex/2026-01-01T11/9'];

const adminArgs = (t: TestPaylog) => {
  const a = t.paylog.devPki!.principals.admin!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
};
const auditorArgs = (t: TestPaylog) => {
  const a = t.paylog.devPki!.principals.auditor!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
};

/** Key events of the log, decoded as they are (leaf format v2/v3 names), with their index. */
async function keyEvents(databaseUrl: string): Promise<any[]> {
  const rows = await query<{ idx: string; leaf: Buffer }>(databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
  return rows.map((r) => ({ index: Number(r.idx), ...(decodeLeaf(r.leaf) as any) })).filter((l) => l.type === 'key_event');
}

/** Every KMS key recorded for a period: its own (key_periods) first, then each rewrap's. */
async function periodKeys(databaseUrl: string, start: string): Promise<string[]> {
  const [p] = await query(databaseUrl, 'SELECT kms_key_id FROM key_periods WHERE granularity = $1 AND period_start = $2', ['hour', start]);
  const rows = await query(databaseUrl, 'SELECT kms_key_id FROM key_period_kms_keys WHERE granularity = $1 AND period_start = $2 ORDER BY round', ['hour', start]);
  return [p.kms_key_id, ...rows.map((r) => r.kms_key_id)];
}

async function rewrap(t: TestPaylog, args: string[]): Promise<any> {
  const r = await runScript('keys', ['rewrap', ...args, ...adminArgs(t)]);
  expect(r.code, r.stdout + r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** `cp -a`: the cluster's files keep their owner and modes. */
const copyPreserving = (from: string, to: string) => execFileSync('cp', ['-a', from, to]);

describe('backups stay shredded after a rewrap; a bad key_epochs row does not stop rewrap', () => {
  let dir: string;
  let copy: string;
  let now = new Date(Date.UTC(2026, 0, 1, 10, 30));
  const ids10: string[] = [];
  const ids11: string[] = [];
  let run1: any;
  let keys10: string[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'paylog-rewrap-live-'));
    copy = mkdtempSync(join(tmpdir(), 'paylog-rewrap-copy-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(copy, { recursive: true, force: true });
  });

  it('rewrap --new-period-keys wraps each epoch under a new key of its own period; planted rows are skipped and reported, and the batch goes on', { timeout: 240_000 }, async () => {
    const t = await startTestPaylog({ embedded: true, dataDir: dir, env, clock: () => now });
    try {
      ids10.push(await submit(t), await submit(t, { processor: 'globex' }));
      expect((await t.call('admin', 'POST', '/v1/admin/keys/rotate', { processor: 'acme' })).status).toBe(200);
      ids10.push(await submit(t));
      now = new Date(Date.UTC(2026, 0, 1, 11, 30));
      ids11.push(await submit(t), await submit(t, { processor: 'globex' }));
      const originals = { p10: (await periodKeys(t.databaseUrl, P10))[0]!, p11: (await periodKeys(t.databaseUrl, P11))[0]! };

      // The runtime role plants three rows it is allowed to INSERT (retired, so nothing seals to them).
      await withClient(t.databaseUrl, async (c) => {
        const [genuine] = (await c.query("SELECT * FROM key_epochs WHERE epoch_id = 'acme/2026-01-01T10/0'")).rows;
        await c.query('SET ROLE paylog_app');
        const plant = (id: string, gen: number, start: string, wrapped: Buffer, pk: Buffer, kms: string) =>
          c.query(
            `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, kms_key_id, wrapped_private_key, retired_at)
             VALUES ($1, $2, 'hour', $3, $3::timestamptz + interval '1 hour', $4, $5, $6, $7, now())`,
            [id, id.split('/')[0], start, gen, pk, kms, wrapped],
          );
        await plant(PLANTED[0]!, 7, P10, randomBytes(180), randomBytes(32), originals.p10); // garbage wrapped key
        await plant(PLANTED[1]!, 8, P10, genuine.wrapped_private_key, genuine.public_key, originals.p10); // genuine blob, other epoch's KMS context
        await plant(PLANTED[2]!, 9, P10, randomBytes(180), randomBytes(32), originals.p10); // its id names another period
      });

      run1 = await rewrap(t, ['--new-period-keys', '--batch', '2']);
      expect(run1).toMatchObject({ done: true, periodKeys: 'new', rewrapped: GENUINE_10.length + GENUINE_11.length });
      expect(run1.skipped.count).toBe(3);
      expect([...run1.skipped.epochIds].sort()).toEqual([...PLANTED].sort());
      for (const id of PLANTED) expect(t.logLines.some((l) => l.includes('"level":50') && l.includes(id) && l.includes('rewrap skipped'))).toBe(true);

      // Each period got one new key of its own (alias ...-r1), recorded before use; every genuine
      // epoch is under its own period's new key; no key is shared between periods.
      keys10 = await periodKeys(t.databaseUrl, P10);
      const keys11 = await periodKeys(t.databaseUrl, P11);
      expect(keys10).toHaveLength(2);
      expect(keys11).toHaveLength(2);
      expect(new Set([...keys10, ...keys11]).size).toBe(4);
      expect(await t.paylog.kms.keyArn('alias/paylog-epoch-hour-2026-01-01T10-r1')).toBe(keys10[1]);
      expect(await t.paylog.kms.keyArn('alias/paylog-epoch-hour-2026-01-01T11-r1')).toBe(keys11[1]);
      const rows = await query(t.databaseUrl, 'SELECT epoch_id, kms_key_id FROM key_epochs');
      const kmsOf = new Map(rows.map((r) => [r.epoch_id, r.kms_key_id]));
      for (const id of GENUINE_10) expect(kmsOf.get(id)).toBe(keys10[1]);
      for (const id of GENUINE_11) expect(kmsOf.get(id)).toBe(keys11[1]);
      for (const id of PLANTED) expect(kmsOf.get(id)).toBe(originals.p10); // left as they were
      for (const [i, id] of [...ids10, ...ids11].entries()) expect((await release(t, id, i === 1 || i === 4 ? 'processor-globex' : 'processor-acme')).status).toBe(200);
    } finally {
      await t.stop();
    }
    // The copy of the database taken AFTER the rewrap (the stopped cluster's files).
    copyPreserving(join(dir, 'pg'), join(copy, 'pg'));
  });

  it('rerun: the same run resumes with nothing to redo; a new run moves every epoch again under yet another key of its period; neither loops on the bad rows', { timeout: 240_000 }, async () => {
    const t = await startTestPaylog({ embedded: true, dataDir: dir, env, clock: () => now });
    try {
      const resumed = await rewrap(t, ['--new-period-keys', '--run', run1.run, '--batch', '2']);
      expect(resumed).toMatchObject({ done: true, rewrapped: 0, run: run1.run });
      expect(resumed.skipped.count).toBe(3);
      const run2 = await rewrap(t, ['--new-period-keys']);
      expect(run2.run).not.toBe(run1.run);
      expect(run2).toMatchObject({ done: true, rewrapped: GENUINE_10.length + GENUINE_11.length });
      expect(run2.skipped.count).toBe(3);
      keys10 = await periodKeys(t.databaseUrl, P10);
      expect(keys10).toHaveLength(3);
      expect(await t.paylog.kms.keyArn('alias/paylog-epoch-hour-2026-01-01T10-r2')).toBe(keys10[2]);
      // keys status lists every key of each period.
      const st = JSON.parse((await runScript('keys', ['status', ...adminArgs(t)])).stdout);
      expect(st.keyPeriods.find((p: any) => p.periodStart === P10).kmsKeyIds).toEqual(keys10);
    } finally {
      await t.stop();
    }
  });

  it('retention schedules the deletion of EVERY KMS key of the period and its key events name each', { timeout: 240_000 }, async () => {
    now = new Date(Date.UTC(2026, 0, 1, 13, 5)); // cutoff 11:05: the 10:00 period has expired, 11:00 not
    const t = await startTestPaylog({ embedded: true, dataDir: dir, env, clock: () => now });
    try {
      const run = await runScript('retention', ['apply', '--as-of', '2026-01-01T13:05:00Z', ...adminArgs(t)]);
      expect(run.code, run.stderr).toBe(0);
      const rep = JSON.parse(run.stdout);
      expect(rep.periods).toHaveLength(1);
      expect(rep.periods[0].kmsKeys.map((k: any) => k.kmsKeyId)).toEqual(keys10);
      expect(rep.periods[0].kmsKeys.every((k: any) => k.action === 'schedule' && k.deletionDate !== null)).toBe(true);
      for (const k of keys10) expect(await t.paylog.kms.keyState(k)).toBe('PendingDeletion');
      for (const k of await periodKeys(t.databaseUrl, P11)) expect(await t.paylog.kms.keyState(k)).toBe('Enabled');
      const [p] = await query(t.databaseUrl, 'SELECT state FROM key_periods WHERE period_start = $1', [P10]);
      expect(p.state).toBe('pending_deletion');

      const evs = await keyEvents(t.databaseUrl);
      const shreds = evs.filter((e) => e.event === 'epoch_shredded');
      expect(shreds.map((e) => e.epoch).sort()).toEqual([...GENUINE_10, PLANTED[0], PLANTED[1], PLANTED[2]].sort());
      for (const e of shreds) expect(e.kmsKeyIds).toEqual(keys10);
      const runLeaf = evs.find((e) => e.event === 'retention_run' && e.index === rep.logIndex);
      expect(runLeaf.kmsKeyIds).toEqual(keys10);
      // Each leaf is committed before the keys are scheduled: the run's leaf precedes nothing that undoes it.
      expect(Math.max(...shreds.map((e) => e.index))).toBeLessThan(rep.logIndex);

      // verify-log shows them.
      await t.paylog.checkpoints.publish();
      const v = await runScript('verify-log', [...auditorArgs(t), '--json']);
      expect(v.code, v.stdout + v.stderr).toBe(0);
      const vr = JSON.parse(v.stdout);
      expect(vr.shredded.events.find((e: any) => e.event === 'retention_run' && e.index === rep.logIndex).kmsKeyIds).toEqual(keys10);
      expect(vr.shredded.events.filter((e: any) => e.event === 'epoch_shredded').every((e: any) => JSON.stringify(e.kmsKeyIds) === JSON.stringify(keys10))).toBe(true);
      const human = await runScript('verify-log', auditorArgs(t));
      expect(human.stdout).toContain(`KMS keys scheduled for deletion [${keys10.join(', ')}]`);
      expect((await release(t, ids10[0]!)).status).toBe(410);
    } finally {
      await t.stop();
    }
  });

  it('the copy taken after the rewrap, with the same KMS: KMS refuses every wrapped epoch key of the shredded period, and release answers 410', { timeout: 240_000 }, async () => {
    // The restored data dir: the post-rewrap copy + the live KMS key store (same KMS) + the PKI.
    cpSync(join(dir, 'kms'), join(copy, 'kms'), { recursive: true });
    cpSync(join(dir, 'pki'), join(copy, 'pki'), { recursive: true });
    const t = await startTestPaylog({ embedded: true, dataDir: copy, env, clock: () => now });
    try {
      const rows = await query(t.databaseUrl, 'SELECT epoch_id, public_key, kms_key_id, wrapped_private_key, shredded_at FROM key_epochs WHERE wrapped_private_key IS NOT NULL ORDER BY epoch_id');
      const byId = new Map(rows.map((r) => [r.epoch_id, r]));
      // The copy still holds every genuine epoch's wrapped private key (under the r1 keys) and calls it live ...
      for (const id of [...GENUINE_10, ...GENUINE_11]) expect(byId.get(id)).toMatchObject({ shredded_at: null });
      for (const id of GENUINE_10) expect(byId.get(id)!.kms_key_id).toBe(keys10[1]);
      // ... but KMS Decrypt (the real client, the local endpoint) refuses each of the shredded period.
      for (const id of GENUINE_10) {
        const r = byId.get(id)!;
        const e = await t.paylog.kms.decryptDataKey(r.wrapped_private_key, epochKmsContext(id, r.public_key), r.kms_key_id).then(
          (k) => {
            k.fill(0);
            return null;
          },
          (err: unknown) => err,
        );
        expect(isPaylogError(e) && e.details?.kmsError, id).toBe('KMSInvalidStateException');
      }
      // The planted rows open nowhere either.
      for (const id of PLANTED) {
        const r = byId.get(id)!;
        await expect(t.paylog.kms.decryptDataKey(r.wrapped_private_key, epochKmsContext(id, r.public_key), r.kms_key_id)).rejects.toBeTruthy();
      }
      // The period that has not expired still opens from the copy (the refusals above are the shred, nothing else).
      for (const id of GENUINE_11) {
        const r = byId.get(id)!;
        (await t.paylog.kms.decryptDataKey(r.wrapped_private_key, epochKmsContext(id, r.public_key), r.kms_key_id)).fill(0);
      }
      // A paylog started from the copy answers 410 for the shredded period, 200 for the live one.
      for (const [i, id] of ids10.entries()) {
        const r = await release(t, id, i === 1 ? 'processor-globex' : 'processor-acme');
        expect(r.status, r.text).toBe(410);
        expect(r.json.error.code).toBe('DATA_SHREDDED');
        expect(r.text).not.toContain(PAN);
      }
      expect((await release(t, ids11[0]!)).status).toBe(200);
      expect((await release(t, ids11[1]!, 'processor-globex')).status).toBe(200);
    } finally {
      await t.stop();
    }
  });
});

describe('key_event kmsKeyIds (leaf format v3 only)', () => {
  it('a v3 key_event may name the KMS keys a shred destroys; a v2 leaf may not', async () => {
    const { keyEventLeafV2Schema } = await import('../src/log/leaf/key-event.js');
    const base = { type: 'key_event', time: Date.UTC(2026, 0, 1), event: 'retention_run', actor: 'system', kmsKeyIds: ['arn:aws:kms:us-east-1:111122223333:key/k1'] };
    expect(keyEventLeafV2Schema.safeParse({ ...base, v: 3 }).success).toBe(true);
    expect(keyEventLeafV2Schema.safeParse({ ...base, v: 2 }).success).toBe(false);
    expect(keyEventLeafV2Schema.safeParse({ ...base, v: 3, kmsKeyIds: [] }).success).toBe(false);
  });
});

describe("a key period's KMS key as the runtime role may plant it", () => {
  it('a key_periods row planted by paylog_app for a coming period does not pick the key new epoch keys are wrapped under', { timeout: 120_000 }, async () => {
    let now = new Date(Date.UTC(2026, 0, 1, 10, 30));
    const t = await startTestPaylog({ env, clock: () => now });
    try {
      await submit(t);
      // Another KMS key the service can use (here: a key the attacker arranged to be usable).
      const other = await t.paylog.kms.ensureKey('not-a-period-key', 'SYMMETRIC_DEFAULT');
      await withClient(t.databaseUrl, async (c) => {
        await c.query('SET ROLE paylog_app');
        await c.query("INSERT INTO key_periods (granularity, period_start, period_end, kms_key_id) VALUES ('hour', '2026-01-01T11:00:00Z', '2026-01-01T12:00:00Z', $1)", [other]);
      });
      now = new Date(Date.UTC(2026, 0, 1, 11, 30));
      const r = await t.call('checkout', 'POST', '/v1/transactions', (await import('./helpers/paylog.js')).cardTransaction());
      // Refused as a server-side integrity problem (the planted row is reported and counted:
      // test/db-role-attacks.test.ts), never sealed under the planted key.
      expect(r.status, r.text).toBe(500);
      expect(r.json.error.code).toBe('INTERNAL');
      expect(r.text).not.toContain(PAN);
      const wrapped = await query(t.databaseUrl, 'SELECT epoch_id FROM key_epochs WHERE kms_key_id = $1', [other]);
      expect(wrapped).toEqual([]);
    } finally {
      await t.stop();
    }
  });
});
