/**
 * Issue 17: "everything the runtime roles can write is authenticated before use, or harmless".
 * Every attack here uses exactly the runtime role's access: the service's own pool
 * (`t.paylog.database.pool`), which logs in as `paylog_svc_<db>`, a member of `paylog_app`
 * only (src/bootstrap/logins.ts) — the same connection the service runs on. Real mTLS (dev certificates),
 * the real KMS client against the local endpoint, real PostgreSQL. SECURITY.md "What the
 * database roles can write" lists each table and column and names the test here.
 */
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { DATA_KEYS_WHOLE, query, withClient } from './helpers/db.js';
import { decodeLeaf, encodeLeaf, envelopeFromLeaf, transactionLeaf, type Leaf } from '../src/log/leaf.js';
import { X25519PrivateKey, X25519PublicKey } from '../src/crypto/hpke.js';
import { openEnvelopeV2, sealEnvelopeV2 } from '../src/crypto/envelope-v2.js';
import { runScript } from './helpers/cli.js';
import { epochIdOf, epochKmsContext, periodOf, type KeyPeriod } from '../src/kms/epoch-keys.js';
import { LogClient, verifyRemoteLog } from '../src/audit/index.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import { loadOrCreateServiceKey } from '../src/keyring.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();

/** An X25519 key pair the attacker holds: raw public key and a private key paylog's HPKE code opens with. */
function attackerKeyPair(): { publicKey: Buffer; privateKey: () => X25519PrivateKey; rawPrivate: () => Buffer } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  return { publicKey: raw, privateKey: () => new X25519PrivateKey(privateKey), rawPrivate: () => Buffer.from(privateKey.export({ format: 'jwk' }).d!, 'base64url') };
}

/**
 * For one describe block: a paylog of its own (handed to `set`) and an auditor's log client to
 * it; `verifiers` are the log keys that client reads from the service.
 */
function paylogWithAuditorClient(set: (t: TestPaylog) => void): { client: () => LogClient; verifiers: () => Promise<ReturnType<typeof toNoteVerifiers>> } {
  let t: TestPaylog | undefined;
  let client: LogClient | undefined;
  beforeAll(async () => {
    t = await startTestPaylog();
    const a = t.paylog.devPki!.principals['auditor']!;
    client = LogClient.fromFiles(t.paylog.url, t.paylog.devPki!.caPath, a.certPath, a.keyPath);
    set(t);
  });
  afterAll(async () => {
    client?.close();
    await t?.stop();
  });
  return { client: () => client!, verifiers: async () => toNoteVerifiers((await client!.keys()).vkeys) };
}

const runtime = (t: TestPaylog) => t.paylog.database.pool;

async function leafOf(t: TestPaylog, transactionId: string): Promise<Leaf & { type: 'transaction' }> {
  const r = await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT l.leaf FROM transactions x JOIN log_entries l ON l.idx = x.log_index WHERE x.transaction_id = $1', [transactionId]);
  return decodeLeaf(r[0]!.leaf) as Leaf & { type: 'transaction' };
}

/** Tries to open a stored record with `sk` as the attacker would (leaf + data_keys row). Returns the plaintext or null. */
async function openWith(t: TestPaylog, transactionId: string, sk: X25519PrivateKey, epochId: string): Promise<string | null> {
  const leaf = await leafOf(t, transactionId);
  if (leaf.v === 1) throw new Error('unexpected v1 leaf');
  const env = envelopeFromLeaf(leaf);
  const [dk] = await query<{ wrapped_key: Buffer }>(t.databaseUrl, `SELECT wrapped_key FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [transactionId]);
  try {
    return openEnvelopeV2(
      sk,
      { transactionId, processor: leaf.p, epochId },
      { version: 2, epochId, salt: env.salt, iv: env.iv, ciphertext: env.ciphertext, tag: env.tag, keyCommitment: env.keyCommitment, wrappedKey: dk!.wrapped_key },
    ).toString('utf8');
  } catch {
    return null;
  }
}

async function submit(t: TestPaylog, overrides: Record<string, unknown> = {}): Promise<string> {
  const body = cardTransaction(overrides);
  const r = await t.call('checkout', 'POST', '/v1/transactions', body);
  expect(r.status, r.text).toBe(201);
  return body.transactionId as string;
}

async function untrustedCount(t: TestPaylog, table: string): Promise<number> {
  const m = await t.paylog.metrics.untrustedRows.get();
  return m.values.find((v) => v.labels.table === table)?.value ?? 0;
}

/** Plants a key_epochs row as the runtime role (the attacker's whole move). */
async function plantEpoch(
  t: TestPaylog,
  o: { processor: string; period: KeyPeriod; generation: number; publicKey: Buffer; mac?: Buffer | null; wrap?: { kmsKeyId: string; privateKey: Buffer } },
): Promise<string> {
  const epochId = epochIdOf(o.processor, o.period, o.generation);
  const [cur] = (await runtime(t).query('SELECT kms_key_id FROM key_epochs WHERE processor = $1 ORDER BY generation LIMIT 1', [o.processor])).rows;
  // With `wrap`: the private key wrapped under a KMS key the attacker controls (one that lets
  // paylog Decrypt), as a real attacker with their own AWS account would prepare it.
  const wrapped = o.wrap ? await t.paylog.kms.encrypt(o.wrap.kmsKeyId, o.wrap.privateKey, epochKmsContext(epochId, o.publicKey)) : randomBytes(184);
  await runtime(t).query(
    `INSERT INTO key_epochs (epoch_id, processor, granularity, period_start, period_end, generation, public_key, kms_key_id, wrapped_private_key, wrapped_key_sha256, mac)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [epochId, o.processor, o.period.granularity, o.period.start, o.period.end, o.generation, o.publicKey, o.wrap?.kmsKeyId ?? cur?.kms_key_id ?? 'x', wrapped, sha256(wrapped), o.mac ?? null],
  );
  return epochId;
}

describe('key_epochs: the runtime role cannot redirect new card data to its own key (issue 17 item 3)', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('retire the current epoch + plant a higher generation with the attacker key: the next submission is sealed to a key paylog created, not the attacker\'s; the planted row is logged and counted', async () => {
    const first = await submit(t);
    const firstLeaf = await leafOf(t, first);
    const genuineEpoch = (firstLeaf as any).env.ep as string;
    const period = periodOf(new Date(), t.paylog.epochs.granularity);
    const attacker = attackerKeyPair();
    const before = await untrustedCount(t, 'key_epochs');

    // The attack, as the runtime role only.
    const who = (await runtime(t).query('SELECT session_user AS u, current_user AS c')).rows[0];
    expect(who.u).toMatch(/^paylog_svc_/);
    await runtime(t).query("UPDATE key_epochs SET retired_at = now() WHERE processor = 'acme' AND retired_at IS NULL");
    const forged = await plantEpoch(t, { processor: 'acme', period, generation: 7, publicKey: attacker.publicKey });

    const id = await submit(t);
    const leaf = (await leafOf(t, id)) as any;
    expect(leaf.v).toBe(3);
    expect(leaf.env.ep).not.toBe(forged);
    expect(leaf.env.ep).not.toBe(genuineEpoch); // retired behind our back: a new epoch, created by paylog
    expect(Buffer.from(leaf.env.epk).equals(sha256(attacker.publicKey))).toBe(false);
    // The attacker's private key opens neither under the epoch the record names nor under the planted one.
    expect(await openWith(t, id, attacker.privateKey(), leaf.env.ep)).toBeNull();
    expect(await openWith(t, id, attacker.privateKey(), forged)).toBeNull();
    // The genuine processor still gets it.
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' });
    expect(rel.status, rel.text).toBe(200);
    expect(rel.json.paymentMethod.pan).toBe('4111111111111111');

    // The new epoch's creation entry names the key the record was sealed to; the planted epoch is in no entry.
    const leaves = (await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries ORDER BY idx')).map((r) => decodeLeaf(r.leaf) as any);
    const created = leaves.filter((l) => l.type === 'key_event' && l.event === 'epoch_created' && l.epoch === leaf.env.ep);
    expect(created).toHaveLength(1);
    expect(Buffer.from(created[0].publicKeySha256).equals(Buffer.from(leaf.env.epk))).toBe(true);
    expect(leaves.some((l) => l.epoch === forged)).toBe(false);

    // Detected: one error line naming the row (never key material), and the counter.
    const lines = t.logLines.filter((l) => l.includes('a key row was not created by paylog') && l.includes(forged));
    expect(lines.length).toBe(1);
    expect(lines[0]).not.toContain(attacker.publicKey.toString('base64'));
    expect(await untrustedCount(t, 'key_epochs')).toBe(before + 1);

    // Later submissions keep using paylog's epoch; the row is still reported only once.
    const again = (await leafOf(t, await submit(t))) as any;
    expect(again.env.ep).toBe(leaf.env.ep);
    expect(t.logLines.filter((l) => l.includes('a key row was not created by paylog') && l.includes(forged)).length).toBe(1);
  });

  it('a planted legacy-looking row (no MAC), or one carrying a MAC copied from a genuine row, is refused too', async () => {
    const period = periodOf(new Date(), t.paylog.epochs.granularity);
    await submit(t, { processor: 'globex' });
    const [g] = (await runtime(t).query("SELECT mac FROM key_epochs WHERE processor = 'globex' AND mac IS NOT NULL LIMIT 1")).rows;
    expect(g.mac).toHaveLength(32);
    for (const [i, mac] of [null, g.mac as Buffer].entries()) {
      const attacker = attackerKeyPair();
      await runtime(t).query("UPDATE key_epochs SET retired_at = now() WHERE processor = 'globex' AND retired_at IS NULL");
      const forged = await plantEpoch(t, { processor: 'globex', period, generation: 50 + i * 50, publicKey: attacker.publicKey, mac });
      const id = await submit(t, { processor: 'globex' });
      const leaf = (await leafOf(t, id)) as any;
      expect(leaf.env.ep).not.toBe(forged);
      expect(Buffer.from(leaf.env.epk).equals(sha256(attacker.publicKey))).toBe(false);
      expect(await openWith(t, id, attacker.privateKey(), forged)).toBeNull();
      expect(t.logLines.some((l) => l.includes('a key row was not created by paylog') && l.includes(forged))).toBe(true);
    }
  });

  it('retired_at: un-retiring an epoch rotated out (and retiring the current one) as the runtime role never makes the old key encrypt again', async () => {
    const rotated = (await leafOf(t, await submit(t))) as any;
    const rot = await t.call('admin', 'POST', '/v1/admin/keys/rotate', { processor: 'acme', reason: 'suspected compromise' });
    expect(rot.status, rot.text).toBe(200);
    const current = (await leafOf(t, await submit(t))) as any;
    expect(current.env.ep).not.toBe(rotated.env.ep);
    await runtime(t).query('UPDATE key_epochs SET retired_at = now() WHERE epoch_id = $1', [current.env.ep]);
    await runtime(t).query('UPDATE key_epochs SET retired_at = NULL WHERE epoch_id = $1', [rotated.env.ep]);
    const next = (await leafOf(t, await submit(t))) as any;
    expect(next.env.ep).not.toBe(rotated.env.ep);
    expect(next.env.ep).not.toBe(current.env.ep);
    expect(Buffer.from(next.env.epk).equals(Buffer.from(rotated.env.epk))).toBe(false);
  });

  it('rewrap (issue 17 item 8): planted key_epochs rows neither stop the batches nor get rewrapped under a paylog key', async () => {
    const createdIds = async () =>
      new Set((await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries ORDER BY idx')).map((x) => decodeLeaf(x.leaf) as any).filter((l) => l.type === 'key_event' && l.event === 'epoch_created').map((l) => l.epoch as string));
    const ours = await createdIds();
    const before = (await runtime(t).query('SELECT epoch_id, kms_key_id FROM key_epochs WHERE shredded_at IS NULL')).rows as { epoch_id: string; kms_key_id: string }[];
    const planted = before.filter((r) => !ours.has(r.epoch_id));
    expect(planted.length).toBeGreaterThan(2); // from the tests above, one of them wrapped under a KMS key paylog may use
    let last: any;
    let req: Record<string, unknown> = { periodKeys: 'new', batchSize: 2 };
    for (let i = 0; i < 20; i++) {
      const r = await t.call('admin', 'POST', '/v1/admin/keys/rewrap', req);
      expect(r.status, r.text).toBe(200);
      last = r.json;
      if (last.done) break;
      req = { periodKeys: 'new', batchSize: 2, run: last.run, ...(last.after ? { after: last.after } : {}) };
    }
    expect(last.done).toBe(true);
    const after = new Map(((await runtime(t).query('SELECT epoch_id, kms_key_id FROM key_epochs WHERE shredded_at IS NULL')).rows as { epoch_id: string; kms_key_id: string }[]).map((r) => [r.epoch_id, r.kms_key_id]));
    // Every epoch paylog created moved to a new KMS key of its own period (rewrap --new-period-keys).
    const targets = new Set((await query<{ kms_key_id: string }>(t.databaseUrl, "SELECT kms_key_id FROM key_period_kms_keys WHERE role = 'rewrap_target'")).map((r) => r.kms_key_id));
    for (const id of ours) {
      const was = before.find((r) => r.epoch_id === id);
      if (!was) continue; // shredded meanwhile
      expect(after.get(id), id).not.toBe(was.kms_key_id);
      expect(targets.has(after.get(id)!), id).toBe(true);
    }
    for (const p of planted) expect(after.get(p.epoch_id), p.epoch_id).toBe(p.kms_key_id);
    const afterIds = await createdIds();
    const leaves = (await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries ORDER BY idx')).map((x) => decodeLeaf(x.leaf) as any);
    for (const p of planted) expect(afterIds.has(p.epoch_id) || leaves.some((l) => l.type === 'key_event' && l.epoch === p.epoch_id)).toBe(false);
  });

  it('the release path does not unwrap through a planted row either, even one wrapped under a KMS key paylog may use', async () => {
    const period = periodOf(new Date(), t.paylog.epochs.granularity);
    const attacker = attackerKeyPair();
    const attackerKms = await t.paylog.kms.ensureKey('attacker-owned-key', 'SYMMETRIC_DEFAULT');
    const forged = await plantEpoch(t, { processor: 'acme', period, generation: 900, publicKey: attacker.publicKey, wrap: { kmsKeyId: attackerKms, privateKey: attacker.rawPrivate() } });
    await expect(t.paylog.epochs.withPrivateKey(forged, () => 'unwrapped')).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
  });
});

describe('key_periods and keyring: a planted row cannot make paylog wrap keys under the attacker\'s KMS key', () => {
  let t: TestPaylog;
  let now = new Date();
  beforeAll(async () => {
    t = await startTestPaylog({ clock: () => now });
  });
  afterAll(async () => t?.stop());

  it('key_periods: a row planted for the next period naming a KMS key that lets paylog Encrypt is refused (no epoch key is wrapped under it), logged and counted', async () => {
    await submit(t);
    const g = t.paylog.epochs.granularity;
    const cur = periodOf(now, g);
    const next = periodOf(new Date(cur.end.getTime() + 60_000), g);
    const attackerKms = await t.paylog.kms.ensureKey('attacker-period-key', 'SYMMETRIC_DEFAULT');
    await runtime(t).query('INSERT INTO key_periods (granularity, period_start, period_end, kms_key_id) VALUES ($1, $2, $3, $4)', [g, next.start, next.end, attackerKms]);
    const before = await untrustedCount(t, 'key_periods');
    now = new Date(next.start.getTime() + 60_000);
    const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction());
    expect(r.status, r.text).toBe(500);
    expect(r.text).not.toContain('4111111111111111');
    const wrappedUnderAttacker = await query(t.databaseUrl, 'SELECT epoch_id FROM key_epochs WHERE kms_key_id = $1', [attackerKms]);
    expect(wrappedUnderAttacker).toEqual([]);
    const leaves = (await query<{ leaf: Buffer }>(t.databaseUrl, 'SELECT leaf FROM log_entries ORDER BY idx')).map((x) => decodeLeaf(x.leaf) as any);
    expect(leaves.some((l) => l.type === 'key_event' && l.kmsKeyId === attackerKms)).toBe(false);
    expect(t.logLines.some((l) => l.includes('a key row was not created by paylog') && l.includes(`${g}/${next.label}`))).toBe(true);
    expect(await untrustedCount(t, 'key_periods')).toBe(before + 1);
  });

  it('keyring: a row planted for a service key not created yet (a seed the attacker chose, wrapped under the attacker\'s KMS key) is refused', async () => {
    const name = `cse/${randomBytes(8).toString('hex')}`;
    const attackerKms = await t.paylog.kms.ensureKey('attacker-keyring-key', 'SYMMETRIC_DEFAULT');
    const seed = await t.paylog.kms.generateDataKey(attackerKms, { 'paylog:keyring': name });
    await runtime(t).query('INSERT INTO keyring (name, kms_key_id, wrapped_key) VALUES ($1, $2, $3)', [name, seed.keyId, seed.wrappedKey]);
    const got = loadOrCreateServiceKey(t.paylog.database, t.paylog.kms, t.paylog.dataKeyId, name);
    await expect(got).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
    // A key the service creates itself still loads.
    const own = await loadOrCreateServiceKey(t.paylog.database, t.paylog.kms, t.paylog.dataKeyId, `cse/${randomBytes(8).toString('hex')}`);
    expect(own).toHaveLength(32);
    expect(own.equals(seed.plaintext)).toBe(false);
  });
  it('key_periods: a row planted for an expired period naming another KMS key (here the data key) is never scheduled for deletion by retention', async () => {
    const g = t.paylog.epochs.granularity;
    const old = periodOf(new Date(Date.UTC(2020, 0, 15)), g);
    await runtime(t).query('INSERT INTO key_periods (granularity, period_start, period_end, kms_key_id) VALUES ($1, $2, $3, $4)', [g, old.start, old.end, t.paylog.dataKeyId]);
    const r = await t.call('admin', 'POST', '/v1/admin/retention/apply', {});
    expect(r.status, r.text).toBe(200);
    expect(r.json.periods.map((p: any) => p.kmsKeyId)).not.toContain(t.paylog.dataKeyId);
    expect(await t.paylog.kms.keyState(t.paylog.dataKeyId)).toBe('Enabled');
    const [row] = await query(t.databaseUrl, 'SELECT state FROM key_periods WHERE granularity = $1 AND period_start = $2', [g, old.start]);
    expect(row.state).toBe('active');
    expect(t.logLines.some((l) => l.includes('a key row was not created by paylog') && l.includes(`${g}/${old.label}`))).toBe(true);
  });
});

describe('verify-log: every transaction sealed to an epoch names the key its epoch_created entry names', () => {
  let t: TestPaylog;
  const { verifiers: logVerifiers, client } = paylogWithAuditorClient((x) => (t = x));

  /** Appends, through the service's appender, a transaction sealed to `publicKey` under `epochId` (what a service fooled by a planted row would have written). */
  async function appendSealedTo(epochId: string, publicKey: Buffer): Promise<number> {
    const transactionId = `ord-${randomBytes(6).toString('hex')}`;
    const sealed = sealEnvelopeV2(new X25519PublicKey(publicKey), { transactionId, processor: 'acme', epochId }, Buffer.from('{"type":"card"}'));
    const leaf = encodeLeaf(
      transactionLeaf({
        time: new Date(),
        transactionId,
        processor: 'acme',
        amount: { value: 100, currency: 'USD' },
        paymentMethod: { type: 'card', brand: 'visa', last4: '1111', expiryMonth: 12, expiryYear: 2030 },
        envelope: { ...sealed, key: { epochId }, epochPublicKeySha256: sha256(publicKey) },
      }),
    );
    const out = await t.paylog.appender.append({
      kind: 'transaction',
      leaf,
      createdAt: new Date(),
      transaction: { transactionId, requestMac: randomBytes(32) },
      dataKey: { wrappedKey: sealed.wrappedKey, kmsKeyId: null, epochId },
    });
    if (out.status !== 'appended') throw new Error(`append ${out.status}`);
    return out.logIndex;
  }

  it('a genuine log verifies and reports its epochs checked; a key mismatch and a missing creation entry fail naming the first bad index; a keyless (pre-v3) creation entry is reported, not failed', async () => {
    const genuine = (await leafOf(t, await submit(t))) as any;
    const period = periodOf(new Date(), t.paylog.epochs.granularity);
    await t.paylog.checkpoints.publish();
    const verifiers = await logVerifiers();
    const ok = await verifyRemoteLog(client(), { verifiers });
    expect(ok.failures).toEqual([]);
    expect(ok.epochKeys).toMatchObject({ transactionsChecked: 1, epochsCreated: 1, legacyEpochs: { count: 0, ids: [] }, legacyTransactions: 0 });

    // 1. Sealed to an attacker key under a genuine epoch id (the creation entry names another key).
    const attacker = attackerKeyPair();
    const mismatch = await appendSealedTo(genuine.env.ep, attacker.publicKey);
    // 2. Sealed to a planted epoch (a row the runtime role inserted; no creation entry at all).
    const planted = await plantEpoch(t, { processor: 'acme', period, generation: 77, publicKey: attacker.publicKey });
    const unknown = await appendSealedTo(planted, attacker.publicKey);
    // 3. An epoch whose creation entry carries no key (as every epoch created before leaf format v3).
    const legacyPeriod = periodOf(new Date(Date.UTC(2020, 0, 15)), period.granularity);
    const legacy = await plantEpoch(t, { processor: 'acme', period: legacyPeriod, generation: 0, publicKey: attacker.publicKey });
    await t.paylog.keyEvents.record({ event: 'epoch_created', time: new Date(), actor: { role: 'system', name: 'paylog' }, epochId: legacy, processor: 'acme', periodStart: legacyPeriod.start, periodEnd: legacyPeriod.end });
    const legacyTx = await appendSealedTo(legacy, attacker.publicKey);
    await t.paylog.checkpoints.publish();

    const r = await verifyRemoteLog(client(), { verifiers });
    expect(r.ok).toBe(false);
    expect(r.failures.map((f) => [f.code, f.index])).toEqual([
      ['EPOCH_KEY_MISMATCH', mismatch],
      ['EPOCH_NOT_CREATED', unknown],
    ]);
    expect(r.firstBadIndex).toBe(mismatch);
    expect(r.failures.some((f) => f.index === legacyTx)).toBe(false);
    expect(r.epochKeys).toMatchObject({ transactionsChecked: 1, legacyEpochs: { count: 1, ids: [legacy] }, legacyTransactions: 1 });

    // The CLI says the same (--json and the human summary).
    const a = t.paylog.devPki!.principals['auditor']!;
    const args = ['--url', t.paylog.url, '--cacert', t.paylog.devPki!.caPath, '--cert', a.certPath, '--key', a.keyPath, '--trust-server-key'];
    const json = await runScript('verify-log', [...args, '--json']);
    expect(json.code, json.stderr).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report.firstBadIndex).toBe(mismatch);
    expect(report.epochKeys.legacyEpochs.ids).toEqual([legacy]);
    const human = await runScript('verify-log', args);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`[EPOCH_KEY_MISMATCH] index ${mismatch}:`);
    expect(human.stdout).toContain(`[EPOCH_NOT_CREATED] index ${unknown}:`);
    expect(human.stdout).toContain(`legacy epochs: ${legacy}`);
  });
});

describe('processors: the runtime role cannot re-enable a processor an admin disabled, nor register one', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('UPDATE processors.status and INSERT INTO processors as the runtime role are refused (42501); the admin route still disables and re-enables', async () => {
    const d = await t.call('admin', 'PUT', '/v1/admin/processors/globex', { status: 'disabled' });
    expect(d.status, d.text).toBe(200);
    await expect(runtime(t).query("UPDATE processors SET status = 'active' WHERE name = 'globex'")).rejects.toMatchObject({ code: '42501' });
    await expect(runtime(t).query("UPDATE processors SET principal_uri = 'urn:x' WHERE name = 'acme'")).rejects.toMatchObject({ code: '42501' });
    await expect(runtime(t).query("INSERT INTO processors (name, principal_uri, status) VALUES ('evil', 'urn:paylog:principal:processor:evil', 'active')")).rejects.toMatchObject({ code: '42501' });
    // The one column it may UPDATE (needed for FOR SHARE row locks at commit) decides nothing.
    await runtime(t).query("UPDATE processors SET created_at = now() - interval '1 year' WHERE name = 'globex'");
    const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ processor: 'globex' }));
    expect(r.status).toBe(422);
    expect(r.json.error.code).toBe('UNKNOWN_PROCESSOR');
    // The admin's own connection (paylog_admin) still writes.
    expect((await t.call('admin', 'PUT', '/v1/admin/processors/globex', { status: 'active' })).status).toBe(200);
    await submit(t, { processor: 'globex' });
  });
});

describe('forward_destinations: the runtime role cannot register, change or remove a destination (issue 18)', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('INSERT / UPDATE / DELETE on forward_destinations as the runtime role are refused (42501); a row changed on the admin role\'s connection without its admin_event entry is refused at use', async () => {
    const put = await t.call('admin', 'PUT', '/v1/admin/processors/acme/destinations/payments', { url: 'https://api.acme.example', paths: ['/v1/payments'] });
    expect(put.status, put.text).toBe(200);
    await expect(runtime(t).query("INSERT INTO forward_destinations (processor, name, config, admin_log_index) VALUES ('acme', 'evil', '{\"url\":\"https://evil.example\"}', $1)", [put.json.adminLogIndex])).rejects.toMatchObject({ code: '42501' });
    await expect(runtime(t).query("UPDATE forward_destinations SET config = jsonb_set(config, '{url}', '\"https://evil.example\"')")).rejects.toMatchObject({ code: '42501' });
    await expect(runtime(t).query('DELETE FROM forward_destinations')).rejects.toMatchObject({ code: '42501' });
    // The same change made on the paylog_admin role (not by the admin route): no admin_event
    // entry records it, so the row is never used.
    await withClient(t.databaseUrl, async (c) => {
      await c.query('SET ROLE paylog_admin');
      await c.query("UPDATE forward_destinations SET config = jsonb_set(config, '{url}', '\"https://evil.example\"') WHERE name = 'payments'");
    });
    const tx = await submit(t);
    const r = await t.call('checkout', 'POST', `/v1/transactions/${tx}/forward`, { destination: 'payments', method: 'POST', path: '/v1/payments', headers: { 'content-type': 'application/json' }, body: '{"n":"{{card.number}}"}', purpose: 'authorize' }, { headers: { 'idempotency-key': 'k1' } });
    expect(r.status, r.text).toBe(403);
    expect(r.json.error.code).toBe('DESTINATION_NOT_ALLOWED');
  });
});

describe('the other tables the runtime role can INSERT into: refused, detected or harmless', () => {
  let t: TestPaylog;
  const { verifiers, client } = paylogWithAuditorClient((x) => (t = x));

  it('transactions / access_entries / data_keys lookup rows: a planted record is never served or released (its leaf does not match), the id it takes is refused to its genuine submission (422 INTEGRITY_FAILURE), and verify-log names the entry it points at', async () => {
    const g = await submit(t);
    expect((await t.call('processor-acme', 'POST', `/v1/transactions/${g}/release`, { purpose: 'capture' })).status).toBe(200);
    const all = await query<{ idx: string; leaf: Buffer }>(t.databaseUrl, 'SELECT idx, leaf FROM log_entries ORDER BY idx');
    const keyEventIdx = all.find((r) => decodeLeaf(r.leaf).type === 'key_event')!.idx;
    const epochId = (await query<{ epoch_id: string }>(t.databaseUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [g]))[0]!.epoch_id;
    const x = `ord-${randomBytes(6).toString('hex')}`;
    await runtime(t).query('INSERT INTO transactions (transaction_id, log_index, request_mac) VALUES ($1, $2, $3)', [x, keyEventIdx, randomBytes(32)]);
    await runtime(t).query('INSERT INTO data_keys (log_index, wrapped_key, epoch_id) VALUES ($1, $2, $3)', [keyEventIdx, randomBytes(80), epochId]);
    await runtime(t).query(
      "INSERT INTO access_entries (log_index, transaction_id, principal_role, principal_name, certificate_fingerprint, action, outcome, source_address) VALUES ($1, $2, 'processor', 'acme', 'sha256:00', 'release', 'granted', '127.0.0.1')",
      [keyEventIdx, g],
    );
    const get = await t.call('checkout', 'GET', `/v1/transactions/${x}`);
    expect(get.status).not.toBe(200);
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${x}/release`, { purpose: 'capture' });
    expect(rel.status).not.toBe(200);
    expect(rel.text).not.toContain('4111111111111111');
    // The genuine record and its release history are unaffected.
    expect((await t.call('processor-acme', 'POST', `/v1/transactions/${g}/release`, { purpose: 'capture' })).status).toBe(200);
    // Harm: the planted id is taken: a genuine submission with it is refused (the replay check
    // reads the planted row's leaf, which does not match: 422 INTEGRITY_FAILURE), never stored.
    const taken = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ transactionId: x }));
    expect(taken.status).toBe(422);
    expect(taken.json.error.code).toBe('INTEGRITY_FAILURE');
    await t.paylog.checkpoints.publish();
    const r = await verifyRemoteLog(client(), { verifiers: await verifiers() });
    expect(r.ok).toBe(false);
    expect(r.failures.every((f) => f.code === 'SERVED_VIEW_MISMATCH' && f.index === Number(keyEventIdx))).toBe(true);
    expect(r.firstBadIndex).toBe(Number(keyEventIdx));
  });

  it('revoked_certificates: a planted revocation fails closed (the certificate is refused); it cannot un-revoke', async () => {
    const fp = t.paylog.devPki!.principals['processor-globex']!.fingerprint;
    await expect(runtime(t).query('DELETE FROM revoked_certificates')).rejects.toMatchObject({ code: '42501' });
    await expect(runtime(t).query('UPDATE revoked_certificates SET fingerprint = fingerprint')).rejects.toMatchObject({ code: '42501' });
    await runtime(t).query("INSERT INTO revoked_certificates (fingerprint, revoked_by) VALUES ($1, 'planted')", [fp]);
    const r = await t.call('processor-globex', 'POST', `/v1/transactions/${await submit(t, { processor: 'globex' })}/release`, { purpose: 'capture' });
    expect(r.status).toBe(401);
    expect(r.json.error.code).toBe('CERTIFICATE_REVOKED');
  });

  it('sequences: drawing checkpoint / cosignature ids only leaves gaps', async () => {
    await runtime(t).query("SELECT nextval('checkpoints_id_seq'), nextval('witness_cosignatures_id_seq')");
    await submit(t);
    expect(await t.paylog.checkpoints.publish()).not.toBeNull();
  });

});

describe('log_entries / merkle_nodes planted by the runtime role', () => {
  let t: TestPaylog;
  const { verifiers, client } = paylogWithAuditorClient((x) => (t = x));

  it('log_entries / merkle_nodes: a planted entry or node at the next position is never signed or served; appends stop (503) until the owner removes it (availability, not integrity)', async () => {
    await submit(t);
    const before = await t.paylog.checkpoints.publish();
    const size = before!.size;
    for (const [table, plant, remove] of [
      ['log_entries', ["INSERT INTO log_entries (idx, entry_type, leaf) VALUES ($1, 'transaction', '\\x00')", [size]], ['DELETE FROM log_entries WHERE idx = $1', [size]]],
      ['merkle_nodes', ['INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, $1, $2)', [size, randomBytes(32)]], ['DELETE FROM merkle_nodes WHERE level = 0 AND idx = $1', [size]]],
    ] as const) {
      await runtime(t).query(plant[0], [...plant[1]]);
      const r = await t.call('checkout', 'POST', '/v1/transactions', cardTransaction());
      expect(r.status, table).toBe(503);
      const cp = await t.paylog.checkpoints.publish();
      expect(cp!.size, table).toBe(size);
      const v = await verifyRemoteLog(client(), { verifiers: await verifiers() });
      expect(v.ok, JSON.stringify(v.failures)).toBe(true);
      expect(v.treeSize).toBe(size);
      // Recovery: the owner removes the planted row (triggers refuse even the owner, so they are disabled for it).
      await withClient(t.databaseUrl, async (c) => {
        await c.query(`ALTER TABLE ${table} DISABLE TRIGGER ${table}_no_update_delete`);
        try {
          await c.query(remove[0], [...remove[1]]);
        } finally {
          await c.query(`ALTER TABLE ${table} ENABLE ALWAYS TRIGGER ${table}_no_update_delete`);
        }
      });
    }
    await submit(t);
    expect((await verifyRemoteLog(client(), { verifiers: await verifiers() })).ok).toBe(true);
  });
});

describe('paylog_keys (the key-destruction connection): what it can replace is checked before use', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('a wrapped epoch key, KMS key id or record data key swapped for another one opens nothing (release refuses, no card data)', async () => {
    const a = await submit(t);
    const b = await submit(t, { processor: 'globex' });
    const c = await submit(t);
    const epochOf = async (id: string) => (await query<{ epoch_id: string }>(t.databaseUrl, `SELECT epoch_id FROM ${DATA_KEYS_WHOLE} d WHERE log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1)`, [id]))[0]!.epoch_id;
    const [ea, eb] = [await epochOf(a), await epochOf(b)];
    await withClient(t.databaseUrl, async (db) => {
      await db.query('SET ROLE paylog_keys');
      // The acme epoch's wrapped private key replaced by globex's (a genuine KMS blob of another epoch).
      await db.query(
        'UPDATE key_epochs SET wrapped_private_key = o.wrapped_private_key, wrapped_key_sha256 = o.wrapped_key_sha256 FROM key_epochs o WHERE key_epochs.epoch_id = $1 AND o.epoch_id = $2',
        [ea, eb],
      );
    });
    t.paylog.epochs.forget(ea);
    const r1 = await t.call('processor-acme', 'POST', `/v1/transactions/${a}/release`, { purpose: 'capture' });
    expect(r1.status).not.toBe(200);
    expect(r1.text).not.toContain('4111111111111111');
    await withClient(t.databaseUrl, async (db) => {
      await db.query('SET ROLE paylog_keys');
      // One record's data key replaced by another record's (same epoch).
      await db.query('UPDATE data_keys SET wrapped_key = o.wrapped_key FROM data_keys o WHERE data_keys.log_index = (SELECT log_index FROM transactions WHERE transaction_id = $1) AND o.log_index = (SELECT log_index FROM transactions WHERE transaction_id = $2)', [c, a]);
    });
    const r2 = await t.call('processor-acme', 'POST', `/v1/transactions/${c}/release`, { purpose: 'capture' });
    expect(r2.status).not.toBe(200);
    expect(r2.text).not.toContain('4111111111111111');
    await withClient(t.databaseUrl, async (db) => {
      await db.query('SET ROLE paylog_keys');
      // The globex epoch's KMS key id pointed at another KMS key (the data key).
      await db.query('UPDATE key_epochs SET kms_key_id = $2 WHERE epoch_id = $1', [eb, t.paylog.dataKeyId]);
    });
    t.paylog.epochs.forget(eb);
    const r3 = await t.call('processor-globex', 'POST', `/v1/transactions/${b}/release`, { purpose: 'capture' });
    expect(r3.status).not.toBe(200);
    expect(r3.text).not.toContain('4111111111111111');
  });
});

describe('epochs from before migration 0009 (no MAC) keep working when the migration listed them', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('a MAC-less row listed in paylog_legacy_key_epochs (what migration 0009 records) still seals and releases; nothing is reported', async () => {
    const first = await submit(t);
    const epoch = ((await leafOf(t, first)) as any).env.ep as string;
    // Recreate the state right after migration 0009 on an older database (as the owner).
    await withClient(t.databaseUrl, async (c) => {
      await c.query('UPDATE key_epochs SET mac = NULL WHERE epoch_id = $1', [epoch]);
      await c.query('INSERT INTO paylog_legacy_key_epochs (epoch_id, public_key) SELECT epoch_id, public_key FROM key_epochs WHERE epoch_id = $1', [epoch]);
    });
    t.paylog.epochs.forget(epoch);
    t.paylog.epochs.forgetCurrent('acme');
    const second = (await leafOf(t, await submit(t))) as any;
    expect(second.env.ep).toBe(epoch);
    const r = await t.call('processor-acme', 'POST', `/v1/transactions/${first}/release`, { purpose: 'capture' });
    expect(r.status, r.text).toBe(200);
    expect(await untrustedCount(t, 'key_epochs')).toBe(0);
  });
});

describe('cvc_holder_keys: the runtime role cannot have card security codes sealed to its own key (issue 18)', () => {
  let t: TestPaylog;
  beforeAll(async () => {
    t = await startTestPaylog();
  });
  afterAll(async () => t?.stop());

  it('cvc_holder_keys: a row planted by the runtime role (its own public key) is never sealed to', async () => {
    const attacker = attackerKeyPair();
    // Without a MAC, and with a MAC copied from a genuine row (another key id and key): both ignored.
    const [genuine] = (await runtime(t).query('SELECT mac FROM cvc_holder_keys LIMIT 1')).rows as { mac: Buffer }[];
    await runtime(t).query("INSERT INTO cvc_holder_keys (key_id, public_key, not_after, mac) VALUES ('cvk_attacker1', $1, now() + interval '1 day', $2), ('cvk_attacker2', $1, now() + interval '1 day', $3)", [
      attacker.publicKey,
      Buffer.alloc(32),
      genuine!.mac,
    ]);
    const body = cardTransaction();
    const r = await t.call('checkout', 'POST', '/v1/transactions', { ...body, paymentMethod: { ...body.paymentMethod, cvc: '8642' } });
    expect(r.status, r.text).toBe(201);
    const [row] = await query<{ sealed: Record<string, string> }>(t.databaseUrl, 'SELECT sealed FROM card_security_codes WHERE transaction_id = $1', [body.transactionId]);
    expect(Object.keys(row!.sealed).length).toBeGreaterThan(0);
    expect(Object.keys(row!.sealed).filter((k) => k.startsWith('cvk_attacker'))).toEqual([]);
    expect(t.logLines.filter((l) => l.includes('cvk_attacker') && l.includes('planted'))).toHaveLength(2);
    // The genuine taker still gets it.
    const rel = await t.call('processor-acme', 'POST', `/v1/transactions/${body.transactionId}/release`, { purpose: 'authorize' });
    expect(rel.json.paymentMethod.cvc).toBe('8642');
  });
});
