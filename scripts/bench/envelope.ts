/**
 * Section "envelope": per-record encryption cost.
 *
 * - paylog `encryptWithDataKey` (format v1: 2× HKDF-SHA256 + AES-256-GCM, data key given) versus
 *   the AWS Encryption SDK (`@aws-crypto/client-node`) `encrypt` with a `RawAesKeyringNode`,
 *   committing suite WITHOUT signing (ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
 *   REQUIRE_ENCRYPT_REQUIRE_DECRYPT), on the same plaintext (canonical JSON of a card payment
 *   method, public test PAN) and the same encryption context (paylog's KMS context for the
 *   record). Rounds alternate between the two so noise hits both alike.
 * - For information: the full `sealEnvelope` (GenerateDataKey over HTTP to the local KMS
 *   endpoint, started in this process, through the real AWS SDK client), sequentially and with
 *   several calls in flight.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { canonicalJsonBytes } from '../../src/crypto/canonical-json.js';
import {
  decryptWithDataKey,
  encryptWithDataKey,
  kmsEncryptionContext,
  sealEnvelope,
  type DataKeySource,
  type EnvelopeBinding,
} from '../../src/crypto/envelope.js';
import { startLocalKms } from '../../src/kms/local/server.js';
import { createKmsClient, PaylogKms } from '../../src/kms/client.js';
import { median, ratio, timedRounds, type BenchContext, type BenchSection, type SectionResult } from './core.js';
import { BENCH_TEST_PAN } from './throughput.js';

export const ENVELOPE_PROFILES = {
  quick: { rounds: 3, roundMs: 250, warmupMs: 200, sealRounds: 2, sealRoundMs: 500 },
  full: { rounds: 7, roundMs: 500, warmupMs: 500, sealRounds: 3, sealRoundMs: 1000 },
} as const;
/** Calls in flight for the concurrent sealEnvelope figure. */
export const SEAL_CONCURRENCY = 16;

/** The record both libraries encrypt: canonical JSON of a card payment method (~150 bytes). */
export function benchRecord(): Buffer {
  return canonicalJsonBytes({
    type: 'card',
    pan: BENCH_TEST_PAN,
    expiryMonth: 12,
    expiryYear: new Date().getUTCFullYear() + 3,
    holderName: 'Maria-Josefina Alejandra Quintanilla-Worthington Jr.',
  });
}

export const BENCH_BINDING: EnvelopeBinding = { transactionId: 'ord-2026-000123', processor: 'acme' };

/** ops/s with `inFlight` concurrent loops of `op` for `ms`. */
async function concurrentRate(op: () => Promise<unknown>, inFlight: number, ms: number): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  const deadline = t0 + ms;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (performance.now() < deadline) {
        await op();
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

async function runEnvelope(ctx: BenchContext): Promise<SectionResult> {
  const p = ENVELOPE_PROFILES[ctx.profile];
  const record = benchRecord();
  const context = kmsEncryptionContext(BENCH_BINDING);
  const contextBytes = Buffer.byteLength(JSON.stringify(context));

  // paylog: local data key, no KMS.
  const dataKey = randomBytes(32);
  const paylogOp = () => encryptWithDataKey(dataKey, BENCH_BINDING, record);
  const check = decryptWithDataKey(dataKey, BENCH_BINDING, paylogOp());
  if (!check.equals(record)) throw new Error('paylog envelope round trip failed');

  // AWS Encryption SDK: raw AES keyring, committing suite without signing.
  const { encrypt, decrypt } = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const keyring = new RawAesKeyringNode({
    keyNamespace: 'paylog-bench',
    keyName: 'raw-aes-256',
    unencryptedMasterKey: randomBytes(32),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
  const esdkOptions = {
    encryptionContext: context,
    suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
    plaintextLength: record.length,
  };
  const esdkOp = () => encrypt(keyring, record, esdkOptions);
  const sample = await esdkOp();
  const back = await decrypt(keyring, sample.result);
  if (!Buffer.from(back.plaintext).equals(record)) throw new Error('ESDK round trip failed');
  const sealedPaylog = paylogOp();
  const paylogBytes = sealedPaylog.salt.length + sealedPaylog.iv.length + sealedPaylog.ciphertext.length + sealedPaylog.tag.length + sealedPaylog.keyCommitment.length + 1;

  ctx.progress(`envelope: ${p.rounds} alternating rounds × ${p.roundMs} ms (paylog vs AWS Encryption SDK)`);
  await timedRounds(paylogOp, { rounds: 1, roundMs: p.warmupMs, batch: 50 });
  await timedRounds(esdkOp, { rounds: 1, roundMs: p.warmupMs, batch: 5 });
  const paylogRates: number[] = [];
  const esdkRates: number[] = [];
  for (let r = 0; r < p.rounds; r++) {
    paylogRates.push(...(await timedRounds(paylogOp, { rounds: 1, roundMs: p.roundMs, batch: 50 })));
    esdkRates.push(...(await timedRounds(esdkOp, { rounds: 1, roundMs: p.roundMs, batch: 5 })));
  }
  const paylogOps = median(paylogRates);
  const esdkOps = median(esdkRates);

  // Full sealEnvelope through the local KMS endpoint (HTTP + SigV4 + the real SDK client).
  ctx.progress('sealEnvelope via local KMS (GenerateDataKey over HTTP)');
  const kmsDir = mkdtempSync(join(tmpdir(), 'paylog-bench-kms-'));
  const local = await startLocalKms({ keyStoreDir: kmsDir });
  const kmsClient = createKmsClient({ endpoint: local.url, region: 'us-east-1', local: true });
  let sealSeq: number[];
  let sealConc: number[];
  try {
    const kms = new PaylogKms(kmsClient);
    const keyId = await kms.ensureKey('paylog-bench-data', 'SYMMETRIC_DEFAULT');
    const keys: DataKeySource = {
      generateDataKey: (c) => kms.generateDataKey(keyId, c),
      decryptDataKey: (w, c, k) => kms.decryptDataKey(w, c, k),
    };
    const sealOp = () => sealEnvelope(keys, BENCH_BINDING, record);
    await timedRounds(sealOp, { rounds: 1, roundMs: p.warmupMs });
    sealSeq = await timedRounds(sealOp, { rounds: p.sealRounds, roundMs: p.sealRoundMs });
    sealConc = [];
    for (let r = 0; r < p.sealRounds; r++) sealConc.push(await concurrentRate(sealOp, SEAL_CONCURRENCY, p.sealRoundMs));
  } finally {
    kmsClient.destroy();
    await local.close();
    rmSync(kmsDir, { recursive: true, force: true });
  }
  const sealSeqOps = median(sealSeq);
  const sealConcOps = median(sealConc);
  const speedup = ratio(paylogOps, esdkOps);

  return {
    table: [
      ['operation', 'ops/s', 'µs/op', 'output bytes', 'rounds (ops/s)'],
      ['paylog encryptWithDataKey (local data key)', paylogOps, 1e6 / paylogOps, paylogBytes, paylogRates.map(Math.round).join(', ')],
      ['ESDK encrypt, RawAesKeyring, COMMIT_KEY (no signing)', esdkOps, 1e6 / esdkOps, sample.result.length, esdkRates.map(Math.round).join(', ')],
      ['paylog sealEnvelope, local KMS, sequential', sealSeqOps, 1e6 / sealSeqOps, null, sealSeq.map(Math.round).join(', ')],
      [`paylog sealEnvelope, local KMS, ${SEAL_CONCURRENCY} in flight`, sealConcOps, null, null, sealConc.map(Math.round).join(', ')],
    ],
    figures: {
      paylog_ops_per_s: paylogOps,
      esdk_ops_per_s: esdkOps,
      paylog_vs_esdk: speedup,
      seal_local_kms_ops_per_s: sealSeqOps,
      seal_local_kms_concurrent_ops_per_s: sealConcOps,
    },
    notes: [
      `record: ${record.length} bytes of canonical JSON (public test PAN); encryption context: ${contextBytes} bytes (paylog's KMS context for the record, used by both)`,
      'ESDK per message also generates + wraps a fresh data key and serialises/authenticates a header; paylog gets its data key from KMS (see the sealEnvelope rows)',
      'sealEnvelope rows: the local KMS endpoint runs in this benchmark process (shares its event loop); real AWS KMS adds network latency',
    ],
    details: { paylogRates, esdkRates, sealSeq, sealConc },
  };
}

export const envelopeSection: BenchSection = {
  id: 'envelope',
  title: '3. Envelope encryption — paylog vs AWS Encryption SDK (same record, same context)',
  needs: 'none',
  run: runEnvelope,
};
