/**
 * src/kms through the REAL @aws-sdk/client-kms KMSClient against the local endpoint (no mocks).
 */
import {
  CancelKeyDeletionCommand,
  DecryptCommand,
  DescribeKeyCommand,
  DisableKeyCommand,
  EnableKeyCommand,
  GenerateDataKeyCommand,
  GetPublicKeyCommand,
  ListAliasesCommand,
  ListKeysCommand,
  ScheduleKeyDeletionCommand,
  SignCommand,
  VerifyCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import { createPublicKey, verify as edVerify } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PaylogError } from '../src/errors.js';
import { PaylogKms, createKmsClient } from '../src/kms/client.js';
import { startLocalKms, type LocalKmsEndpoint } from '../src/kms/local/server.js';
import { KEYSTORE_FILE_NAME } from '../src/kms/local/keystore.js';

const REGION = 'eu-west-1';
const CONTEXT = { purpose: 'payment-method', transactionId: 'ord-2026-000123' };

/** Await a rejection and return it (fails the test if the promise resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the promise to reject');
}

function expectPaylogError(e: unknown, code: string, sdkName: string): void {
  expect(e).toBeInstanceOf(PaylogError);
  const pe = e as PaylogError;
  expect(pe.code).toBe(code);
  expect((pe.cause as { name?: string }).name).toBe(sdkName);
}

describe('local KMS endpoint through the real KMSClient', () => {
  let dir: string;
  let endpoint: LocalKmsEndpoint;
  let client: KMSClient;
  let kms: PaylogKms;
  let symArn: string;
  let otherSymArn: string;
  let edArn: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'paylog-kms-'));
    endpoint = await startLocalKms({ keyStoreDir: join(dir, 'kms') });
    client = createKmsClient({ endpoint: endpoint.url, region: REGION, local: true });
    kms = new PaylogKms(client);
    symArn = await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
    otherSymArn = await kms.ensureKey('paylog-other', 'SYMMETRIC_DEFAULT');
    edArn = await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
  });

  afterAll(async () => {
    client?.destroy();
    await endpoint?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('listens on loopback and issues key ARNs in the client region', () => {
    expect(new URL(endpoint.url).hostname).toBe('127.0.0.1');
    expect(symArn).toMatch(/^arn:aws:kms:eu-west-1:111122223333:key\/[0-9a-f-]{36}$/);
    expect(edArn).not.toBe(symArn);
    expect(otherSymArn).not.toBe(symArn);
  });

  it('ensureKey is idempotent', async () => {
    expect(await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT')).toBe(symArn);
    expect(await kms.ensureKey('alias/paylog-checkpoint', 'ECC_NIST_EDWARDS25519')).toBe(edArn);
    const aliases = await client.send(new ListAliasesCommand({}));
    expect(aliases.Aliases?.filter((a) => a.AliasName === 'alias/paylog-data')).toHaveLength(1);
  });

  it('resolves key id, key ARN, alias name and alias ARN to the same key', async () => {
    const keyId = symArn.split('/')[1] ?? '';
    const aliasArnStr = `arn:aws:kms:${REGION}:111122223333:alias/paylog-data`;
    for (const ref of [keyId, symArn, 'alias/paylog-data', aliasArnStr]) {
      const out = await client.send(new DescribeKeyCommand({ KeyId: ref }));
      expect(out.KeyMetadata?.Arn).toBe(symArn);
      expect(out.KeyMetadata?.KeyId).toBe(keyId);
      expect(out.KeyMetadata?.KeyState).toBe('Enabled');
    }
    // The same key id is not found in another region, as with AWS.
    const otherRegion = createKmsClient({ endpoint: endpoint.url, region: 'us-west-2', local: true });
    const e = await rejection(otherRegion.send(new DescribeKeyCommand({ KeyId: keyId })));
    otherRegion.destroy();
    expect((e as Error).name).toBe('NotFoundException');
  });

  it('GenerateDataKey + Decrypt round-trip; returns the key ARN and a 32-byte key', async () => {
    const dk = await kms.generateDataKey('alias/paylog-data', CONTEXT);
    expect(dk.keyId).toBe(symArn);
    expect(dk.plaintext).toHaveLength(32);
    expect(dk.plaintext.equals(Buffer.alloc(32))).toBe(false);
    expect(dk.wrappedKey.includes(dk.plaintext)).toBe(false);
    const back = await kms.decryptDataKey(dk.wrappedKey, { ...CONTEXT }, symArn);
    expect(back.equals(dk.plaintext)).toBe(true);
  });

  it('Decrypt without KeyId uses the key named in the blob', async () => {
    const dk = await kms.generateDataKey(symArn, CONTEXT);
    const out = await client.send(new DecryptCommand({ CiphertextBlob: dk.wrappedKey, EncryptionContext: CONTEXT }));
    expect(out.KeyId).toBe(symArn);
    expect(Buffer.from(out.Plaintext ?? []).equals(dk.plaintext)).toBe(true);
  });

  it('GenerateDataKey with NumberOfBytes, and KeySpec+NumberOfBytes together is a ValidationException', async () => {
    const out = await client.send(new GenerateDataKeyCommand({ KeyId: symArn, NumberOfBytes: 48 }));
    expect(out.Plaintext).toHaveLength(48);
    const e = await rejection(client.send(new GenerateDataKeyCommand({ KeyId: symArn, NumberOfBytes: 48, KeySpec: 'AES_256' })));
    expect((e as Error).name).toBe('ValidationException');
  });

  describe('encryption context must match exactly', () => {
    const cases: Array<[string, Record<string, string>, Record<string, string>]> = [
      ['missing key', { a: '1', b: '2' }, { a: '1' }],
      ['extra key', { a: '1' }, { a: '1', b: '2' }],
      ['changed value case', { tenant: 'Acme' }, { tenant: 'acme' }],
      ['changed key case', { Tenant: 'acme' }, { tenant: 'acme' }],
      ['no context at all', { a: '1' }, {}],
      ['length-prefixed, not concatenated', { ab: 'c' }, { a: 'bc' }],
      ['pair boundaries', { a: 'b', c: 'd' }, { a: 'bc', '': 'd' }],
    ];
    for (const [name, encCtx, decCtx] of cases) {
      it(`${name} → InvalidCiphertextException → INTEGRITY_FAILURE`, async () => {
        const dk = await kms.generateDataKey(symArn, encCtx);
        // Sanity: the right context decrypts, so the failure below is due to the context only.
        expect((await kms.decryptDataKey(dk.wrappedKey, encCtx, symArn)).equals(dk.plaintext)).toBe(true);
        const e = await rejection(kms.decryptDataKey(dk.wrappedKey, decCtx, symArn));
        expectPaylogError(e, 'INTEGRITY_FAILURE', 'InvalidCiphertextException');
      });
    }

    it('key order does not matter (a map, not a list)', async () => {
      const dk = await kms.generateDataKey(symArn, { z: '1', a: '2', é: '3' });
      const back = await kms.decryptDataKey(dk.wrappedKey, { é: '3', a: '2', z: '1' }, symArn);
      expect(back.equals(dk.plaintext)).toBe(true);
    });
  });

  it('a flipped byte anywhere in the blob is rejected', async () => {
    const dk = await kms.generateDataKey(symArn, CONTEXT);
    for (const i of [0, 1, 5, 2 + 36 + 3, dk.wrappedKey.length - 20, dk.wrappedKey.length - 1]) {
      const bad = Buffer.from(dk.wrappedKey);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      const e = await rejection(kms.decryptDataKey(bad, CONTEXT, symArn));
      expect(e).toBeInstanceOf(PaylogError);
      expect((e as PaylogError).code).toBe('INTEGRITY_FAILURE');
    }
    const truncated = await rejection(kms.decryptDataKey(dk.wrappedKey.subarray(0, 20), CONTEXT, symArn));
    expectPaylogError(truncated, 'INTEGRITY_FAILURE', 'InvalidCiphertextException');
  });

  it('Decrypt naming another key → IncorrectKeyException → INTEGRITY_FAILURE', async () => {
    const dk = await kms.generateDataKey(symArn, CONTEXT);
    const e = await rejection(kms.decryptDataKey(dk.wrappedKey, CONTEXT, otherSymArn));
    expectPaylogError(e, 'INTEGRITY_FAILURE', 'IncorrectKeyException');
  });

  it('unknown key id / alias → NotFoundException (SDK error name), KMS_UNAVAILABLE in the wrapper', async () => {
    for (const ref of ['alias/does-not-exist', '00000000-0000-4000-8000-000000000000', `arn:aws:kms:${REGION}:111122223333:key/00000000-0000-4000-8000-000000000000`]) {
      const e = await rejection(client.send(new DescribeKeyCommand({ KeyId: ref })));
      expect((e as Error).name).toBe('NotFoundException');
      expect((e as { $fault?: string }).$fault).toBe('client');
    }
    const e = await rejection(kms.generateDataKey('alias/does-not-exist', CONTEXT));
    expectPaylogError(e, 'KMS_UNAVAILABLE', 'NotFoundException');
    const p = await rejection(kms.ping('alias/does-not-exist'));
    expectPaylogError(p, 'KMS_UNAVAILABLE', 'NotFoundException');
    await expect(kms.ping(symArn)).resolves.toBeUndefined();
  });

  it('key usage is enforced: no data keys from a signing key, no signatures from a symmetric key', async () => {
    const e1 = await rejection(kms.generateDataKey(edArn, CONTEXT));
    expectPaylogError(e1, 'INTERNAL', 'InvalidKeyUsageException');
    const e2 = await rejection(kms.sign(symArn, Buffer.from('x')));
    expectPaylogError(e2, 'INTERNAL', 'InvalidKeyUsageException');
    const e3 = await rejection(kms.getPublicKey(symArn));
    expectPaylogError(e3, 'INTERNAL', 'UnsupportedOperationException');
  });

  it('a disabled key → DisabledException; ping reports KMS_UNAVAILABLE', async () => {
    const arn = await kms.ensureKey('paylog-disable-me', 'SYMMETRIC_DEFAULT');
    const blob = await kms.encrypt(arn, Buffer.from('hello'), CONTEXT);
    await client.send(new DisableKeyCommand({ KeyId: arn }));
    const e = await rejection(kms.decryptDataKey(blob, CONTEXT, arn));
    expectPaylogError(e, 'KMS_UNAVAILABLE', 'DisabledException');
    const p = await rejection(kms.ping(arn));
    expect((p as PaylogError).code).toBe('KMS_UNAVAILABLE');
    await client.send(new EnableKeyCommand({ KeyId: arn }));
    await expect(kms.ping(arn)).resolves.toBeUndefined();
  });

  it('Ed25519 Sign verifies with node:crypto against GetPublicKey SPKI; raw key matches', async () => {
    const message = Buffer.from('paylog.example/log\n42\nq3lX2Vh3Sw1Xj0E6BLvDnKqZcNM2SP3hjm4ES4eOz9o=\n');
    const sig = await kms.sign('alias/paylog-checkpoint', message);
    expect(sig).toHaveLength(64);
    const spki = await kms.getPublicKeySpki(edArn);
    const pub = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    expect(pub.asymmetricKeyType).toBe('ed25519');
    expect(edVerify(null, message, pub, sig)).toBe(true);
    expect(edVerify(null, Buffer.concat([message, Buffer.from('x')]), pub, sig)).toBe(false);
    const raw = await kms.getPublicKey(edArn);
    expect(raw).toHaveLength(32);
    // SPKI for Ed25519 is a fixed 12-byte prefix followed by the raw key (RFC 8410 §4).
    expect(spki.subarray(spki.length - 32).equals(raw)).toBe(true);
    const meta = await client.send(new GetPublicKeyCommand({ KeyId: edArn }));
    expect(meta.KeySpec).toBe('ECC_NIST_EDWARDS25519');
    expect(meta.KeyUsage).toBe('SIGN_VERIFY');
    expect(meta.SigningAlgorithms).toContain('ED25519_SHA_512');
    expect(meta.KeyId).toBe(edArn);
  });

  it('KMS Verify accepts a good signature and rejects a bad one with KMSInvalidSignatureException', async () => {
    const message = Buffer.from('checkpoint body');
    const sig = await client.send(
      new SignCommand({ KeyId: edArn, Message: message, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512' }),
    );
    expect(sig.KeyId).toBe(edArn);
    const ok = await client.send(
      new VerifyCommand({ KeyId: edArn, Message: message, MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512', Signature: sig.Signature }),
    );
    expect(ok.SignatureValid).toBe(true);
    const bad = await rejection(
      client.send(
        new VerifyCommand({ KeyId: edArn, Message: Buffer.from('checkpoint bodY'), MessageType: 'RAW', SigningAlgorithm: 'ED25519_SHA_512', Signature: sig.Signature }),
      ),
    );
    expect((bad as Error).name).toBe('KMSInvalidSignatureException');
  });

  it('ReEncrypt round-trip to another key and context; old context no longer applies', async () => {
    const secret = Buffer.from('rewrap me');
    const blob = await kms.encrypt(symArn, secret, CONTEXT);
    const newCtx = { ...CONTEXT, keyGeneration: '2' };
    const rewrapped = await kms.reEncrypt(blob, CONTEXT, otherSymArn, newCtx);
    expect(rewrapped.equals(blob)).toBe(false);
    const out = await client.send(new DecryptCommand({ CiphertextBlob: rewrapped, EncryptionContext: newCtx, KeyId: otherSymArn }));
    expect(Buffer.from(out.Plaintext ?? []).equals(secret)).toBe(true);
    const e = await rejection(kms.reEncrypt(rewrapped, CONTEXT, symArn));
    expectPaylogError(e, 'INTEGRITY_FAILURE', 'InvalidCiphertextException');
    // Default destination context = source context.
    const same = await kms.reEncrypt(blob, CONTEXT, otherSymArn);
    const out2 = await client.send(new DecryptCommand({ CiphertextBlob: same, EncryptionContext: CONTEXT }));
    expect(out2.KeyId).toBe(otherSymArn);
  });

  it('an operation KMS has but the endpoint lacks → UnsupportedOperationException via the SDK', async () => {
    const e = await rejection(client.send(new ListKeysCommand({})));
    expect((e as Error).name).toBe('UnsupportedOperationException');
  });

  it('unknown X-Amz-Target → AWS JSON error the SDK understands', async () => {
    const res = await fetch(endpoint.url + '/', {
      method: 'POST',
      headers: {
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.NoSuchOperation',
        authorization: 'AWS4-HMAC-SHA256 Credential=AKID/20260101/eu-west-1/kms/aws4_request, SignedHeaders=host, Signature=00',
      },
      body: '{}',
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(res.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
    expect(await res.json()).toMatchObject({ __type: 'UnknownOperationException', message: expect.any(String) });

    const noAuth = await fetch(endpoint.url + '/', {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.DescribeKey' },
      body: JSON.stringify({ KeyId: symArn }),
    });
    expect(noAuth.status).toBe(400);
    expect(((await noAuth.json()) as { __type: string }).__type).toBe('MissingAuthenticationTokenException');
  });

  it('key store file: mode 0600, marked DEV-ONLY, written atomically (no temp files left)', async () => {
    const file = join(dir, 'kms', 'keystore.json');
    const st = await stat(file);
    expect(st.mode & 0o777).toBe(0o600);
    const parsed = JSON.parse(await readFile(file, 'utf8')) as { devOnly: unknown; warning: unknown; keys: unknown[] };
    expect(parsed.devOnly).toBe(true);
    expect(String(parsed.warning)).toMatch(/DEV-ONLY/);
    expect(String(parsed.warning)).toMatch(/NOT FOR PRODUCTION/);
    expect(parsed.keys.length).toBeGreaterThanOrEqual(3);
    const { readdir } = await import('node:fs/promises');
    expect((await readdir(join(dir, 'kms'))).filter((n) => n.includes('.tmp'))).toEqual([]);
  });
});

describe('persistence across restarts of the endpoint', () => {
  it('same dir → same keys; old ciphertexts decrypt, old signatures verify', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'paylog-kms-restart-'));
    try {
      const first = await startLocalKms({ keyStoreDir: dir });
      const c1 = createKmsClient({ endpoint: first.url, region: REGION, local: true });
      const k1 = new PaylogKms(c1);
      const symArn = await k1.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
      const edArn = await k1.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
      const dk = await k1.generateDataKey(symArn, CONTEXT);
      const pub1 = await k1.getPublicKey(edArn);
      c1.destroy();
      await first.close();

      const second = await startLocalKms({ keyStoreDir: dir });
      const c2 = createKmsClient({ endpoint: second.url, region: REGION, local: true });
      const k2 = new PaylogKms(c2);
      try {
        expect(await k2.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT')).toBe(symArn);
        expect(await k2.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519')).toBe(edArn);
        expect((await k2.decryptDataKey(dk.wrappedKey, CONTEXT, symArn)).equals(dk.plaintext)).toBe(true);
        expect((await k2.getPublicKey(edArn)).equals(pub1)).toBe(true);
      } finally {
        c2.destroy();
        await second.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a corrupt key store instead of silently starting empty', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'paylog-kms-corrupt-'));
    try {
      const { writeFile } = await import('node:fs/promises');
      await writeFile(join(dir, 'keystore.json'), '{"keys": [', { mode: 0o600 });
      await expect(startLocalKms({ keyStoreDir: dir })).rejects.toThrow(/not valid JSON/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses to listen on a non-loopback address', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'paylog-kms-host-'));
    try {
      await expect(startLocalKms({ keyStoreDir: dir, host: '0.0.0.0' })).rejects.toThrow(/loopback/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a stopped endpoint surfaces as KMS_UNAVAILABLE', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'paylog-kms-down-'));
    try {
      const ep = await startLocalKms({ keyStoreDir: dir });
      const url = ep.url;
      await ep.close();
      const c = createKmsClient({ endpoint: url, region: REGION, local: true });
      const e = await rejection(new PaylogKms(c).ping('alias/anything'));
      c.destroy();
      expect(e).toBeInstanceOf(PaylogError);
      expect((e as PaylogError).code).toBe('KMS_UNAVAILABLE');
      expect((e as PaylogError).cause).toBeDefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('key deletion as KMS does it: unusable while pending, cancel leaves it Disabled, deleted with its alias when the waiting period ends', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'paylog-kms-deletion-'));
    let now = new Date('2026-12-01T00:00:00Z');
    const ep = await startLocalKms({ keyStoreDir: dir, clock: () => now });
    const c = createKmsClient({ endpoint: ep.url, region: REGION, local: true });
    try {
      const k = new PaylogKms(c);
      const arn = await k.ensureKey('paylog-period-test', 'SYMMETRIC_DEFAULT');
      const { wrappedKey: ciphertext, plaintext } = await k.generateDataKey(arn, CONTEXT);
      plaintext.fill(0);
      // The waiting period is 7 to 30 days.
      for (const days of [6, 31]) {
        expect((await rejection(c.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: days })))) as Error).toHaveProperty('name', 'ValidationException');
      }
      const scheduled = await c.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: 7 }));
      expect(scheduled.KeyState).toBe('PendingDeletion');
      expect(scheduled.DeletionDate?.toISOString()).toBe('2026-12-08T00:00:00.000Z');
      expectPaylogError(await rejection(k.decryptDataKey(ciphertext, CONTEXT, arn)), 'KMS_UNAVAILABLE', 'KMSInvalidStateException');
      // Cancelled, it is Disabled (not Enabled) until someone enables it, as in KMS.
      await c.send(new CancelKeyDeletionCommand({ KeyId: arn }));
      expect((await c.send(new DescribeKeyCommand({ KeyId: arn }))).KeyMetadata?.KeyState).toBe('Disabled');
      await c.send(new EnableKeyCommand({ KeyId: arn }));
      expect((await k.decryptDataKey(ciphertext, CONTEXT, arn)).length).toBe(32);

      await c.send(new ScheduleKeyDeletionCommand({ KeyId: arn, PendingWindowInDays: 7 }));
      now = new Date('2026-12-07T23:59:59Z'); // one second before the end: still pending
      expect((await c.send(new DescribeKeyCommand({ KeyId: 'alias/paylog-period-test' }))).KeyMetadata?.KeyState).toBe('PendingDeletion');
      now = new Date('2026-12-08T00:00:00Z');
      expect((await rejection(c.send(new DescribeKeyCommand({ KeyId: arn })))) as Error).toHaveProperty('name', 'NotFoundException');
      expect((await rejection(c.send(new DescribeKeyCommand({ KeyId: 'alias/paylog-period-test' })))) as Error).toHaveProperty('name', 'NotFoundException');
      expect((await c.send(new ListAliasesCommand({}))).Aliases?.map((a) => a.AliasName)).not.toContain('alias/paylog-period-test');
      // paylog always names the key it decrypts under: a deleted key is NotFoundException.
      const gone = (await rejection(k.decryptDataKey(ciphertext, CONTEXT, arn))) as PaylogError;
      expect((gone.cause as { name?: string }).name).toBe('NotFoundException');
      // The key material is gone from the store file too.
      expect(await readFile(join(dir, KEYSTORE_FILE_NAME), 'utf8')).not.toContain(arn.split('/').pop()!);
    } finally {
      c.destroy();
      await ep.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
