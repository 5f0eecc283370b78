/**
 * Issue 19: "adding a key backend is one new file plus registration". A test-only backend that
 * wraps keys locally (test/helpers/local-wrap-kms.ts, no KMS at all) is handed to paylog's key
 * layer where a `KmsBackend` is wanted, and records are sealed and opened, and an epoch private
 * key wrapped and unwrapped, through the same interfaces the service uses
 * (src/keys/record-keys.ts via src/keys/compose.ts; src/kms/epoch-keys.ts), on real PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { EpochKeyring, periodKeyAlias, periodOf } from '../src/kms/epoch-keys.js';
import { recordKeyringFor } from '../src/keys/compose.js';
import type { RecordKeyring, SealedRecord, StoredRecord } from '../src/keys/record-keys.js';
import type { KmsBackend } from '../src/kms/backend.js';
import type { KeyEvent } from '../src/services/key-events.js';
import { newTestDatabase } from './helpers/paylog.js';
import { LocalWrapKms } from './helpers/local-wrap-kms.js';

const NOW = new Date(Date.UTC(2031, 2, 14, 9, 30));

/** A sealed record as the service stores it (leaf fields + data_keys row). */
function stored(s: SealedRecord): StoredRecord {
  return {
    version: s.version,
    keyRef: s.keyRef.epochId !== undefined ? { epochId: s.keyRef.epochId } : { kmsKeyId: s.keyRef.kmsKeyId },
    salt: s.salt,
    iv: s.iv,
    ciphertext: s.ciphertext,
    tag: s.tag,
    keyCommitment: s.keyCommitment,
    wrappedKey: s.wrappedKey,
    stored: { kmsKeyId: s.keyRef.kmsKeyId ?? null, epochId: s.keyRef.epochId ?? null },
  };
}

describe('a key backend that wraps keys locally, through the key layer', () => {
  let url: string;
  let database: AppDatabase;
  let backend: LocalWrapKms;
  let epochs: EpochKeyring;
  const events: KeyEvent[] = [];
  let keys: (mode: 'epoch' | 'per-transaction') => RecordKeyring;

  beforeAll(async () => {
    url = await newTestDatabase();
    await applyMigrations(url);
    database = openAppDatabase(url);
    backend = new LocalWrapKms();
    const kms: KmsBackend = backend; // the registration: where paylog wants a KmsBackend
    const dataKeyId = await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
    epochs = new EpochKeyring({
      database,
      kms,
      granularity: 'day',
      cacheTtlMs: 60_000,
      cacheMaxUses: 100,
      recordKeyEvent: async (e) => (events.push(e), events.length),
      rowKey: randomBytes(32),
    });
    const dataKeys = {
      generateDataKey: (context: Record<string, string>) => kms.generateDataKey(dataKeyId, context),
      decryptDataKey: (wrapped: Buffer, context: Record<string, string>, keyId: string) => kms.decryptDataKey(wrapped, context, keyId),
    };
    keys = (mode) => recordKeyringFor({ sealWith: mode, dataKeys, epochs });
  });

  afterAll(async () => {
    epochs?.close();
    await database?.close();
  });

  it('per-transaction: seals under a fresh wrapped data key and opens only for its own binding', async () => {
    const binding = { transactionId: 'tx-local-1', processor: 'acme' };
    const sealed = await keys('per-transaction').seal(binding, Buffer.from('{"pan":"4111"}'), { now: NOW });
    expect(sealed.version).toBe(1);
    expect(sealed.keyRef.kmsKeyId).toMatch(/^arn:local:kms:/);
    const opened = await keys('epoch').open(stored(sealed), binding); // any deployment opens v1
    expect(opened.toString()).toBe('{"pan":"4111"}');
    opened.fill(0);
    await expect(keys('per-transaction').open(stored(sealed), { ...binding, processor: 'globex' })).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
    expect(backend.calls).toEqual(expect.arrayContaining(['GenerateDataKey', 'Decrypt']));
  });

  it('epoch: the epoch private key is wrapped and unwrapped by the local backend; records seal with no backend call and open', async () => {
    const binding = { transactionId: 'tx-local-2', processor: 'acme' };
    const ring = keys('epoch');
    const sealed = await ring.seal(binding, Buffer.from('{"pan":"5555"}'), { now: NOW });
    expect(sealed.version).toBe(2);
    const epochId = sealed.keyRef.epochId!;
    expect(epochId).toBe(`acme/${periodOf(NOW, 'day').label}/0`);
    const created = events.find((e) => e.event === 'epoch_created');
    expect(created).toMatchObject({ epochId, kmsKeyId: await backend.keyArn(periodKeyAlias(periodOf(NOW, 'day'))) });
    const [row] = (await database.pool.query('SELECT kms_key_id, wrapped_private_key FROM key_epochs WHERE epoch_id = $1', [epochId])).rows;
    expect(row.kms_key_id).toMatch(/^arn:local:kms:/);

    const callsBefore = backend.calls.length;
    const again = await ring.seal({ ...binding, transactionId: 'tx-local-3' }, Buffer.from('{"pan":"6011"}'), { now: NOW });
    expect(again.keyRef.epochId).toBe(epochId);
    expect(backend.calls.length).toBe(callsBefore); // sealing to a known epoch: no backend call

    epochs.evict(epochId);
    const opened = await keys('per-transaction').open(stored(sealed), binding); // any deployment opens v2
    expect(opened.toString()).toBe('{"pan":"5555"}');
    opened.fill(0);
    expect(backend.calls.slice(callsBefore)).toEqual(['Decrypt']); // the epoch key, unwrapped once
    await expect(ring.open(stored(sealed), { ...binding, transactionId: 'tx-local-3' })).rejects.toMatchObject({ code: 'INTEGRITY_FAILURE' });
  });

  it('a shredded period (its backend key scheduled for deletion) opens nothing: DATA_SHREDDED', async () => {
    const binding = { transactionId: 'tx-local-4', processor: 'globex' };
    const ring = keys('epoch');
    const sealed = await ring.seal(binding, Buffer.from('{"pan":"3782"}'), { now: NOW });
    await backend.scheduleKeyDeletion(periodKeyAlias(periodOf(NOW, 'day')), 7);
    epochs.evict(sealed.keyRef.epochId!);
    await expect(ring.open(stored(sealed), binding)).rejects.toMatchObject({ code: 'DATA_SHREDDED' });
  });
});
