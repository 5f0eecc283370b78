/**
 * Per-transaction record keys (envelope v1): one fresh KMS data key per record, bound to the
 * record by the KMS encryption context (src/crypto/envelope.ts).
 *
 * Contracts: see src/keys/record-keys.ts. Sealing makes exactly one GenerateDataKey call and
 * opening one Decrypt call, naming the key id the record's data_keys row stores (KMS refuses a
 * blob of any other key). Owns every record whose key reference is a KMS key id. Caches nothing.
 */
import { openEnvelope, sealEnvelope, type DataKeySource, type EnvelopeBinding } from '../crypto/envelope.js';
import { PaylogError } from '../errors.js';
import type { RecordKeyRef, RecordKeyring, SealedRecord, StoredRecord } from './record-keys.js';

export class PerTransactionRecordKeys implements RecordKeyring {
  constructor(private readonly dataKeys: DataKeySource) {}

  knowsSealingKey(): boolean {
    return false;
  }

  async seal(binding: EnvelopeBinding, plaintext: Buffer): Promise<SealedRecord> {
    const { kmsKeyId, ...sealed } = await sealEnvelope(this.dataKeys, binding, plaintext);
    return { ...sealed, keyRef: { kmsKeyId } };
  }

  owns(ref: StoredRecord['keyRef']): boolean {
    return !('epochId' in ref);
  }

  async open(r: StoredRecord, binding: EnvelopeBinding): Promise<Buffer> {
    if (r.stored.kmsKeyId === null) throw new PaylogError('INTEGRITY_FAILURE', 'the data key of this record has no key reference');
    const { salt, iv, ciphertext, tag, keyCommitment, wrappedKey } = r;
    return await openEnvelope(this.dataKeys, binding, { version: 1, salt, iv, ciphertext, tag, keyCommitment, wrappedKey, kmsKeyId: r.stored.kmsKeyId });
  }

  sealingKeyRefused(_processor: string, _ref: RecordKeyRef): void {}

  keyShredded(): void {}
}
