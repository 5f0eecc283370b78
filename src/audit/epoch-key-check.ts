/**
 * verify-log's epoch-key check (issue 17 item 3), from the log's own leaves as the verifier
 * streams them: every leaf format v3 transaction sealed to a key epoch names the SHA-256 of the
 * epoch public key it was sealed to (`env.epk`); the log MUST hold, at a smaller index, an
 * `epoch_created` key event for that epoch whose `publicKeySha256` equals it.
 *
 * - no `epoch_created` leaf for the epoch earlier in the log → `EPOCH_NOT_CREATED` (by index);
 * - creation leaf(s) with a key, none equal to `env.epk` (and none without a key) →
 *   `EPOCH_KEY_MISMATCH` (by index);
 * - creation leaf without a key (written before leaf format v3, or by a service that did not
 *   yet record it) → the epoch is reported as a legacy epoch, not failed;
 * - transaction leaves without `env.epk` (formats v1/v2 sealed to an epoch) cannot be checked:
 *   counted as legacy transactions, not failed.
 *
 * An epoch may have more than one creation leaf (a creation whose row insert failed is retried
 * under the same id); a transaction matches any of them. Memory: one entry per epoch.
 */
import type { Leaf } from '../log/leaf.js';

/** At most this many legacy epoch ids are listed (all are counted). */
const MAX_LISTED_LEGACY_EPOCHS = 1000;

export interface EpochKeyReport {
  /** Epochs with an `epoch_created` leaf in the log. */
  epochsCreated: number;
  /** Transaction leaves whose `env.epk` matched their epoch's creation leaf. */
  transactionsChecked: number;
  /**
   * Epochs whose creation leaf carries no public key (created before leaf format v3) and which a
   * transaction names: sealing to them cannot be checked from the log. Count and (up to
   * {@link MAX_LISTED_LEGACY_EPOCHS}) ids.
   */
  legacyEpochs: { count: number; ids: string[] };
  /** Transactions sealed to an epoch that cannot be checked (no `env.epk`, or a legacy epoch). */
  legacyTransactions: number;
}

interface EpochKeyFailure {
  code: 'EPOCH_NOT_CREATED' | 'EPOCH_KEY_MISMATCH';
  index: number;
  message: string;
}

interface Created {
  /** SHA-256 digests (copies) from creation leaves that carry one; usually one. */
  keys: Buffer[];
  /** A creation leaf without a key was seen. */
  keyless: boolean;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;
/** `a` equals `b[at, at + len)`. */
function sameBytesAt(a: Uint8Array, b: Uint8Array, at: number, len: number): boolean {
  if (a.length !== len) return false;
  for (let k = 0; k < len; k++) if (a[k] !== b[at + k]) return false;
  return true;
}

export class EpochKeyLedger {
  private readonly created = new Map<string, Created>();
  private readonly legacy = new Set<string>();
  private legacyCount = 0;
  private checked = 0;
  private legacyTransactions = 0;

  /** Feeds one decoded leaf (in index order); returns a failure for this entry, if any. */
  observe(index: number, leaf: Leaf): EpochKeyFailure | null {
    if (leaf.type === 'key_event' && leaf.v !== 1 && leaf.event === 'epoch_created' && leaf.epoch !== undefined) {
      let c = this.created.get(leaf.epoch);
      if (!c) this.created.set(leaf.epoch, (c = { keys: [], keyless: false }));
      const pk = leaf.publicKeySha256;
      if (pk !== undefined && !c.keys.some((k) => sameBytes(k, pk))) c.keys.push(Buffer.from(pk));
      else c.keyless = true;
      return null;
    }
    if (leaf.type !== 'transaction') return null;
    if (leaf.v === 1) {
      if (leaf.envelope.epochId !== undefined) this.legacyTransactions++;
      return null;
    }
    const ep = leaf.env.ep;
    if (ep === undefined) return null; // envelope v1: a KMS key reference, no epoch
    const epk = 'epk' in leaf.env ? leaf.env.epk : undefined;
    return epk === undefined ? this.observeSealed(index, ep, undefined, 0) : this.observeSealed(index, ep, epk, 0, epk.length);
  }

  /**
   * A v2/v3 transaction sealed to epoch `ep` ({@link observe}'s rule, for the auditor's hot path
   * too): `env.epk` is `keyIn[keyAt, keyAt + keyLen)`, or absent (`keyIn` undefined).
   */
  observeSealed(index: number, ep: string, keyIn: Uint8Array | undefined, keyAt: number, keyLen = 32): EpochKeyFailure | null {
    if (keyIn === undefined) {
      this.legacyTransactions++;
      return null;
    }
    const c = this.created.get(ep);
    if (!c) return { code: 'EPOCH_NOT_CREATED', index, message: `entry ${index}: transaction sealed to epoch ${ep}, which no earlier epoch_created entry creates` };
    let named = false;
    for (const k of c.keys) if (sameBytesAt(k, keyIn, keyAt, keyLen)) named = true;
    if (named) {
      this.checked++;
      return null;
    }
    if (c.keyless) {
      this.noteLegacyEpoch(ep);
      this.legacyTransactions++;
      return null;
    }
    return { code: 'EPOCH_KEY_MISMATCH', index, message: `entry ${index}: transaction sealed to a public key that epoch ${ep}'s epoch_created entry does not name` };
  }

  private noteLegacyEpoch(ep: string): void {
    if (this.legacy.has(ep)) return;
    this.legacyCount++;
    if (this.legacy.size < MAX_LISTED_LEGACY_EPOCHS) this.legacy.add(ep);
  }

  report(): EpochKeyReport {
    return {
      epochsCreated: this.created.size,
      transactionsChecked: this.checked,
      legacyEpochs: { count: this.legacyCount, ids: [...this.legacy] },
      legacyTransactions: this.legacyTransactions,
    };
  }
}

/** Human-readable lines of an epoch-key report (verify-log's summary). */
export function formatEpochKeyReport(r: EpochKeyReport): string[] {
  const lines = [`  epoch keys: ${r.transactionsChecked} transaction(s) sealed to the key their epoch's creation entry names (${r.epochsCreated} epoch(s) created)`];
  if (r.legacyEpochs.count > 0 || r.legacyTransactions > 0) {
    lines.push(`    not checkable (written before leaf format v3): ${r.legacyTransactions} transaction(s); ${r.legacyEpochs.count} epoch(s) whose creation entry names no key`);
    if (r.legacyEpochs.ids.length > 0) lines.push(`    legacy epochs: ${r.legacyEpochs.ids.join(', ')}${r.legacyEpochs.count > r.legacyEpochs.ids.length ? ', ...' : ''}`);
  }
  return lines;
}
