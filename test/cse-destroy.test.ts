/**
 * Client-side encryption keys are destroyed (issue 17, item 7): a JWE captured anywhere (a
 * checkout log, a WAF) must become undecryptable once its key's period plus overlap has passed —
 * by the live service AND from a copy of the database taken before the destruction, used with
 * the same KMS. And the key rows the runtime role can write are authenticated before use.
 *
 * Everything is real: HTTPS with the dev client certificates, PostgreSQL (the database copy is
 * `CREATE DATABASE … TEMPLATE` of the stopped service's database), the local KMS endpoint
 * through the real AWS SDK client, the retention command (`npm run retention -- apply`).
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { cardTransaction, newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { query, withClient } from './helpers/db.js';
import { runScript } from './helpers/cli.js';
import { encryptPaymentMethod, importPaylogKey, type PaylogKey, type PaymentMethod } from '../src/cse/browser/paylog-encrypt.js';
import { cseSeedContext } from '../src/cse/key-names.js';
import { importCseKey, publicPoint } from '../src/cse/p256-key.js';
import { decodeLeaf } from '../src/log/leaf.js';

const PAN = '4111111111111111';
const card: PaymentMethod = { type: 'card', pan: PAN, expiryMonth: 12, expiryYear: new Date().getUTCFullYear() + 3, holderName: 'Jane Q Customer' };
/** Hourly CSE keys, 15 min overlap (= the default maximum JWE age). */
const env = { PAYLOG_CSE_KEY_PERIOD: 'hour', PAYLOG_CSE_KEY_OVERLAP_S: '900' };
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest();
const code = (r: { json: any }) => r.json?.error?.code;

const adminArgs = (t: TestPaylog) => {
  const a = t.paylog.devPki!.principals.admin!;
  return ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath];
};

/** Every key_event leaf, decoded, with its log index. */
async function keyEvents(databaseUrl: string): Promise<any[]> {
  const rows = await query<{ idx: string; leaf: Buffer }>(databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
  return rows.map((r) => ({ index: Number(r.idx), ...(decodeLeaf(r.leaf) as any) })).filter((l) => l.type === 'key_event');
}

/** A checkout's encrypted submission body for a fresh transaction, issued at `at`. */
async function encryptedBody(key: PaylogKey, at: Date): Promise<Record<string, any>> {
  const body = cardTransaction();
  const jwe = await encryptPaymentMethod(key, card, { transactionId: body.transactionId, processor: body.processor }, { issuedAt: Math.floor(at.getTime() / 1000) });
  return { ...body, paymentMethod: { type: 'encrypted', jwe } };
}

describe('a CSE key is destroyed after its period plus overlap, in backups too', () => {
  let now = new Date(Date.UTC(2026, 2, 5, 10, 20));
  const kid = 'paylog-cse-2026-03-05T10';
  let databaseUrl: string;
  let backupUrl: string;
  let dataDir: string;
  let backupDir: string;
  let arn: string;
  /** Captured by "the checkout's log": submitted once before the destruction. */
  let submitted: Record<string, any>;
  /** Captured by "a WAF": never submitted. */
  let captured: Record<string, any>;

  beforeAll(async () => {
    databaseUrl = await newTestDatabase();
    dataDir = mkdtempSync(join(tmpdir(), 'paylog-cse-destroy-'));
    backupDir = mkdtempSync(join(tmpdir(), 'paylog-cse-backup-'));
  });
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(backupDir, { recursive: true, force: true });
  });

  it('the key is created under its own KMS key (alias/<kid>, context naming the kid), cse_key_created first', { timeout: 120_000 }, async () => {
    const t = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now });
    try {
      const jwks = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
      expect(jwks.status, jwks.text).toBe(200);
      expect(jwks.json.keys[0].kid).toBe(kid);
      const key = await importPaylogKey(jwks.json);
      submitted = await encryptedBody(key, now);
      captured = await encryptedBody(key, now);
      const r = await t.call('checkout', 'POST', '/v1/transactions', submitted);
      expect(r.status, r.text).toBe(201);

      arn = await t.paylog.kms.keyArn(`alias/${kid}`);
      expect(arn).not.toBe(t.paylog.dataKeyId);
      const [row] = await query(databaseUrl, 'SELECT * FROM cse_keys WHERE kid = $1', [kid]);
      expect(row).toMatchObject({ kms_key_id: arn, destroyed_at: null });
      // The seed opens only under the kid's own KMS key and with the kid in the context.
      const seed = await t.paylog.kms.decryptDataKey(row.wrapped_seed, cseSeedContext(kid), arn);
      expect((await importCseKey(kid, seed)).publicJwk).toMatchObject({ x: jwks.json.keys[0].x, y: jwks.json.keys[0].y });
      seed.fill(0);
      await expect(t.paylog.kms.decryptDataKey(row.wrapped_seed, cseSeedContext('paylog-cse-2026-03-05T11'), arn)).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
      // Nothing about it under the long-lived data key any more.
      expect(await query(databaseUrl, "SELECT name FROM keyring WHERE name LIKE 'cse/%'")).toEqual([]);

      const created = (await keyEvents(databaseUrl)).filter((l) => l.event === 'cse_key_created');
      expect(created).toHaveLength(1);
      expect(created[0]).toMatchObject({ keyName: kid, kmsKeyId: arn, actor: 'system', periodStart: Date.UTC(2026, 2, 5, 10), periodEnd: Date.UTC(2026, 2, 5, 11) });
      expect(Buffer.from(created[0].wrappedKeySha256).equals(sha256(row.wrapped_seed))).toBe(true);
      const jwk = jwks.json.keys[0];
      expect(Buffer.from(created[0].publicKeySha256).equals(sha256(publicPoint(jwk)))).toBe(true);
    } finally {
      await t.stop();
    }
    // The backup: a copy of the database as it is now (before any destruction).
    const source = new URL(databaseUrl).pathname.slice(1);
    const name = `b_${source}`.slice(0, 60);
    for (let attempt = 0; ; attempt++) {
      try {
        await query(inject('adminDatabaseUrl'), `CREATE DATABASE ${name} TEMPLATE ${source}`);
        break;
      } catch (e) {
        // Closed connections may take a moment to leave the server.
        if (attempt >= 50 || (e as { code?: string }).code !== '55006') throw e;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const u = new URL(databaseUrl);
    u.pathname = `/${name}`;
    backupUrl = u.toString();
  });

  it('retention past period + overlap: cse_key_destroyed committed, KMS key pending deletion, seed removed; the live service refuses the captured JWE', { timeout: 180_000 }, async () => {
    now = new Date(Date.UTC(2026, 2, 5, 11, 16)); // period end 11:00 + 900 s overlap = 11:15
    const t = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now });
    try {
      const dry = await t.call('admin', 'POST', '/v1/admin/retention/apply', { dryRun: true });
      expect(dry.status, dry.text).toBe(200);
      expect(dry.json.cseKeys).toEqual([{ kid, periodStart: '2026-03-05T10:00:00.000Z', periodEnd: '2026-03-05T11:00:00.000Z', kmsKeyId: arn, scheduledDeletion: null }]);
      expect(await t.paylog.kms.keyState(arn)).toBe('Enabled');

      const run = await runScript('retention', ['apply', ...adminArgs(t)]);
      expect(run.code, run.stderr).toBe(0);
      const rep = JSON.parse(run.stdout);
      expect(rep.cseKeys).toHaveLength(1);
      expect(rep.cseKeys[0]).toMatchObject({ kid, kmsKeyId: arn });
      const deletion = Date.parse(rep.cseKeys[0].scheduledDeletion);
      // The minimum KMS pending window: 7 days (on the KMS's own clock).
      expect(Math.round((deletion - Date.now()) / 86_400_000)).toBe(7);
      expect(await t.paylog.kms.keyState(arn)).toBe('PendingDeletion');
      const [row] = await query(databaseUrl, 'SELECT wrapped_seed, destroyed_at, deletion_date FROM cse_keys WHERE kid = $1', [kid]);
      expect(row.wrapped_seed).toBeNull();
      expect(row.destroyed_at).not.toBeNull();
      expect(row.deletion_date?.getTime()).toBe(deletion);

      // The key event names the destruction, and was committed before the run closed.
      const evs = await keyEvents(databaseUrl);
      const destroyed = evs.filter((l) => l.event === 'cse_key_destroyed');
      expect(destroyed).toHaveLength(1);
      expect(destroyed[0]).toMatchObject({ keyName: kid, kmsKeyId: arn, actor: { role: 'admin', name: 'admin' }, policy: { asOf: now.getTime() } });
      expect(destroyed[0].index).toBeLessThan(rep.logIndex);

      // The live service refuses both captured JWEs — also with its clock set back into the window.
      for (const at of [now, new Date(Date.UTC(2026, 2, 5, 10, 25))]) {
        now = at;
        for (const body of [submitted, captured]) {
          const r = await t.call('checkout', 'POST', '/v1/transactions', body);
          expect([r.status, code(r)], r.text).toEqual([422, 'CSE_KEY_UNKNOWN']);
          expect(r.text).not.toContain(PAN);
        }
      }
      // A second run finds nothing left to destroy.
      now = new Date(Date.UTC(2026, 2, 5, 11, 20));
      const again = await t.call('admin', 'POST', '/v1/admin/retention/apply', {});
      expect(again.json.cseKeys).toEqual([]);
      expect(t.logLines.join('\n')).not.toContain(PAN);
    } finally {
      await t.stop();
    }
  });

  it('a database copy taken before the destruction, with the same KMS, cannot unwrap the seed: KMS refuses (pending deletion)', { timeout: 120_000 }, async () => {
    // The attacker's paylog: the backup database, the live KMS key store (same KMS), the PKI;
    // its clock set inside the key's window so that only the key itself can stop it.
    cpSync(join(dataDir, 'kms'), join(backupDir, 'kms'), { recursive: true });
    cpSync(join(dataDir, 'pki'), join(backupDir, 'pki'), { recursive: true });
    now = new Date(Date.UTC(2026, 2, 5, 10, 25));
    const t = await startTestPaylog({ databaseUrl: backupUrl, dataDir: backupDir, env, clock: () => now });
    try {
      // The captured JWEs, submitted to a paylog serving the copy: refused, never decrypted.
      for (const body of [captured, submitted]) {
        const r = await t.call('checkout', 'POST', '/v1/transactions', body);
        expect([r.status, code(r)], r.text).toEqual([422, 'CSE_KEY_UNKNOWN']);
        expect(r.text).not.toContain(PAN);
      }
      // The copy still holds the wrapped seed and calls the key live ...
      const [row] = await query(backupUrl, 'SELECT * FROM cse_keys WHERE kid = $1', [kid]);
      expect(row.destroyed_at).toBeNull();
      expect(row.wrapped_seed).not.toBeNull();
      // ... but KMS refuses to unwrap it, whoever asks: the KMS key it names is pending deletion.
      await expect(t.paylog.kms.decryptDataKey(row.wrapped_seed, cseSeedContext(kid), row.kms_key_id)).rejects.toMatchObject({
        code: 'KMS_UNAVAILABLE',
        details: { kmsError: 'KMSInvalidStateException' },
      });
      expect(row.kms_key_id).toBe(arn);
    } finally {
      await t.stop();
    }
  });
});

describe('CSE key rows the runtime role can write are authenticated before use', () => {
  let t: TestPaylog;
  let now = new Date(Date.UTC(2026, 3, 1, 8, 10));
  beforeAll(async () => {
    t = await startTestPaylog({ env, clock: () => now });
  });
  afterAll(async () => t?.stop());

  /** The attacker's key (a KMS key of theirs that paylog's role may use) and a seed they know. */
  async function attackerSeed(kid: string, context: Record<string, string>) {
    const attackerKey = await t.paylog.kms.ensureKey('attacker-controlled', 'SYMMETRIC_DEFAULT');
    const fresh = await t.paylog.kms.generateDataKey(attackerKey, context);
    const { publicJwk } = await importCseKey(kid, fresh.plaintext);
    return { attackerKey, wrapped: fresh.wrappedKey, publicJwk };
  }

  it('a pre-planted keyring row cse/<future kid> under an attacker key is not used: paylog publishes its own key', { timeout: 120_000 }, async () => {
    const kid = 'paylog-cse-2026-04-01T09';
    const a = await attackerSeed(kid, { 'paylog:keyring': `cse/${kid}` });
    await withClient(t.databaseUrl, async (c) => {
      await c.query('SET ROLE paylog_app');
      await c.query('INSERT INTO keyring (name, kms_key_id, wrapped_key) VALUES ($1, $2, $3)', [`cse/${kid}`, a.attackerKey, a.wrapped]);
    });
    now = new Date(Date.UTC(2026, 3, 1, 9, 5));
    const jwks = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
    expect(jwks.status, jwks.text).toBe(200);
    expect(jwks.json.keys[0].kid).toBe(kid);
    expect(jwks.json.keys[0].x).not.toBe(a.publicJwk.x);
    expect((await query(t.databaseUrl, 'SELECT kms_key_id FROM cse_keys WHERE kid = $1', [kid]))[0].kms_key_id).toBe(await t.paylog.kms.keyArn(`alias/${kid}`));
    // A JWE encrypted to the attacker's key does not open.
    const body = await encryptedBody(await importPaylogKey({ keys: [{ ...a.publicJwk }] }), now);
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect([r.status, code(r)]).toEqual([422, 'CSE_DECRYPT_FAILED']);
  });

  it('a pre-planted cse_keys row under an attacker key is refused (INTEGRITY_FAILURE), never published or used', { timeout: 120_000 }, async () => {
    const kid = 'paylog-cse-2026-04-01T10';
    const a = await attackerSeed(kid, cseSeedContext(kid));
    await withClient(t.databaseUrl, async (c) => {
      await c.query('SET ROLE paylog_app');
      await c.query('INSERT INTO cse_keys (kid, period_start, period_end, kms_key_id, wrapped_seed) VALUES ($1, $2, $3, $4, $5)', [
        kid,
        new Date(Date.UTC(2026, 3, 1, 10)),
        new Date(Date.UTC(2026, 3, 1, 11)),
        a.attackerKey,
        a.wrapped,
      ]);
    });
    now = new Date(Date.UTC(2026, 3, 1, 10, 5));
    const jwks = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
    expect([jwks.status, code(jwks)]).toEqual([422, 'INTEGRITY_FAILURE']);
    expect(jwks.text).not.toContain(a.publicJwk.x);
    const body = await encryptedBody(await importPaylogKey({ keys: [{ ...a.publicJwk }] }), now);
    const r = await t.call('checkout', 'POST', '/v1/transactions', body);
    expect([r.status, code(r)]).toEqual([422, 'INTEGRITY_FAILURE']);
    expect(r.text).not.toContain(PAN);
  });

  it('a planted expired row naming the data key does not make retention delete any KMS key but the kid\'s own; the runtime role cannot destroy or rewrite rows', { timeout: 120_000 }, async () => {
    const kid = 'paylog-cse-2026-04-01T05';
    const dataKeyArn = await t.paylog.kms.keyArn(t.paylog.dataKeyId);
    await withClient(t.databaseUrl, async (c) => {
      await c.query('SET ROLE paylog_app');
      await c.query('INSERT INTO cse_keys (kid, period_start, period_end, kms_key_id, wrapped_seed) VALUES ($1, $2, $3, $4, $5)', [
        kid,
        new Date(Date.UTC(2026, 3, 1, 5)),
        new Date(Date.UTC(2026, 3, 1, 6)),
        dataKeyArn,
        Buffer.from('planted'),
      ]);
      for (const sql of ['UPDATE cse_keys SET wrapped_seed = NULL, destroyed_at = now()', "UPDATE cse_keys SET kms_key_id = 'x'", 'DELETE FROM cse_keys']) {
        await expect(c.query(sql)).rejects.toMatchObject({ code: '42501' });
      }
      await c.query('RESET ROLE');
      await c.query('SET ROLE paylog_keys');
      await expect(c.query("UPDATE cse_keys SET kms_key_id = 'x'")).rejects.toMatchObject({ code: '42501' });
      await expect(c.query('DELETE FROM cse_keys')).rejects.toMatchObject({ code: '42501' });
    });
    now = new Date(Date.UTC(2026, 3, 1, 10, 20)); // the 09:00 key's period + overlap ended at 10:15
    const r = await t.call('admin', 'POST', '/v1/admin/retention/apply', {});
    expect(r.status, r.text).toBe(200);
    // The 09:00 key (created in the first test) is destroyed; the planted row loses its bytes, and
    // no KMS key but alias/<kid>'s (none here) is scheduled for deletion.
    expect(r.json.cseKeys.map((k: any) => [k.kid, k.kmsKeyId])).toEqual([
      [kid, null],
      ['paylog-cse-2026-04-01T09', await t.paylog.kms.keyArn('alias/paylog-cse-2026-04-01T09')],
    ]);
    expect(await t.paylog.kms.keyState(dataKeyArn)).toBe('Enabled');
    const [row] = await query(t.databaseUrl, 'SELECT wrapped_seed, destroyed_at FROM cse_keys WHERE kid = $1', [kid]);
    expect(row.wrapped_seed).toBeNull();
  });
});

describe('keys created before per-key KMS keys, and the daily run', () => {
  it('a legacy keyring key (under the data key) still serves its period, so an upgrade mid-period breaks no published key', { timeout: 120_000 }, async () => {
    const now = new Date(Date.UTC(2026, 4, 2, 14, 10));
    const kid = 'paylog-cse-2026-05-02T14';
    const t = await startTestPaylog({ env, clock: () => now });
    try {
      // What the code before this change wrote: the seed under the long-lived data key.
      const name = `cse/${kid}`;
      const fresh = await t.paylog.kms.generateDataKey(t.paylog.dataKeyId, { 'paylog:keyring': name });
      const { publicJwk } = await importCseKey(kid, fresh.plaintext);
      await query(t.databaseUrl, 'INSERT INTO keyring (name, kms_key_id, wrapped_key) VALUES ($1, $2, $3)', [name, fresh.keyId, fresh.wrappedKey]);
      const jwks = await t.call('checkout', 'GET', '/v1/cse/jwks.json');
      expect(jwks.json.keys[0]).toMatchObject({ kid, x: publicJwk.x, y: publicJwk.y });
      const r = await t.call('checkout', 'POST', '/v1/transactions', await encryptedBody(await importPaylogKey(jwks.json), now));
      expect(r.status, r.text).toBe(201);
      expect(await query(t.databaseUrl, 'SELECT kid FROM cse_keys')).toEqual([]);
    } finally {
      await t.stop();
    }
  });

  it('the scheduled retention run (worker 0) destroys an expired CSE key as the system actor', { timeout: 180_000 }, async () => {
    let now = new Date(Date.UTC(2026, 4, 3, 9, 10));
    const kid = 'paylog-cse-2026-05-03T09';
    // The key is created by a first start (no retention scheduled), and the scheduled run is
    // watched in a second start whose clock is already past the key's period + overlap: in one
    // start, a run firing 3 s after start could come before the clock was moved (a loaded
    // machine can take that long for the first JWKS call), and the next run is a day later.
    const databaseUrl = await newTestDatabase();
    const dataDir = mkdtempSync(join(tmpdir(), 'paylog-cse-scheduled-'));
    let arn: string;
    const first = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now });
    try {
      expect((await first.call('checkout', 'GET', '/v1/cse/jwks.json')).json.keys[0].kid).toBe(kid);
      arn = await first.paylog.kms.keyArn(`alias/${kid}`);
    } finally {
      await first.stop();
    }
    now = new Date(Date.UTC(2026, 4, 3, 10, 30));
    const t = await startTestPaylog({ databaseUrl, dataDir, env, clock: () => now, retentionFirstRunMs: 3000 });
    try {
      let ev: any;
      for (let i = 0; i < 150 && !ev; i++) {
        await new Promise((r) => setTimeout(r, 200));
        ev = (await keyEvents(t.databaseUrl)).find((l) => l.event === 'cse_key_destroyed');
      }
      expect(ev, 'no cse_key_destroyed within 30 s of start').toBeDefined();
      expect(ev).toMatchObject({ keyName: kid, kmsKeyId: arn, actor: 'system' });
      expect(await t.paylog.kms.keyState(arn)).toBe('PendingDeletion');
    } finally {
      await t.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
