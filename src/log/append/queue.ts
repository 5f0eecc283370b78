/**
 * The append queue: bounded, group-committing.
 *
 * Contract:
 * - `append()` resolves only after the driver has committed the batch holding the entry, and
 *   rejects (PaylogError, LOG_UNAVAILABLE unless the driver said otherwise) when the entry is
 *   not known to be durable.
 * - Concurrent appends share one batch of up to `maxBatch` entries; at most `maxInFlight`
 *   batches (default 1) are in flight at a time per queue — more let the next batch's lock wait
 *   and state read overlap the previous one's COMMIT; the driver's lock serialises their
 *   transactions, and a later batch reads the state its predecessors committed. Batches start
 *   on the next turn of the event loop (or after `lingerMs`).
 * - Bounded: beyond MAX_QUEUED_ENTRIES waiting entries, `append()` rejects at once (503) rather
 *   than queue without bound; after `close()`, at once. The queue adds no wait of its own
 *   beyond `lingerMs`: every other wait is the driver's (pool connect, lock, statements),
 *   bounded by the pool's connect, lock and statement timeouts when the pool is opened with
 *   them (src/db/connection.ts `PoolTimeouts`; the service always is).
 * - One bad entry MUST NOT fail its neighbours: a failed batch is retried entry by entry, unless
 *   the driver says it may not be (outcome unknown, database unavailable).
 * - A commit listener's failure MUST NOT look like a failed (and retried) batch.
 * - It knows nothing about SQL or payments.
 */
import { PaylogError, isPaylogError } from '../../errors.js';
import type { AppendDriver, AppendOutcome, AppendRequest, BatchResult, CommitInfo } from './types.js';

const DEFAULT_MAX_BATCH = 256;
const DEFAULT_LINGER_MS = 0;
/** Entries waiting beyond this are refused at once (503) rather than queued without bound. */
const MAX_QUEUED_ENTRIES = 10_000;

export interface QueueOptions {
  maxBatch?: number;
  /** Batches in flight at once (default 1; see the module contract). */
  maxInFlight?: number;
  /** Extra wait before a batch starts, to gather more entries (0 = next tick). */
  lingerMs?: number;
  /** Called after each committed batch (metrics, checkpoint publisher). */
  onCommit?: (info: CommitInfo) => void;
}

interface Pending {
  req: AppendRequest;
  resolve: (o: AppendOutcome) => void;
  reject: (e: unknown) => void;
}

function asLogError(e: unknown): PaylogError {
  return isPaylogError(e) ? e : new PaylogError('LOG_UNAVAILABLE', 'the log could not make the entry durable', undefined, { cause: e });
}

export class AppendQueue {
  private queue: Pending[] = [];
  /** Batches in flight (and the start of the next one while it waits for its turn of the loop). */
  private readonly running = new Set<Promise<void>>();
  private starting = false;
  private closed = false;
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly lingerMs: number;

  constructor(
    private readonly driver: Pick<AppendDriver, 'commitBatch' | 'mayRetryAlone'>,
    private readonly opts: QueueOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 1);
    this.lingerMs = opts.lingerMs ?? DEFAULT_LINGER_MS;
  }

  /** Queues one entry; resolves only after the batch containing it is committed. */
  append(req: AppendRequest): Promise<AppendOutcome> {
    if (this.closed) return Promise.reject(new PaylogError('LOG_UNAVAILABLE', 'the log is shutting down'));
    if (this.queue.length >= MAX_QUEUED_ENTRIES) return Promise.reject(new PaylogError('LOG_UNAVAILABLE', 'the log is overloaded; retry later'));
    return new Promise<AppendOutcome>((resolve, reject) => {
      this.queue.push({ req, resolve, reject });
      this.startBatch();
    });
  }

  /** Refuses new entries and resolves when every queued batch has committed or failed. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private async commit(batch: Pending[], started: number): Promise<void> {
    const { outcomes, head, appended }: BatchResult = await this.driver.commitBatch(batch.map((p) => p.req));
    batch.forEach((p, i) => p.resolve(outcomes[i]!));
    try {
      this.opts.onCommit?.({ batchSize: batch.length, appended, head, durationMs: performance.now() - started });
    } catch {
      // a listener's failure must never look like a failed (and retried) batch
    }
  }

  /**
   * Starts a batch if one may start: on the next turn of the loop (or after `lingerMs`), or at
   * once (`now`) for entries that queued while the previous batch was in flight.
   */
  private startBatch(now = false): void {
    if (this.starting || this.queue.length === 0 || this.running.size >= this.maxInFlight) return;
    this.starting = true;
    // Runs from a microtask: `run` is counted in `running` before its body can start another.
    const run: Promise<void> = Promise.resolve().then(async () => {
      try {
        if (!now) await (this.lingerMs > 0 ? new Promise((r) => setTimeout(r, this.lingerMs)) : new Promise((r) => setImmediate(r)));
      } finally {
        this.starting = false;
      }
      const batch = this.queue.splice(0, this.maxBatch);
      this.startBatch(); // the next one may overlap this one (maxInFlight > 1)
      await this.commitOrRetry(batch);
    }).finally(() => {
      this.running.delete(run);
      this.startBatch(true);
    });
    this.running.add(run);
  }

  private async commitOrRetry(batch: Pending[]): Promise<void> {
    if (batch.length === 0) return;
    try {
      await this.commit(batch, performance.now());
    } catch (e) {
      if (batch.length > 1 && this.driver.mayRetryAlone(e)) {
        // One bad entry must not fail its neighbours: retry each entry in a batch of its own.
        // Not when the database itself is unavailable (lost, restarting, timed out): that
        // fails every entry alike, and one retry each would multiply the wait by the batch.
        for (const p of batch) await this.commit([p], performance.now()).catch((e1: unknown) => p.reject(asLogError(e1)));
      } else {
        for (const p of batch) p.reject(asLogError(e));
      }
    }
  }
}
