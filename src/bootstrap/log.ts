/**
 * Start-up step "appender": the one append path of this process (batches committed under the
 * database's advisory lock), with its metrics and what each committed batch triggers; and, for
 * `npm run restore-log`, re-appending the lost tail from an auditor export.
 *
 * Contract: a committed batch schedules a checkpoint in the singleton process only (other
 * workers tell it through `onBatchCommitted`). A restore MUST NOT start anywhere but in the
 * signing process, and start-up fails if the export does not prove to be the signed history.
 * The singleton compacts full Merkle tiles after each signed checkpoint (src/log/tiles/compact.ts).
 */
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import type { AppDatabase } from '../db/connection.js';
import { LogAppender, type Appender } from '../log/appender.js';
import type { CommitInfo } from '../log/append/types.js';
import { readTreeHead } from '../log/store.js';
import { APPEND_PRECONDITIONS } from '../services/append-preconditions.js';
import { MARK_SENT } from '../services/forward/ledger.js';
import type { CheckpointPublisher } from '../log/checkpoint-publisher.js';
import { restoreLostTail, type RestoreReport } from '../log/restore.js';
import type { CheckpointSigning } from './checkpoint-signer.js';
import { TileCompactor } from '../log/tiles/compact.js';
import type { Cleanups } from './cleanups.js';

export interface AppenderOptions {
  singletons: boolean;
  headKey: Buffer;
  onBatchCommitted?: () => void;
  /**
   * Cluster worker: the append path to use instead of an in-process one (the primary's
   * integrator, src/cluster/remote-appender.ts), given what each committed batch triggers.
   */
  appendVia?: (onCommit: (info: CommitInfo) => void) => Appender;
}

/** The log-size metric starts at the stored tree head (whose MAC must verify). */
export async function measureStoredLog(database: AppDatabase, headKey: Buffer, metrics: Metrics): Promise<void> {
  const head = await readTreeHead(database.db, headKey);
  metrics.logSize.set(head?.size ?? 0);
}

/** The appender of this process (in-process, or `opts.appendVia`). */
export function createAppender(config: Config, database: AppDatabase, publisher: CheckpointPublisher, opts: AppenderOptions, metrics: Metrics): Appender {
  const onCommit = ({ batchSize, head: h, durationMs }: CommitInfo) => {
    metrics.batchSize.observe(batchSize);
    metrics.batchDuration.observe(durationMs / 1000);
    metrics.logSize.set(h.size);
    if (opts.singletons) publisher.schedule();
    opts.onBatchCommitted?.();
  };
  if (opts.appendVia) return opts.appendVia(onCommit);
  return new LogAppender(database, {
    headKey: opts.headKey,
    preconditions: APPEND_PRECONDITIONS,
    companions: [MARK_SENT],
    maxBatch: config.batchMax,
    lingerMs: config.batchLingerMs,
    onCommit,
  });
}

/** Re-appends the lost tail from the auditor export at `exportPath` before the first checkpoint. */
export async function restoreLog(config: Config, database: AppDatabase, appender: Appender, signing: CheckpointSigning, headKey: Buffer, exportPath: string, logger: Logger): Promise<RestoreReport> {
  if (!signing.signerState) throw new Error('the log is restored by the signing process only');
  const restored = await restoreLostTail({ db: database.db, appender, headKey, state: signing.signerState, origin: config.logOrigin, verifiers: signing.logVerifiers }, exportPath);
  logger.info({ ...restored }, 'log restored from the export: the stored tree extends the last signed checkpoint again');
  return restored;
}

/** The singleton stores each full Merkle tile as one row once a checkpoint covers it (src/log/tiles/compact.ts). */
export function startTileCompaction(database: AppDatabase, signing: CheckpointSigning, logger: Logger, cleanups: Cleanups): void {
  const compactor = new TileCompactor(database.pool, (e) => logger.error({ code: (e as { code?: string }).code }, 'tile compaction failed'));
  signing.onPublished(() => compactor.schedule());
  cleanups.push(() => compactor.close());
}
