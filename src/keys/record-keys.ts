/**
 * Record keys: the one interface that seals and opens a transaction record (the ESDK's keyring
 * and materials-manager layer for paylog). Services call {@link RecordKeyring}; they never
 * choose an envelope version, a KMS call or an epoch key themselves.
 *
 * Implementations (one file each):
 * - per-transaction, envelope v1 (src/keys/per-transaction-keys.ts): a fresh KMS data key per
 *   record (GenerateDataKey to seal, Decrypt to open);
 * - epoch, envelope v2 (src/keys/epoch-record-keys.ts): the data key wrapped locally with HPKE
 *   to the processor's current epoch public key; opened with the epoch private key (cached,
 *   src/keys/material-cache.ts);
 * - {@link MultiRecordKeyring}: seals with one keyring and opens with whichever of its keyrings
 *   owns the record's key reference (a hierarchical deployment still opens its v1 records).
 *
 * Contracts (every implementation):
 * - `seal` MUST zero every data key it made before it resolves; it never zeroes the caller's
 *   plaintext. The sealed bytes are exactly those of src/crypto/envelope.ts (v1) or
 *   src/crypto/envelope-v2.ts (v2).
 * - `open` resolves with a FRESH plaintext Buffer the CALLER owns and MUST zero; it rejects with
 *   INTEGRITY_FAILURE when the record, its binding or its key reference do not authenticate,
 *   DATA_SHREDDED when its key is gone, KMS_UNAVAILABLE when the key service cannot answer.
 * - A key reference the keyring does not own is refused (INTEGRITY_FAILURE), never guessed.
 * - Nothing here reads or writes the log or knows HTTP.
 */
import { PaylogError } from '../errors.js';
import type { EnvelopeBinding, SealedFields } from '../crypto/envelope.js';

/** The key a record is sealed under, as its leaf and its data_keys row name it. */
export type RecordKeyRef = { kmsKeyId: string; epochId?: undefined } | { epochId: string; kmsKeyId?: undefined };

/** A sealed record: the envelope fields, its format version and the key reference to store. */
export interface SealedRecord extends SealedFields {
  version: number;
  keyRef: RecordKeyRef;
  /** Epoch records: SHA-256 of the epoch public key sealed to (leaf field, v3). */
  epochPublicKeySha256?: Buffer;
  /**
   * Records wrapped through a key-wrap window: the window's HPKE `enc`, the first bytes of
   * `wrappedKey` and the same for every record of the window (stored once per window,
   * `key_wrap_windows`; the record's row keeps the rest). Public: it opens nothing without the
   * epoch private key.
   */
  windowEnc?: Buffer;
}

/** What the caller knows of the current sealing key before it seals (from its pre-check). */
export interface SealContext {
  now: Date;
  /**
   * The database's answer for the current sealing key of the binding's processor, read in the
   * caller's pre-check (null = none yet); undefined when the caller did not read it.
   */
  currentKeyId?: string | null;
}

/**
 * A stored record as the caller reads it: the sealed fields from its leaf, `wrappedKey` from its
 * data_keys row (present: the caller refuses a shredded row first).
 */
export interface StoredRecord extends SealedFields {
  /** Envelope version, from the leaf. */
  version: number;
  /** The key reference the leaf names. */
  keyRef: { kmsKeyId: string } | { epochId: string };
  /** The key reference the data_keys row names; MUST agree with the leaf's where both exist. */
  stored: { kmsKeyId: string | null; epochId: string | null };
}

export interface RecordKeyring {
  /**
   * True when this keyring can seal for `processor` at `now` without the caller reading key
   * state first (an epoch it already knows; the append's commit-time precondition decides).
   */
  knowsSealingKey(processor: string, now: Date): boolean;
  /** Seals `plaintext` bound to `binding` (see module contract). */
  seal(binding: EnvelopeBinding, plaintext: Buffer, at: SealContext): Promise<SealedRecord>;
  /** Whether this keyring owns records under `ref`. */
  owns(ref: StoredRecord['keyRef']): boolean;
  /** Opens a stored record sealed for `binding`; the caller zeroes the result. */
  open(record: StoredRecord, binding: EnvelopeBinding): Promise<Buffer>;
  /**
   * The append refused a record sealed under `ref` for `processor` (the key changed or the
   * processor left): forget what the keyring believed current; with `forgetKey`, also forget
   * everything cached of that key.
   */
  sealingKeyRefused(processor: string, ref: RecordKeyRef, forgetKey: boolean): void;
  /** The key of `ref` has been shredded (seen at commit): forget everything cached of it. */
  keyShredded(ref: StoredRecord['keyRef']): void;
}

const unownedKey = () => new PaylogError('INTEGRITY_FAILURE', 'the key reference of this record names no key paylog opens');

/**
 * Seals with `sealer`; opens with the first of `sealer, ...openers` that owns the record's key.
 */
export class MultiRecordKeyring implements RecordKeyring {
  private readonly all: RecordKeyring[];

  constructor(
    private readonly sealer: RecordKeyring,
    openers: RecordKeyring[] = [],
  ) {
    this.all = [sealer, ...openers];
  }

  knowsSealingKey(processor: string, now: Date): boolean {
    return this.sealer.knowsSealingKey(processor, now);
  }

  seal(binding: EnvelopeBinding, plaintext: Buffer, at: SealContext): Promise<SealedRecord> {
    return this.sealer.seal(binding, plaintext, at);
  }

  owns(ref: StoredRecord['keyRef']): boolean {
    return this.all.some((k) => k.owns(ref));
  }

  async open(record: StoredRecord, binding: EnvelopeBinding): Promise<Buffer> {
    const k = this.all.find((x) => x.owns(record.keyRef));
    if (!k) throw unownedKey();
    return await k.open(record, binding);
  }

  sealingKeyRefused(processor: string, ref: RecordKeyRef, forgetKey: boolean): void {
    this.sealer.sealingKeyRefused(processor, ref, forgetKey);
  }

  keyShredded(ref: StoredRecord['keyRef']): void {
    for (const k of this.all) if (k.owns(ref)) k.keyShredded(ref);
  }
}

