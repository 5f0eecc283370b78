/**
 * Composition root: wires database, KMS, PKI, log and HTTPS server from a Config.
 * `startPaylog` resolves once the server is listening; `close()` stops accepting requests,
 * finishes in-flight batches, then releases the database, the KMS endpoint and embedded PG.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import type { DestinationStream } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Config } from './config.js';
import { createLogger, type Logger } from './logging.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startEmbeddedPostgres, type EmbeddedServer } from './db/embedded.js';
import { applyMigrations, ensureKeysLogin, ensureServiceLogin, KEYS_ROLE, openAppDatabase, type AppDatabase } from './db/connection.js';
import { processors } from './db/schema.js';
import { startLocalKms, type LocalKmsEndpoint } from './kms/local-endpoint.js';
import { createKmsClient, PaylogKms } from './kms/client.js';
import { ensureDevPki, type DevPki } from './pki/dev-pki.js';
import { principalUri } from './pki/identity.js';
import { LogAppender, readTreeHead } from './log/appender.js';
import { treeHeadKey } from './log/tree-head.js';
import { TransactionService } from './services/transactions.js';
import { ProcessorRegistry } from './auth/processors.js';
import { RevocationList } from './auth/revocations.js';
import { keysDatabasePassword, loadOrCreateServiceKey, MAC_KEY_NAME, serviceDatabasePassword } from './keyring.js';
import { KeyLifecycleService } from './services/key-lifecycle.js';
import { registerKeyRoutes } from './api/routes/keys.js';
import { buildServer } from './api/server.js';
import { registerAdminRoutes, registerReleaseRoutes } from './api/routes/release.js';
import { ReleaseService } from './services/release.js';
import { LogReadService } from './services/log-read.js';
import { registerLogRoutes } from './api/routes/log.js';
import { CheckpointPublisher, kmsNoteSigners, type PublishedKey } from './log/checkpoints.js';
import { AdminService } from './services/admin.js';
import { RateLimiter } from './auth/rate-limit.js';
import type { DataKeySource } from './crypto/envelope.js';
import { EpochKeyring } from './kms/epoch-keys.js';
import { KeyEventLog } from './services/key-events.js';
import { CseKeyStore, registerCseKeyMetrics } from './cse/keys.js';
import { ClientSideDecryption } from './cse/jwe.js';
import { registerCseRoutes } from './api/routes/cse.js';

export const EMBEDDED_DATABASE = 'paylog';
export const DEV_PROCESSORS = ['acme', 'globex'] as const;
/** How long a readiness answer is reused. */
export const READINESS_CACHE_MS = 2_000;
/** The retention job runs this long after start, then once a day (singletons only). */
export const RETENTION_FIRST_RUN_MS = 60_000;
export const RETENTION_INTERVAL_MS = 24 * 60 * 60 * 1000;
/** Connections of the key-destruction pool (paylog_keys). */
export const KEYS_POOL_SIZE = 2;

export interface Paylog {
  readonly url: string;
  readonly port: number;
  readonly config: Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly database: AppDatabase;
  readonly ownerDatabaseUrl: string;
  readonly kms: PaylogKms;
  readonly dataKeyId: string;
  readonly signingKeyIds: string[];
  readonly checkpoints: CheckpointPublisher;
  /** Published checkpoint verifier keys (signed-note vkey + PEM). */
  readonly logKeys: PublishedKey[];
  readonly appender: LogAppender;
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
  close(): Promise<void>;
}

export interface StartOptions {
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
  /** Called after each committed batch (cluster workers tell worker 0 to publish a checkpoint). */
  onBatchCommitted?: () => void;
}

export async function ensureEmbeddedDatabase(adminUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const r = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [EMBEDDED_DATABASE]);
    if (r.rowCount === 0) await client.query(`CREATE DATABASE ${EMBEDDED_DATABASE}`);
  } finally {
    await client.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${EMBEDDED_DATABASE}`;
  return u.toString();
}

export async function startPaylog(config: Config, opts: StartOptions = {}): Promise<Paylog> {
  const logger = createLogger(config.logLevel, opts.logDestination);
  const metrics = createMetrics();
  const cleanups: Array<() => Promise<void>> = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });

    // Database: external (DATABASE_URL) or embedded under dataDir/pg.
    let ownerUrl = config.databaseUrl;
    let embedded: EmbeddedServer | undefined;
    if (!ownerUrl) {
      embedded = await startEmbeddedPostgres({ dataDir: join(config.dataDir, 'pg'), ownedRoot: config.dataDir });
      cleanups.push(() => embedded!.stop());
      ownerUrl = await ensureEmbeddedDatabase(embedded.adminUrl);
    }
    await applyMigrations(ownerUrl);
    // Bootstrap pool (owner session, role paylog_app) until the service login exists.
    let database = config.appDatabaseUrl ? openAppDatabase(config.appDatabaseUrl, { role: null }) : openAppDatabase(ownerUrl);
    const closeDatabase = async () => database.close();
    cleanups.push(closeDatabase);

    // KMS: real client, local endpoint unless AWS settings are given.
    let kmsClientSettings;
    let local: LocalKmsEndpoint | undefined;
    if (config.kms.mode === 'local' && opts.localKmsUrl) {
      kmsClientSettings = { endpoint: opts.localKmsUrl, region: config.kms.region, local: true };
    } else if (config.kms.mode === 'local') {
      local = await startLocalKms({ keyStoreDir: join(config.dataDir, 'kms') });
      cleanups.push(() => local!.close());
      kmsClientSettings = { endpoint: local.url, region: config.kms.region, local: true };
    } else {
      kmsClientSettings = {
        ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
        region: config.kms.region ?? 'us-east-1',
      };
    }
    const kmsClient = createKmsClient(kmsClientSettings);
    cleanups.push(async () => kmsClient.destroy());
    const kms = new PaylogKms(kmsClient, (operation, outcome) => metrics.kmsRequests.inc({ operation, outcome }));
    let dataKeyId = config.kms.dataKeyId;
    let signingKeyIds = [config.kms.signingKeyId, ...config.kms.additionalSigningKeyIds];
    if (config.kms.mode === 'local') {
      dataKeyId = await kms.ensureKey(dataKeyId.replace(/^alias\//, ''), 'SYMMETRIC_DEFAULT');
      const ids: string[] = [];
      for (const id of signingKeyIds) ids.push(await kms.ensureKey(id.replace(/^alias\//, ''), 'ECC_NIST_EDWARDS25519'));
      signingKeyIds = ids;
    } else {
      await kms.ping(dataKeyId);
      for (const id of signingKeyIds) await kms.ping(id);
    }
    const dataKeys: DataKeySource = {
      generateDataKey: (context) => kms.generateDataKey(dataKeyId, context),
      decryptDataKey: (wrapped, context, keyId) => kms.decryptDataKey(wrapped, context, keyId),
    };
    const macKey = await loadOrCreateServiceKey(database, kms, dataKeyId, MAC_KEY_NAME);
    cleanups.push(async () => void macKey.fill(0));

    // Run as a login role that is only a member of paylog_app (no way back to the owner).
    if (!config.appDatabaseUrl) {
      const serviceUrl = await ensureServiceLogin(ownerUrl, serviceDatabasePassword(macKey));
      if (serviceUrl) {
        const bootstrap = database;
        database = openAppDatabase(serviceUrl, { role: null });
        await bootstrap.close();
      } else {
        logger.warn('the database owner may not create roles: running as the owner with role paylog_app; set PAYLOG_APP_DATABASE_URL in production');
      }
    }
    // Key destruction (rewrap, shred, retention) runs on its own connection as a member of
    // paylog_keys only; the runtime role cannot replace or destroy wrapped keys.
    const keysUrl = await ensureKeysLogin(ownerUrl, keysDatabasePassword(macKey)).catch(() => null);
    const keysDatabase = keysUrl ? openAppDatabase(keysUrl, { role: null, max: KEYS_POOL_SIZE }) : openAppDatabase(ownerUrl, { role: KEYS_ROLE, max: KEYS_POOL_SIZE });
    cleanups.push(() => keysDatabase.close());
    const who = (await database.pool.query('SELECT r.rolsuper AS s FROM pg_roles r WHERE r.rolname = session_user')).rows[0] as { s: boolean } | undefined;
    if (who?.s && config.appDatabaseUrl) throw new Error('PAYLOG_APP_DATABASE_URL must not log in as a superuser');

    // TLS: production files or the dev PKI (written on first start).
    let tls: { key: string; cert: string; ca: string };
    let devPki: DevPki | undefined;
    if (config.tls) {
      tls = {
        key: readFileSync(config.tls.keyPath, 'utf8'),
        cert: readFileSync(config.tls.certPath, 'utf8'),
        ca: readFileSync(config.tls.caPath, 'utf8'),
      };
    } else {
      devPki = await ensureDevPki(join(config.dataDir, 'pki'), { hostnames: ['localhost', '127.0.0.1', '::1', config.host] });
      tls = { key: devPki.server.keyPem, cert: devPki.server.certPem, ca: devPki.caCertPem };
      // Dev processors matching the dev certificates; never re-activates a disabled one.
      await database.db
        .insert(processors)
        .values(DEV_PROCESSORS.map((name) => ({ name, principalUri: principalUri({ role: 'processor', name }) })))
        .onConflictDoNothing();
    }

    const singletons = opts.singletons ?? true;
    const headKey = treeHeadKey(macKey);
    cleanups.push(async () => void headKey.fill(0));
    const head = await readTreeHead(database.db, headKey);
    metrics.logSize.set(head?.size ?? 0);
    const { signers, keys: publishedKeys } = await kmsNoteSigners(kms, config.logOrigin, signingKeyIds);
    const checkpointPublisher = new CheckpointPublisher(database.db, { origin: config.logOrigin, signers, logger, headKey });
    const appender = new LogAppender(database, {
      headKey,
      maxBatch: config.batchMax,
      lingerMs: config.batchLingerMs,
      onCommit: ({ batchSize, head: h, durationMs }) => {
        metrics.batchSize.observe(batchSize);
        metrics.batchDuration.observe(durationMs / 1000);
        metrics.logSize.set(h.size);
        if (singletons) checkpointPublisher.schedule();
        opts.onBatchCommitted?.();
      },
    });
    const processorRegistry = new ProcessorRegistry(database);
    const revocations = new RevocationList(database);
    const keyEvents = new KeyEventLog(appender);
    const epochs = new EpochKeyring({
      database,
      kms,
      granularity: config.keys.epoch,
      cacheTtlMs: config.keys.cacheTtlSeconds * 1000,
      cacheMaxUses: config.keys.cacheMaxUses,
      recordKeyEvent: (e) => keyEvents.record(e),
      onCacheHit: () => metrics.epochCacheHits.inc(),
      onCacheMiss: () => metrics.epochCacheMisses.inc(),
    });
    cleanups.push(async () => epochs.close());
    const cseKeys = new CseKeyStore(
      { database, kms, kmsKeyId: dataKeyId },
      { period: config.cse.keyPeriod, overlapS: config.cse.keyOverlapS, cacheTtlS: config.cse.keyCacheTtlS },
    );
    cleanups.push(async () => cseKeys.close());
    registerCseKeyMetrics(metrics.registry, cseKeys);
    const cse = new ClientSideDecryption(cseKeys, { maxAgeS: config.cse.maxAgeS });
    const transactionsService = new TransactionService({
      database,
      appender,
      dataKeys,
      macKey,
      processors: processorRegistry,
      ...(config.keys.mode === 'hierarchical' ? { epochs } : {}),
      ...(opts.clock ? { clock: opts.clock } : {}),
      cse,
      proofs: (index) => logRead.servedProof(index),
    });

    const release = new ReleaseService({
      database,
      appender,
      dataKeys,
      transactions: transactionsService,
      processors: processorRegistry,
      limiter: new RateLimiter(config.releaseRatePerMinute),
      macKey,
      metrics,
      epochs,
    });
    const clock = opts.clock ?? (() => new Date());
    const keyLifecycle = new KeyLifecycleService({
      database,
      keysDatabase,
      kms,
      epochs,
      keyEvents,
      retention: config.keys.retention,
      devKms: config.kms.mode === 'local',
      clock,
      kmsCounts: async () => {
        const out: Record<string, number> = {};
        for (const v of (await metrics.kmsRequests.get()).values) {
          const op = String(v.labels.operation);
          out[op] = (out[op] ?? 0) + v.value;
        }
        return out;
      },
    });
    if (singletons) {
      const runRetention = () =>
        keyLifecycle.applyRetention(null, {}).then(
          (r) => logger.info({ periods: r.periods.length, epochs: r.epochs.length, v1Records: r.v1Records, logIndex: r.logIndex }, 'retention run'),
          (e: unknown) => logger.error({ code: (e as { code?: string }).code }, 'retention run failed'),
        );
      const first = setTimeout(() => void runRetention(), RETENTION_FIRST_RUN_MS);
      const daily = setInterval(() => void runRetention(), RETENTION_INTERVAL_MS);
      first.unref();
      daily.unref();
      cleanups.push(async () => {
        clearTimeout(first);
        clearInterval(daily);
      });
    }
    const admin = new AdminService(processorRegistry, revocations, appender);
    const logRead = new LogReadService(database.db, { origin: config.logOrigin, keys: publishedKeys, processors: processorRegistry, headKey });
    if (singletons) {
      try {
        await checkpointPublisher.publish();
      } catch (e) {
        logger.error({ code: (e as { code?: string }).code }, 'initial checkpoint not signed');
      }
      checkpointPublisher.start();
      cleanups.push(() => checkpointPublisher.close());
    }

    // /readyz needs no certificate: answer from a short cache with one check in flight, so a
    // flood cannot spend the KMS request quota that GenerateDataKey/Decrypt/Sign share.
    let readyCache: { at: number; value: Promise<{ ok: boolean; checks: Record<string, boolean> }> } | undefined;
    const readiness = () => {
      if (readyCache && Date.now() - readyCache.at < READINESS_CACHE_MS) return readyCache.value;
      const value = (async () => {
        const checks = { database: false, kms: false };
        await database.pool.query('SELECT 1').then(() => (checks.database = true), () => {});
        await kms.ping(dataKeyId).then(() => (checks.kms = true), () => {});
        return { ok: checks.database && checks.kms, checks };
      })();
      readyCache = { at: Date.now(), value };
      return value;
    };
    const server = await buildServer({
      tls,
      logger,
      metrics,
      transactions: transactionsService,
      revocations,
      readiness,
      extraRoutes: [
        (app) => registerReleaseRoutes(app, { release }),
        (app) => registerAdminRoutes(app, { admin }),
        (app) => registerKeyRoutes(app, { keys: keyLifecycle }),
        (app) => registerLogRoutes(app, { log: logRead }),
        (app) => registerCseRoutes(app, { cseKeys }),
      ],
    });
    await server.listen({ host: config.host, port: config.port });
    const addr = server.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.port;
    const hostForUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
    let closing: Promise<void> | undefined;
    return {
      url: `https://${hostForUrl}:${port}`,
      port,
      config,
      logger,
      metrics,
      database,
      ownerDatabaseUrl: ownerUrl,
      kms,
      dataKeyId,
      signingKeyIds,
      checkpoints: checkpointPublisher,
      logKeys: publishedKeys,
      appender,
      processors: processorRegistry,
      revocations,
      cseKeys,
      server,
      ...(devPki ? { devPki } : {}),
      ...(local ? { localKms: local } : {}),
      epochs,
      keyEvents,
      transactions: transactionsService,
      keyLifecycle,
      close: () =>
        (closing ??= (async () => {
          await server.close(); // stops accepting; waits for in-flight requests
          await appender.close(); // finishes queued batches
          if (singletons) await checkpointPublisher.publish().catch(() => null); // sign the final tree
          await cleanup();
        })()),
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
