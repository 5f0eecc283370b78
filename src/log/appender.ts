/**
 * The append path of the Merkle log, assembled: a bounded group-commit queue
 * (src/log/append/queue.ts), pure batch planning (src/log/append/plan.ts) and a PostgreSQL
 * storage driver (src/log/append/pg-driver.ts), in the shape of Tessera's append lifecycle.
 *
 * Contract:
 * - `append()` resolves only after the database transaction holding its entry has committed
 *   (synchronous_commit: durable). Concurrent appends share one transaction — a batch of up to
 *   `maxBatch` entries — and the Merkle state (nodes + tree head) advances once per batch.
 *   Batches from several service instances on one database are serialised by a
 *   transaction-scoped advisory lock (APPEND_LOCK_KEY), so indexes are dense and the tree is one
 *   tree.
 * - Idempotency: a transaction entry whose `transactionId` already exists (in the database or
 *   earlier in the same batch) is not appended; it resolves `replayed` when its request MAC
 *   matches, `conflict` otherwise.
 * - Preconditions: an entry MAY name registered checks (`requires`) that must still hold when it
 *   commits. They are read inside the batch transaction, under the append lock, in the batch's
 *   one state read, and the rows they hold on are locked FOR SHARE until the batch commits, so a
 *   concurrent change waits for the batch and the entry MUST NOT commit once that change has
 *   taken effect. A failing transaction entry resolves `refused` with the check's reason; a
 *   failing access entry is appended as its `requires.otherwise` leaf IN ITS PLACE, in the same
 *   batch, and resolves `denied` (the attempt is logged exactly once; the granted leaf never
 *   commits). The checks themselves — what they read and why — are registered by the service
 *   layer (src/services/append-preconditions.ts); this module MUST NOT know what they mean.
 * - Companion writes: an access entry MAY ask for one registered write (`companion`) made in
 *   the transaction that commits it, with its log index (src/log/append/companions.ts); its
 *   `appended` outcome then says whether the write changed a row. None is made for an entry
 *   appended as its `otherwise` leaf. The writes are registered by the service layer.
 * - An entry naming an unregistered check or companion write is rejected (INTERNAL) before it
 *   is queued.
 */
import type { AppDatabase } from '../db/connection.js';
import { PaylogError } from '../errors.js';
import { PgAppendDriver } from './append/pg-driver.js';
import type { PreconditionCheck } from './append/preconditions.js';
import type { CompanionWrite } from './append/companions.js';
import { AppendQueue, type QueueOptions } from './append/queue.js';
import type { AppendOutcome, AppendRequest, Appender } from './append/types.js';

export { APPEND_LOCK_KEY } from './append/pg-driver.js';
export type { PreconditionCheck } from './append/preconditions.js';
export type { CompanionWrite } from './append/companions.js';
export type { AppendOutcome, AppendRequest, Appender, Precondition } from './append/types.js';

export interface AppenderOptions extends QueueOptions {
  /** Key for tree-head MACs (`treeHeadKey(service key)`); without it heads are neither MAC'd nor checked. */
  headKey?: Buffer;
  /** The preconditions entries may name (src/services/append-preconditions.ts). */
  preconditions?: readonly PreconditionCheck[];
  /** The companion writes access entries may ask for (e.g. src/services/forward/ledger.ts `MARK_SENT`). */
  companions?: readonly CompanionWrite[];
}

export class LogAppender implements Appender {
  private readonly driver: PgAppendDriver;
  private readonly queue: AppendQueue;

  constructor(database: AppDatabase, opts: AppenderOptions = {}) {
    this.driver = new PgAppendDriver(database.pool, {
      ...(opts.headKey ? { headKey: opts.headKey } : {}),
      ...(opts.preconditions ? { checks: opts.preconditions } : {}),
      ...(opts.companions ? { companions: opts.companions } : {}),
    });
    this.queue = new AppendQueue(this.driver, opts);
  }

  /** Queues one entry; resolves only after the batch containing it is committed. */
  append(req: AppendRequest): Promise<AppendOutcome> {
    const named = req.kind === 'transaction' ? (req.requires ?? []) : req.kind === 'access' ? (req.requires?.checks ?? []) : [];
    const unknown = named.find((p) => !this.driver.knows(p.check));
    if (unknown) return Promise.reject(new PaylogError('INTERNAL', `append precondition ${unknown.check} is not registered`));
    const companion = req.kind === 'access' ? req.companion : undefined;
    if (companion && !this.driver.knowsWrite(companion.write, companion.args.length)) {
      return Promise.reject(new PaylogError('INTERNAL', `companion write ${companion.write} with ${companion.args.length} arguments is not registered`));
    }
    return this.queue.append(req);
  }

  /** Refuses new entries and resolves when every queued batch has committed or failed. */
  async close(): Promise<void> {
    await this.queue.close();
  }
}
