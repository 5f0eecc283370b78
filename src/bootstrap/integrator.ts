/**
 * Start-up step of the node:cluster primary: the instance's one append path (its integrator,
 * src/cluster/integrator.ts), fed by every worker. The same steps a worker takes to reach the
 * log — database (migrated), runtime login, KMS, service MAC key, tree-head key — and nothing
 * else: no HTTP, no signer, no other service.
 *
 * Contract: it runs before the first worker starts (so it also applies the migrations and
 * creates the service keys on a first start); `close()` finishes the queued batches, then
 * closes the pool, zeroes the keys and closes the KMS client. Keys never leave the process.
 */
import type { Config } from '../config.js';
import { createLogger } from '../logging.js';
import { createMetrics } from '../metrics.js';
import { LogAppender } from '../log/appender.js';
import type { CommitInfo } from '../log/append/types.js';
import { APPEND_PRECONDITIONS } from '../services/append-preconditions.js';
import { MARK_SENT } from '../services/forward/ledger.js';
import { Cleanups } from './cleanups.js';
import { openDatabase } from './database.js';
import { connectKms, resolveKmsKeys } from './kms.js';
import { deriveKeys, loadServiceKeys } from './service-keys.js';
import { switchToServiceLogin } from './logins.js';

/**
 * Batches the integrator keeps in flight: the next batch's BEGIN, lock wait and state read are
 * already at the server while the previous one commits, so the lock passes from one to the
 * next without waiting for a turn of this process's loop (one batch at a time, every batch
 * waited for the primary's wake-up after the previous COMMIT: half the throughput, measured).
 */
const INTEGRATOR_BATCHES_IN_FLIGHT = 2;

export interface IntegratorAppender {
  appender: LogAppender;
  /** Finishes the queued batches, then releases the pool, the keys and the KMS client. */
  close(): Promise<void>;
}

/**
 * The primary's appender. `databaseUrl`: the owner URL the workers get (embedded server);
 * `localKmsUrl`: the dev-only local KMS endpoint the workers get.
 */
export async function openIntegratorAppender(config: Config, databaseUrl: string | undefined, localKmsUrl: string | undefined, onCommit: (info: CommitInfo) => void): Promise<IntegratorAppender> {
  const cfg: Config = databaseUrl ? { ...config, databaseUrl } : config;
  const logger = createLogger(cfg.logLevel);
  const cleanups = new Cleanups();
  try {
    const db = await openDatabase(cfg, logger, cleanups);
    const kmsStep = await connectKms(cfg, localKmsUrl, logger, createMetrics(), cleanups);
    const { dataKeyId } = await resolveKmsKeys(cfg, kmsStep);
    const { macKey } = await loadServiceKeys(db.current.database, kmsStep, dataKeyId, cleanups);
    await switchToServiceLogin(cfg, db, macKey, logger);
    const { headKey } = deriveKeys(macKey, cleanups);
    const appender = new LogAppender(db.current.database, {
      headKey,
      preconditions: APPEND_PRECONDITIONS,
      companions: [MARK_SENT],
      maxBatch: cfg.batchMax,
      maxInFlight: INTEGRATOR_BATCHES_IN_FLIGHT,
      lingerMs: cfg.batchLingerMs,
      onCommit,
    });
    return {
      appender,
      close: async () => {
        await appender.close();
        await cleanups.run();
      },
    };
  } catch (e) {
    await cleanups.run();
    throw e;
  }
}
