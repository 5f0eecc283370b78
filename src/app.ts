/**
 * Composition root: `startPaylog` wires database, KMS, PKI, log and HTTPS server from a Config,
 * as a short sequence of named start-up steps (src/bootstrap/*.ts, one concern each).
 *
 * Contract: `startPaylog` resolves once the server is listening; a step that fails undoes every
 * step before it (newest first) and the start fails. `close()` stops accepting requests,
 * finishes in-flight batches, signs the final tree (singleton), then releases the database, the
 * KMS endpoint and embedded PG. This file MUST NOT hold a step's logic: only the order.
 */
import { mkdirSync } from 'node:fs';
import type { DestinationStream } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { createLogger, type Logger } from './logging.js';
import { createMetrics, type Metrics } from './metrics.js';
import type { AppDatabase } from './db/connection.js';
import type { LocalKmsEndpoint } from './kms/local/server.js';
import type { KmsBackend } from './kms/backend.js';
import type { DevPki } from './pki/dev-pki.js';
import type { Appender } from './log/appender.js';
import type { CheckpointPublisher, PublishedKey, Refusal } from './log/checkpoint-publisher.js';
import type { WitnessCosigning } from './log/witness/submitter.js';
import type { RestoreReport } from './log/restore.js';
import type { TransactionService } from './services/transactions.js';
import type { ProcessorRegistry } from './auth/processors.js';
import type { RevocationList } from './auth/revocations.js';
import type { KeyLifecycleService } from './services/key-lifecycle.js';
import type { EpochKeyring } from './kms/epoch-keys.js';
import { KeyEventLog } from './services/key-events.js';
import type { CseKeyStore } from './cse/keys.js';
import { buildServer } from './api/server.js';
import { registerRoutes } from './api/routes/index.js';
import { Cleanups } from './bootstrap/cleanups.js';
import { openDatabase } from './bootstrap/database.js';
import { connectKms, resolveKmsKeys } from './bootstrap/kms.js';
import { deriveKeys, loadServiceKeys } from './bootstrap/service-keys.js';
import { openLogins } from './bootstrap/logins.js';
import { loadTls } from './bootstrap/tls.js';
import { createCheckpointSigning, publishFirstCheckpoint } from './bootstrap/checkpoint-signer.js';
import { createAppender, measureStoredLog, restoreLog, startTileCompaction, type AppenderOptions } from './bootstrap/log.js';
import { startKeyLayer } from './bootstrap/key-layer.js';
import { startCardSecurityCodes } from './bootstrap/cvc.js';
import { createServices } from './bootstrap/services.js';
import { scheduleRetention } from './bootstrap/retention.js';
import { readinessCheck } from './bootstrap/readiness.js';

export { EMBEDDED_DATABASE } from './bootstrap/database.js';

export interface Paylog {
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly database: AppDatabase;
  readonly ownerDatabaseUrl: string;
  readonly kms: KmsBackend;
  readonly dataKeyId: string;
  readonly signingKeyIds: string[];
  readonly checkpoints: CheckpointPublisher;
  /** Published checkpoint verifier keys (signed-note vkey + PEM). */
  readonly logKeys: PublishedKey[];
  /** Witness submissions and quorum (only with PAYLOG_WITNESSES). */
  readonly witnesses?: WitnessCosigning;
  readonly appender: Appender;
  readonly processors: ProcessorRegistry;
  readonly revocations: RevocationList;
  /** Client-side encryption keys (browser JWE). */
  readonly cseKeys: CseKeyStore;
  readonly server: FastifyInstance;
  readonly devPki?: DevPki;
  /** The dev-only local KMS endpoint, when in use (tests count KMS calls at it). */
  readonly localKms?: LocalKmsEndpoint;
  /** Key epochs (envelope v2) and the one path key events take into the log. */
  readonly epochs: EpochKeyring;
  readonly keyEvents: KeyEventLog;
  readonly transactions: TransactionService;
  readonly keyLifecycle: KeyLifecycleService;
  /** What `restoreLog` re-appended. */
  readonly restored?: RestoreReport;
  close(opts?: CloseOptions): Promise<void>;
}

interface CloseOptions {
  /**
   * Signing process of a cluster: resolves when the final tree may be signed (every other
   * worker has finished its batches and exited); awaited after this process's own batches.
   */
  beforeFinalCheckpoint?: () => Promise<void>;
}

interface StartOptions {
  /** Where pino writes (tests capture it); default stdout. */
  logDestination?: DestinationStream;
  /** Injected clock (epoch rollover, retention tests); default the system clock. */
  clock?: () => Date;
  /**
   * Cluster worker (src/main.ts): use this already running dev-only local KMS endpoint instead of
   * starting one (the primary owns it).
   */
  localKmsUrl?: string;
  /** False in cluster workers other than worker 0: the checkpoint signer and daily jobs run once. */
  singletons?: boolean;
  /**
   * False: no scheduled retention run (default true, in the singleton process). Tests turn it
   * off so its `retention_run` entry never lands in the middle of a test that counts entries;
   * they run retention explicitly.
   */
  retentionSchedule?: boolean;
  /** Delay of the first scheduled retention run (default RETENTION_FIRST_RUN_MS; tests shorten it). */
  retentionFirstRunMs?: number;
  /** Cluster worker: how many of the configured workers listen now (reported by /readyz). */
  workers?: () => { listening: number; configured: number } | undefined;
  /** Called after each committed batch (cluster workers tell worker 0 to publish a checkpoint). */
  onBatchCommitted?: () => void;
  /** Cluster worker: the append path instead of an in-process appender (src/bootstrap/log.ts `appendVia`). */
  appendVia?: AppenderOptions['appendVia'];
  /** Signing process (worker 0): signing was refused, or resumed (null); the primary tells the other workers. */
  onSigningRefusal?: (r: SigningRefusal | null) => void;
  /**
   * `npm run restore-log`: before the first checkpoint, re-append the lost tail from this auditor
   * export (src/log/restore.ts); start-up fails if it does not prove to be the signed history.
   */
  restoreLog?: string;
  /** Other workers: the signer's refusal as worker 0 last reported it (their /readyz answers 503 too). */
  signingRefusal?: () => SigningRefusal | null | undefined;
  /** Cluster worker: its index (Node's process metrics are labelled with it). */
  worker?: number;
  /** Cluster worker: the cluster-wide /metrics text (src/cluster/metrics.ts); given this process's registry. */
  metricsExposition?: (registry: Metrics['registry']) => () => Promise<string>;
}

/** What /readyz reports (`details.signing`) while the signer refuses to sign the stored tree. */
export type SigningRefusal = Refusal & { since: string };

/** The URL the server answers at (IPv6 hosts in brackets) and the port it listens on. */
async function listen(server: FastifyInstance, config: Config): Promise<{ url: string; port: number }> {
  await server.listen({ host: config.host, port: config.port });
  const addr = server.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : config.port;
  const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  return { url: `https://${hostForUrl}:${port}`, port };
}

export async function startPaylog(config: Config, opts: StartOptions = {}): Promise<Paylog> {
  const logger = createLogger(config.logLevel, opts.logDestination);
  const metrics = createMetrics(opts.worker === undefined ? {} : { worker: opts.worker });
  const cleanups = new Cleanups();
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const singletons = opts.singletons ?? true;
    const db = await openDatabase(config, logger, cleanups);
    const kmsStep = await connectKms(config, opts.localKmsUrl, logger, metrics, cleanups);
    const { kms } = kmsStep;
    const { dataKeyId, signingKeyIds, dataKeys } = await resolveKmsKeys(config, kmsStep);
    const { macKey, fingerprintKey } = await loadServiceKeys(db.current.database, kmsStep, dataKeyId, cleanups);
    const { keysDatabase, adminDatabase } = await openLogins(config, db, macKey, logger, cleanups);
    const { database, login: runtimeLogin } = db.current;
    const { tls, devPki } = await loadTls(config, adminDatabase);
    const { headKey, epochKey } = deriveKeys(macKey, cleanups);
    await measureStoredLog(database, headKey, metrics);
    const signingOpts = { singletons, headKey, signingKeyIds, ...(opts.onSigningRefusal ? { onSigningRefusal: opts.onSigningRefusal } : {}) };
    const signing = await createCheckpointSigning(config, database.db, kmsStep, signingOpts, logger, metrics, cleanups);
    const { publisher, witnessing } = signing;
    const appender = createAppender(
      config,
      database,
      publisher,
      { singletons, headKey, ...(opts.onBatchCommitted ? { onBatchCommitted: opts.onBatchCommitted } : {}), ...(opts.appendVia ? { appendVia: opts.appendVia } : {}) },
      metrics,
    );
    const keyEvents = new KeyEventLog(appender);
    const keyLayer = startKeyLayer(config, { database, runtimeLogin, kms, keyEvents, epochKey, dataKeyId, ...(opts.clock ? { clock: opts.clock } : {}) }, logger, metrics, cleanups);
    const cardSecurityCodes = await startCardSecurityCodes(
      { database, macKey, keyEvents, ttlMs: config.cvcTtlMs, singletons, ...(opts.clock ? { clock: opts.clock } : {}) },
      logger,
      cleanups,
    );
    const services = createServices(
      config,
      {
        database,
        keysDatabase,
        adminDatabase,
        appender,
        kms,
        dataKeyId,
        signingKeyIds,
        dataKeys,
        macKey,
        fingerprintKey,
        headKey,
        keyLayer,
        keyEvents,
        cardSecurityCodes,
        publishedKeys: signing.publishedKeys,
        logVerifiers: signing.logVerifiers,
        ...(witnessing ? { witnessing } : {}),
        ...(opts.clock ? { clock: opts.clock } : {}),
      },
      logger,
      metrics,
    );
    cleanups.push(() => services.forward.close());
    if (singletons && opts.retentionSchedule !== false) scheduleRetention(services.keyLifecycle, opts.retentionFirstRunMs, logger, cleanups);
    signing.onPublished((c) => services.tiles.noteSigned(c.size));
    if (singletons) startTileCompaction(database, signing, logger, cleanups);
    const restored = opts.restoreLog !== undefined ? await restoreLog(config, database, appender, signing, headKey, opts.restoreLog, logger) : undefined;
    await publishFirstCheckpoint(signing, signingOpts, logger, metrics, cleanups);
    const readiness = readinessCheck({
      database,
      kms,
      dataKeyId,
      ...(witnessing ? { witnessing } : {}),
      ...(opts.workers ? { workers: opts.workers } : {}),
      signing: () => (singletons ? publisher.refusal() : opts.signingRefusal?.()),
    });
    const server = await buildServer({
      tls,
      logger,
      metrics,
      revocations: services.revocations,
      requestTimeoutMs: config.budgets.requestTimeoutMs,
      routes: (app) =>
        registerRoutes(app, {
          metrics,
          ...(opts.metricsExposition ? { metricsExposition: opts.metricsExposition(metrics.registry) } : {}),
          readiness,
          transactions: services.transactions,
          release: services.release,
          releaseRatePerMinute: config.releaseRatePerMinute,
          admin: services.admin,
          keys: services.keyLifecycle,
          log: services.logRead,
          tiles: services.tiles,
          cseKeys: keyLayer.cseKeys,
          forward: services.forward,
          forwardHistory: services.forwardHistory,
          destinations: services.destinations,
        }),
    });
    const { url, port } = await listen(server, config);
    let closing: Promise<void> | undefined;
    return {
      url,
      port,
      config,
      logger,
      metrics,
      database,
      ownerDatabaseUrl: db.ownerUrl,
      kms,
      dataKeyId,
      signingKeyIds,
      checkpoints: publisher,
      logKeys: signing.publishedKeys,
      ...(witnessing ? { witnesses: witnessing } : {}),
      appender,
      processors: services.processors,
      revocations: services.revocations,
      cseKeys: keyLayer.cseKeys,
      server,
      ...(devPki ? { devPki } : {}),
      ...(kmsStep.local ? { localKms: kmsStep.local } : {}),
      epochs: keyLayer.epochs,
      keyEvents,
      transactions: services.transactions,
      keyLifecycle: services.keyLifecycle,
      ...(restored ? { restored } : {}),
      close: (closeOpts: CloseOptions = {}) =>
        (closing ??= (async () => {
          await server.close(); // stops accepting; waits for in-flight requests
          await appender.close(); // finishes queued batches
          if (singletons) {
            await closeOpts.beforeFinalCheckpoint?.();
            await publisher.publish().catch(() => null); // sign the final tree
          }
          await cleanups.run();
        })()),
    };
  } catch (e) {
    await cleanups.run();
    throw e;
  }
}
