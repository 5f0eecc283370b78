/**
 * Epoch record keys (envelope v2): a fresh data key per record, wrapped locally with HPKE to the
 * processor's current epoch PUBLIC key (no KMS call to seal); opened with the epoch private key,
 * which src/kms/epoch-keys.ts unwraps by KMS and caches (src/keys/material-cache.ts).
 *
 * Contracts: see src/keys/record-keys.ts. Also:
 * - Seals only to an epoch `EpochKeyring.currentEpoch` or `knownCurrent` returns; a record
 *   sealed to the `knownCurrent` hint MUST be appended with its epoch as a commit-time
 *   precondition (the caller's append does), and on refusal `sealingKeyRefused` drops the hint.
 * - Opens only when the leaf is envelope v2 and names the same epoch as the data_keys row
 *   (INTEGRITY_FAILURE otherwise). Owns every record whose key reference is an epoch.
 */
import { createHash } from 'node:crypto';
import { openEnvelopeV2, sealEnvelopeV2, ENVELOPE_V2 } from '../crypto/envelope-v2.js';
import type { EnvelopeBinding } from '../crypto/envelope.js';
import { PaylogError } from '../errors.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import type { RecordKeyRef, RecordKeyring, SealContext, SealedRecord, StoredRecord } from './record-keys.js';

export class EpochRecordKeys implements RecordKeyring {
  constructor(private readonly epochs: EpochKeyring) {}

  knowsSealingKey(processor: string, now: Date): boolean {
    return this.epochs.knownCurrent(processor, now) !== null;
  }

  /** The epoch to seal to: the pre-check's answer if the caller read one, else the hint, else the database's. */
  private async sealingEpoch(processor: string, at: SealContext) {
    if (at.currentKeyId !== undefined) return await this.epochs.currentEpoch(processor, at.now, at.currentKeyId);
    return this.epochs.knownCurrent(processor, at.now) ?? (await this.epochs.currentEpoch(processor, at.now));
  }

  async seal(binding: EnvelopeBinding, plaintext: Buffer, at: SealContext): Promise<SealedRecord> {
    const epoch = await this.sealingEpoch(binding.processor, at);
    const { epochId, ...sealed } = sealEnvelopeV2(epoch.publicKey, { ...binding, epochId: epoch.epochId }, plaintext);
    return { ...sealed, keyRef: { epochId }, epochPublicKeySha256: createHash('sha256').update(epoch.publicKey.raw).digest() };
  }

  owns(ref: StoredRecord['keyRef']): boolean {
    return 'epochId' in ref;
  }

  async open(r: StoredRecord, binding: EnvelopeBinding): Promise<Buffer> {
    if (!('epochId' in r.keyRef)) throw new PaylogError('INTEGRITY_FAILURE', 'not an epoch record');
    const epochId = r.keyRef.epochId;
    if (r.version !== ENVELOPE_V2 || r.stored.epochId !== epochId) throw new PaylogError('INTEGRITY_FAILURE', 'the key reference of this record does not match its leaf');
    const b = { ...binding, epochId };
    const { salt, iv, ciphertext, tag, keyCommitment, wrappedKey } = r;
    return await this.epochs.withPrivateKey(epochId, (sk) => openEnvelopeV2(sk, b, { version: 2, salt, iv, ciphertext, tag, keyCommitment, wrappedKey, epochId }));
  }

  sealingKeyRefused(processor: string, ref: RecordKeyRef, forgetKey: boolean): void {
    this.epochs.forgetCurrent(processor);
    if (forgetKey && ref.epochId !== undefined) this.epochs.forget(ref.epochId);
  }

  keyShredded(ref: StoredRecord['keyRef']): void {
    if ('epochId' in ref) this.epochs.forget(ref.epochId);
  }
}
