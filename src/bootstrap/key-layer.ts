/**
 * Start-up step "key layer": key epochs (envelope v2) with their cache, the key notification
 * listener that zeroes a shredded epoch's cached key in every process, and the client-side
 * encryption keys — all recording their key events through the one KeyEventLog.
 *
 * Contract: every cache created here is closed (keys zeroed) by the cleanups. It MUST NOT
 * decide which envelope a record uses (the services do, from config.keys.mode).
 */
import type { Config } from '../config.js';
import { errorForLog, type Logger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import { EpochKeyring } from '../kms/epoch-keys.js';
import { KeyNoticeListener, registerEpochKeyGauges } from '../kms/key-notifications.js';
import { CseKeyStore, registerCseKeyMetrics } from '../cse/keys.js';
import { ClientSideDecryption } from '../cse/jwe.js';
import type { KeyEventLog } from '../services/key-events.js';
import type { Cleanups } from './cleanups.js';
import type { RuntimeLogin } from './database.js';

export interface KeyLayer {
  epochs: EpochKeyring;
  cseKeys: CseKeyStore;
  cse: ClientSideDecryption;
}

interface KeyLayerDeps {
  database: AppDatabase;
  /** Where the key notification listener connects (the runtime login). */
  runtimeLogin: RuntimeLogin;
  kms: KmsBackend;
  keyEvents: KeyEventLog;
  /** MAC of key-epoch rows. */
  epochKey: Buffer;
  /** The data key: CSE keys of before key periods were wrapped under it. */
  dataKeyId: string;
  clock?: () => Date;
}

/** Epoch keys with the cache and the metrics of their cache and their untrusted rows. */
function createEpochKeyring(config: Config, deps: KeyLayerDeps, logger: Logger, metrics: Metrics): EpochKeyring {
  return new EpochKeyring({
    database: deps.database,
    kms: deps.kms,
    granularity: config.keys.epoch,
    cacheTtlMs: config.keys.cacheTtlSeconds * 1000,
    cacheMaxUses: config.keys.cacheMaxUses,
    recordKeyEvent: (e) => deps.keyEvents.record(e),
    rowKey: deps.epochKey,
    onUntrustedRow: ({ table, id }) => {
      metrics.untrustedRows.inc({ table });
      logger.error({ table, row: id }, 'a key row was not created by paylog (planted in the database?): ignored');
    },
    onCacheHit: () => metrics.epochCacheHits.inc(),
    onCacheMiss: () => metrics.epochCacheMisses.inc(),
  });
}

/**
 * Every process zeroes a shredded epoch's cached key when the shred commits (hygiene: the
 * release's commit-time precondition is what guarantees nothing is released after it).
 */
function listenForKeyNotices(config: Config, deps: KeyLayerDeps, epochs: EpochKeyring, logger: Logger): KeyNoticeListener {
  const keyNotices = new KeyNoticeListener({
    ...deps.runtimeLogin,
    timeoutMs: config.budgets.dbConnectTimeoutMs,
    onNotice: (n) => epochs.forget(n.epochId),
    onSubscribed: async () => {
      const gone = await epochs.forgetShredded();
      if (gone.length > 0) logger.info({ epochs: gone }, 'cached keys of shredded epochs zeroed');
    },
    onError: (e) => logger.warn({ error: errorForLog(e) }, 'key notification listener: connection lost; it will be reopened'),
  });
  keyNotices.start();
  return keyNotices;
}

/** Epoch keys, the key notification listener and the CSE keys. */
export function startKeyLayer(config: Config, deps: KeyLayerDeps, logger: Logger, metrics: Metrics, cleanups: Cleanups): KeyLayer {
  const epochs = createEpochKeyring(config, deps, logger, metrics);
  cleanups.push(async () => epochs.close());
  const keyNotices = listenForKeyNotices(config, deps, epochs, logger);
  cleanups.push(() => keyNotices.close());
  registerEpochKeyGauges(metrics.registry, { cachedKeys: () => epochs.cachedPrivateKeys, listening: () => keyNotices.listening });
  const cseKeys = new CseKeyStore(
    { database: deps.database, kms: deps.kms, recordKeyEvent: (e) => deps.keyEvents.record(e), legacyKmsKeyId: deps.dataKeyId, ...(deps.clock ? { clock: deps.clock } : {}) },
    { period: config.cse.keyPeriod, overlapS: config.cse.keyOverlapS, cacheTtlS: config.cse.keyCacheTtlS },
  );
  cleanups.push(async () => cseKeys.close());
  registerCseKeyMetrics(metrics.registry, cseKeys);
  const cse = new ClientSideDecryption(cseKeys, { maxAgeS: config.cse.maxAgeS });
  return { epochs, cseKeys, cse };
}
