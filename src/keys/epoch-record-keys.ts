/**
 * Epoch record keys (envelope v2): a fresh data key per record, wrapped locally with HPKE to the
 * processor's current epoch PUBLIC key (no KMS call to seal); opened with the epoch private key,
 * which src/kms/epoch-keys.ts unwraps by KMS and caches (src/keys/material-cache.ts); a
 * window-form data key with its window's HPKE receiver context, derived from that key once per
 * window and cached beside it (`EpochKeyring.withWindowContext`).
 *
 * Data keys are wrapped through key-wrap windows (src/crypto/envelope-v2.ts `KeyWrapWindowV2`):
 * one HPKE encapsulation per epoch serves the records sealed in the next `windowMs` (at most
 * `windowRecords` of them) instead of one X25519 key generation and agreement per record.
 *
 * Contracts: see src/keys/record-keys.ts. Also:
 * - Seals only to an epoch `EpochKeyring.currentEpoch` or `knownCurrent` returns; a record
 *   sealed to the `knownCurrent` hint MUST be appended with its epoch as a commit-time
 *   precondition (the caller's append does), and on refusal `sealingKeyRefused` drops the hint.
 * - A window serves one epoch (id AND public key) of one processor, in this process only; it is
 *   destroyed (its HPKE key zeroed) when its time or record budget is spent, even with no
 *   further traffic, and at once when its epoch is refused, forgotten or shredded. So the only
 *   decryption capability the submit path holds is, for at most `windowMs`, the key of data
 *   keys it wrapped itself for records it received in plaintext.
 * - Opens only when the leaf is envelope v2 and names the same epoch as the data_keys row
 *   (INTEGRITY_FAILURE otherwise). Owns every record whose key reference is an epoch.
 */
import { createHash } from 'node:crypto';
import { KeyWrapWindowV2, keyWrapWindowOf, openEnvelopeV2, sealEnvelopeV2, ENVELOPE_V2 } from '../crypto/envelope-v2.js';
import type { X25519PublicKey } from '../crypto/hpke.js';
import type { EnvelopeBinding } from '../crypto/envelope.js';
import { PaylogError } from '../errors.js';
import type { EpochKeyring } from '../kms/epoch-keys.js';
import type { RecordKeyRef, RecordKeyring, SealContext, SealedRecord, StoredRecord } from './record-keys.js';

/** Longest life of a key-wrap window (ms, from its first record). */
const KEY_WRAP_WINDOW_MS = 200;
/** Most records one key-wrap window wraps. */
const KEY_WRAP_WINDOW_RECORDS = 1000;

interface OpenWindow {
  window: KeyWrapWindowV2;
  /** SHA-256 of the window's epoch public key (the leaf's `epochPublicKeySha256`). */
  publicKeySha256: Buffer;
  timer: NodeJS.Timeout;
}

export class EpochRecordKeys implements RecordKeyring {
  /** epochId → the live key-wrap window of that epoch. */
  private readonly windows = new Map<string, OpenWindow>();
  private readonly windowMs: number;
  private readonly windowRecords: number;

  constructor(
    private readonly epochs: EpochKeyring,
    o: { windowMs?: number; windowRecords?: number } = {},
  ) {
    this.windowMs = o.windowMs ?? KEY_WRAP_WINDOW_MS;
    this.windowRecords = o.windowRecords ?? KEY_WRAP_WINDOW_RECORDS;
  }

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
    const w = this.windowFor(binding.processor, epoch.epochId, epoch.publicKey);
    const { epochId, ...sealed } = sealEnvelopeV2(w.window, { ...binding, epochId: epoch.epochId }, plaintext);
    if (w.window.wrapped >= this.windowRecords) this.closeWindow(epochId);
    return { ...sealed, keyRef: { epochId }, epochPublicKeySha256: w.publicKeySha256, windowEnc: w.window.enc };
  }

  /** The live window of `epochId` for this public key and processor, or a new one. */
  private windowFor(processor: string, epochId: string, publicKey: X25519PublicKey): OpenWindow {
    const open = this.windows.get(epochId);
    if (open && !open.window.isDestroyed && open.window.processor === processor && open.window.publicKey.raw.equals(publicKey.raw)) return open;
    if (open) this.closeWindow(epochId);
    const window = new KeyWrapWindowV2(publicKey, processor, epochId, this.windowRecords);
    const timer = setTimeout(() => this.closeWindow(epochId, window), this.windowMs);
    timer.unref();
    const w: OpenWindow = { window, publicKeySha256: createHash('sha256').update(publicKey.raw).digest(), timer };
    this.windows.set(epochId, w);
    return w;
  }

  /** Destroys the window of `epochId` (only `which`, when given: a timer of an older window). */
  private closeWindow(epochId: string, which?: KeyWrapWindowV2): void {
    const open = this.windows.get(epochId);
    if (which) which.destroy();
    if (!open || (which && open.window !== which)) return;
    clearTimeout(open.timer);
    open.window.destroy();
    this.windows.delete(epochId);
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
    const env = { version: 2, salt, iv, ciphertext, tag, keyCommitment, wrappedKey, epochId } as const;
    // A window-form data key opens with its window's cached receiver context (one X25519 per window).
    const window = keyWrapWindowOf(b, wrappedKey);
    if (window) return await this.epochs.withWindowContext(epochId, window.id, window.setup, (ctx) => openEnvelopeV2(ctx, b, env));
    return await this.epochs.withPrivateKey(epochId, (sk) => openEnvelopeV2(sk, b, env));
  }

  sealingKeyRefused(processor: string, ref: RecordKeyRef, forgetKey: boolean): void {
    this.epochs.forgetCurrent(processor);
    if (ref.epochId !== undefined) this.closeWindow(ref.epochId);
    if (forgetKey && ref.epochId !== undefined) this.epochs.forget(ref.epochId);
  }

  keyShredded(ref: StoredRecord['keyRef']): void {
    if (!('epochId' in ref)) return;
    this.closeWindow(ref.epochId);
    this.epochs.forget(ref.epochId);
  }
}
