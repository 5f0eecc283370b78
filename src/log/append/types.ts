/**
 * The append path's vocabulary: what a caller asks for (AppendRequest), what it is told
 * (AppendOutcome), and the generic preconditions an entry MAY carry.
 *
 * Contract:
 * - This module is declarations only. It MUST NOT import a payment-domain module: a
 *   precondition is DATA — the id of a check registered at construction (src/log/append/
 *   preconditions.ts `PreconditionCheck`) and the key it is checked for. What a check means
 *   (a processor is active, a certificate is not revoked, key material is not shredded) lives
 *   with whoever registers it (src/services/append-preconditions.ts).
 * - The lookup rows written beside a leaf (`transaction`, `dataKey`, `access`) are opaque
 *   columns to the log: stored as given, never put in a leaf by the log.
 */
import type { TreeHead } from '../store.js';

export type { TreeHead } from '../store.js';

/**
 * One precondition of an entry: the check registered under `check` MUST hold for `key` when the
 * entry commits (read under the append lock, in the batch's state read).
 */
export interface Precondition {
  check: string;
  key: string;
}

/**
 * What a batch writes beside each leaf: only lookup rows (the record itself is the leaf, leaf
 * format v2). `transaction`: id → index and the idempotency MAC; `access`: transaction → index.
 */
export type AppendRequest =
  | {
      kind: 'transaction';
      leaf: Buffer;
      /** Stored (`transactions.created_at`) only for a record whose data key a KMS key wraps (retention selects those by it, migration 0024); others take their time from the leaf. */
      createdAt: Date;
      /**
       * Lookup columns of the `transactions` row. `processor` and `fingerprint` are opaque to
       * the log (stored as given, never in a leaf): they let a read authorize before decoding
       * the leaf, and keep the fingerprint out of the log (issue 17); `fingerprint` is stored as
       * bytes in `transactions.fingerprint_v2` (migration 0019).
       */
      transaction: { transactionId: string; requestMac: Buffer; processor?: string; fingerprint?: Buffer };
      /** The `data_keys` row (opaque to the log; keyed by the entry's log index): exactly one of `kmsKeyId` / `epochId`. */
      dataKey: {
        wrappedKey?: Buffer | null;
        kmsKeyId?: string | null;
        epochId?: string | null;
        /** The `key_wrap_windows` row the wrapped key continues (inserted once per window). */
        window?: { id: string; enc: Buffer };
      };
      /**
       * What must still hold when the entry commits; the first that fails refuses it (checks
       * registered as `beforeReplay` are decided before idempotency, the rest after).
       */
      requires?: Precondition[];
    }
  | {
      kind: 'access';
      leaf: Buffer;
      createdAt: Date;
      access: { transactionId: string };
      /**
       * What must still hold when a (granted) access entry commits, and the leaf appended IN ITS
       * PLACE when one fails (`otherwise`: the denied access entry of the same attempt, or a
       * function making it, called only then, at most once per batch that plans the entry; it MUST
       * NOT be the granted leaf).
       */
      requires?: { checks: Precondition[]; otherwise: Buffer | (() => Buffer) };
      /**
       * A companion write (registered by id, src/log/append/companions.ts) made in the
       * transaction that commits THIS leaf, with its log index and `args`; not made when the
       * `otherwise` leaf is appended instead. The outcome's `companion` says whether it changed
       * a row.
       */
      companion?: { write: string; args: string[] };
    }
  | { kind: 'key_event'; leaf: Buffer; createdAt: Date; transactionId?: string }
  | { kind: 'admin_event'; leaf: Buffer; createdAt: Date };

export type TransactionRequest = Extract<AppendRequest, { kind: 'transaction' }>;
export type AccessRequest = Extract<AppendRequest, { kind: 'access' }>;

/**
 * `reason` is the failed check's registered reason (a transaction entry: refused; an access
 * entry: its `otherwise` leaf appended instead, denied).
 */
export type AppendOutcome =
  /** `companion`: for an entry that asked for a companion write, whether it changed a row. */
  | { status: 'appended'; logIndex: number; leafHash: Buffer; createdAt: Date; treeSize: number; companion?: boolean }
  | { status: 'replayed'; logIndex: number; leafHash: Buffer }
  | { status: 'conflict'; logIndex: number }
  | { status: 'refused'; reason: string }
  /** A precondition of an access entry failed: its `requires.otherwise` leaf was appended instead. */
  | { status: 'denied'; reason: string; logIndex: number; leafHash: Buffer; createdAt: Date; treeSize: number };

/** What an appender reports after each committed batch. */
export interface CommitInfo {
  batchSize: number;
  appended: number;
  head: TreeHead;
  durationMs: number;
}

/**
 * The append path as services see it (implemented by LogAppender). `append` MUST resolve only
 * after the batch holding the entry has committed, and MUST reject (PaylogError) when the entry
 * is not known to be durable. `close` refuses new entries and resolves once every queued one
 * has committed or failed.
 */
export interface Appender {
  append(req: AppendRequest): Promise<AppendOutcome>;
  close(): Promise<void>;
}

/** What one committed batch produced. */
export interface BatchResult {
  outcomes: AppendOutcome[];
  head: TreeHead;
  appended: number;
}

/** The storage side of the append path as the queue sees it. */
export interface AppendDriver {
  /** Commits one batch (src/log/append/pg-driver.ts: one database transaction). */
  commitBatch(reqs: AppendRequest[]): Promise<BatchResult>;
  /**
   * Whether a failed batch may be retried entry by entry (one bad entry must not fail its
   * neighbours). MUST be false when the outcome is unknown or the database itself is
   * unavailable (one retry each would multiply the wait by the batch).
   */
  mayRetryAlone(e: unknown): boolean;
  /** Whether an entry only names registered checks (an entry naming another is rejected). */
  knows(check: string): boolean;
  /** Whether a companion write is registered with `args` arguments (an entry naming another is rejected). */
  knowsWrite(write: string, args: number): boolean;
}
