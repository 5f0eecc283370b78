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
import { DEFAULT_AWS_REGION, type Config } from './config.js';
import { checkConfiguredKeys, kmsStartupStep, type KeyRef, type KmsWhere } from './kms/startup.js';
import { createLogger, errorForLog, type Logger } from './logging.js';
import { createMetrics, type Metrics } from './metrics.js';
import { startEmbeddedPostgres, type EmbeddedServer } from './db/embedded.js';
import { ADMIN_ROLE, APP_ROLE, applyMigrations, ensureAdminLogin, ensureKeysLogin, ensureServiceLogin, KEYS_ROLE, openAppDatabase, type AppDatabase } from './db/connection.js';
import { KeyNoticeListener, registerEpochKeyGauges } from './kms/key-notifications.js';
import { processors } from './db/schema.js';
import { startLocalKms, type LocalKmsEndpoint } from './kms/local-endpoint.js';
import { createKmsClient, PaylogKms } from './kms/client.js';
import { ensureDevPki, type DevPki } from './pki/dev-pki.js';
import { principalUri } from './pki/identity.js';
import { LogAppender, type Appender } from './log/appender.js';
import { readTreeHead } from './log/store.js';
import { treeHeadKey } from './log/tree-head.js';
import { epochRowKey } from './kms/epoch-rows.js';
import { TransactionService } from './services/transactions.js';
import { APPEND_PRECONDITIONS } from './services/append-preconditions.js';
import { ProcessorRegistry } from './auth/processors.js';
import { RevocationList } from './auth/revocations.js';
import { adminDatabasePassword, FINGERPRINT_KEY_V2_NAME, keysDatabasePassword, loadOrCreateServiceKey, MAC_KEY_NAME, serviceDatabasePassword } from './keyring.js';
import { ProbeLimiter } from './services/probe-limit.js';
import { KeyLifecycleService } from './services/key-lifecycle.js';
import { registerKeyRoutes } from './api/routes/keys.js';
import { buildServer } from './api/server.js';
import { registerAdminRoutes, registerReleaseRoutes } from './api/routes/release.js';
import { ReleaseService } from './services/release.js';
import { LogReadService } from './services/log-read.js';
import { registerLogRoutes, registerTileRoutes } from './api/routes/log.js';
import { TilesService } from './services/tiles.js';
import { registerWitnessMetrics, WitnessCosigning } from './log/witness/submitter.js';
import type { StoredCheckpoint } from './log/checkpoints.js';
import { CheckpointPublisher, kmsNoteSigners, type PublishedKey, type Refusal } from './log/checkpoints.js';
import { SignerStateFile } from './log/signer-state.js';
import { restoreLostTail, type RestoreReport } from './log/restore.js';
import { AdminService } from './services/admin.js';
import type { DataKeySource } from './crypto/envelope.js';
import { EpochKeyring } from './kms/epoch-keys.js';
import { KeyEventLog } from './services/key-events.js';
import { createReadiness } from './readiness.js';
import { CseKeyStore, registerCseKeyMetrics } from './cse/keys.js';
import { ClientSideDecryption } from './cse/jwe.js';
import { registerCseRoutes } from './api/routes/cse.js';

export const EMBEDDED_DATABASE = 'paylog';
export const DEV_PROCESSORS = ['acme', 'globex'] as const;
/** The retention job runs this long after start, then once a day (singletons only). */
export const RETENTION_FIRST_RUN_MS = 60_000;
export const RETENTION_INTERVAL_MS = 24 * 60 * 60 * 1000;
/** Connections of the key-destruction pool (paylog_keys). */
export const KEYS_POOL_SIZE = 2;
/** Connections of the processor-registration pool (paylog_admin). */
export const ADMIN_POOL_SIZE = 1;

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
  /** Signing process (worker 0): signing was refused, or resumed (null); the primary tells the other workers. */
  onSigningRefusal?: (r: SigningRefusal | null) => void;
  /**
   * `npm run restore-log`: before the first checkpoint, re-append the lost tail from this auditor
   * export (src/log/restore.ts); start-up fails if it does not prove to be the signed history.
   */
  restoreLog?: string;
  /** Other workers: the signer's refusal as worker 0 last reported it (their /readyz answers 503 too). */
  signingRefusal?: () => SigningRefusal | null | undefined;
}

/** What /readyz reports (`details.signing`) while the signer refuses to sign the stored tree. */
export type SigningRefusal = Refusal & { since: string };

export async function ensureEmbeddedDatabase(adminUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => {}); // a lost server fails the query in flight; no unhandled 'error'
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
    // Every pool connection is time-bounded and survives losing its server (a restart is a 503
    // with Retry-After while it lasts, then the pool reconnects).
    const poolOptions = {
      timeouts: {
        connectTimeoutMs: config.budgets.dbConnectTimeoutMs,
        statementTimeoutMs: config.budgets.dbStatementTimeoutMs,
        lockTimeoutMs: config.budgets.dbLockTimeoutMs,
        idleInTransactionTimeoutMs: config.budgets.dbIdleInTransactionTimeoutMs,
      },
      onConnectionError: (e: Error) => logger.warn({ error: errorForLog(e) }, 'database connection lost; it will be reopened'),
    };
    // Bootstrap pool (owner session, role paylog_app) until the service login exists.
    let database = config.appDatabaseUrl
      ? openAppDatabase(config.appDatabaseUrl, { ...poolOptions, role: null })
      : openAppDatabase(ownerUrl, poolOptions);
    // Where the runtime pool connects, and as what (the key notification listener does the same).
    let runtimeLogin: { url: string; role: string | null } = config.appDatabaseUrl ? { url: config.appDatabaseUrl, role: null } : { url: ownerUrl, role: APP_ROLE };
    const closeDatabase = async () => database.close();
    cleanups.push(closeDatabase);

    // KMS: real client, local endpoint unless AWS settings are given.
    let kmsClientSettings: { endpoint?: string; region: string; local?: boolean };
    let local: LocalKmsEndpoint | undefined;
    if (config.kms.mode === 'local' && opts.localKmsUrl) {
      kmsClientSettings = { endpoint: opts.localKmsUrl, region: config.kms.region, local: true };
    } else if (config.kms.mode === 'local') {
      const started = await startLocalKms({ keyStoreDir: join(config.dataDir, 'kms') });
      local = started;
      cleanups.push(() => started.close());
      kmsClientSettings = { endpoint: started.url, region: config.kms.region, local: true };
    } else {
      kmsClientSettings = {
        ...(config.kms.endpoint ? { endpoint: config.kms.endpoint } : {}),
        region: config.kms.region ?? DEFAULT_AWS_REGION,
      };
      if (config.kms.region === undefined) logger.info({ region: DEFAULT_AWS_REGION }, 'AWS_REGION is not set: the KMS client uses the default region');
    }
    const kmsClient = createKmsClient({
      ...kmsClientSettings,
      connectTimeoutMs: config.budgets.kmsConnectTimeoutMs,
      requestTimeoutMs: config.budgets.kmsRequestTimeoutMs,
      maxAttempts: config.budgets.kmsMaxAttempts,
    });
    cleanups.push(async () => kmsClient.destroy());
    const kms = new PaylogKms(
      kmsClient,
      (operation, outcome) => metrics.kmsRequests.inc({ operation, outcome }),
      (operation, seconds) => metrics.kmsDuration.observe({ operation }, seconds),
    );
    const kmsWhere: KmsWhere = { region: kmsClientSettings.region, ...(kmsClientSettings.endpoint ? { endpoint: kmsClientSettings.endpoint } : {}) };
    const dataKeyRef: KeyRef = { setting: 'PAYLOG_KMS_DATA_KEY_ID', keyId: config.kms.dataKeyId, kind: 'data' };
    const signingKeyRefs: KeyRef[] = [
      { setting: 'PAYLOG_KMS_SIGNING_KEY_ID', keyId: config.kms.signingKeyId, kind: 'signing' },
      ...config.kms.additionalSigningKeyIds.map((keyId): KeyRef => ({ setting: 'PAYLOG_KMS_ADDITIONAL_SIGNING_KEY_IDS', keyId, kind: 'signing' })),
    ];
    let dataKeyId = config.kms.dataKeyId;
    let signingKeyIds = [config.kms.signingKeyId, ...config.kms.additionalSigningKeyIds];
    if (config.kms.mode === 'local') {
      dataKeyId = await kms.ensureKey(dataKeyId.replace(/^alias\//, ''), 'SYMMETRIC_DEFAULT');
      const ids: string[] = [];
      for (const id of signingKeyIds) ids.push(await kms.ensureKey(id.replace(/^alias\//, ''), 'ECC_NIST_EDWARDS25519'));
      signingKeyIds = ids;
    } else {
      await checkConfiguredKeys(kms, [dataKeyRef, ...signingKeyRefs], kmsWhere);
    }
    const dataKeys: DataKeySource = {
      generateDataKey: (context) => kms.generateDataKey(dataKeyId, context),
      decryptDataKey: (wrapped, context, keyId) => kms.decryptDataKey(wrapped, context, keyId),
    };
    const macKey = await kmsStartupStep(dataKeyRef, 'GenerateDataKey', kmsWhere, () => loadOrCreateServiceKey(database, kms, dataKeyId, MAC_KEY_NAME));
    cleanups.push(async () => void macKey.fill(0));
    // Fingerprints v2 and probe MACs (issue 17): a key of their own, never the v1 fingerprint key.
    const fingerprintKey = await kmsStartupStep(dataKeyRef, 'GenerateDataKey', kmsWhere, () => loadOrCreateServiceKey(database, kms, dataKeyId, FINGERPRINT_KEY_V2_NAME));
    cleanups.push(async () => void fingerprintKey.fill(0));

    // Run as a login role that is only a member of paylog_app (no way back to the owner).
    if (!config.appDatabaseUrl) {
      const serviceUrl = await ensureServiceLogin(ownerUrl, serviceDatabasePassword(macKey));
      if (serviceUrl) {
        const bootstrap = database;
        database = openAppDatabase(serviceUrl, { ...poolOptions, role: null });
        runtimeLogin = { url: serviceUrl, role: null };
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
    // Processor registrations (admin decisions) are written on a connection of their own as a
    // member of paylog_admin only: the runtime role can read processors, not change them.
    const adminUrl = await ensureAdminLogin(ownerUrl, adminDatabasePassword(macKey)).catch(() => null);
    const adminDatabase = adminUrl ? openAppDatabase(adminUrl, { role: null, max: ADMIN_POOL_SIZE }) : openAppDatabase(ownerUrl, { role: ADMIN_ROLE, max: ADMIN_POOL_SIZE });
    cleanups.push(() => adminDatabase.close());
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
      await adminDatabase.db
        .insert(processors)
        .values(DEV_PROCESSORS.map((name) => ({ name, principalUri: principalUri({ role: 'processor', name }) })))
        .onConflictDoNothing();
    }

    const singletons = opts.singletons ?? true;
    const headKey = treeHeadKey(macKey);
    cleanups.push(async () => void headKey.fill(0));
    const epochKey = epochRowKey(macKey);
    cleanups.push(async () => void epochKey.fill(0));
    const head = await readTreeHead(database.db, headKey);
    metrics.logSize.set(head?.size ?? 0);
    const { signers, keys: publishedKeys } = await kmsStartupStep(signingKeyRefs[0]!, 'GetPublicKey', kmsWhere, () => kmsNoteSigners(kms, config.logOrigin, signingKeyIds));
    const logVerifiers = signers.map((s) => ({ name: s.name, publicKey: s.publicKey }));
    let witnessing: WitnessCosigning | undefined;
    if (config.witnesses) {
      const w = new WitnessCosigning(database.db, {
        witnesses: config.witnesses.endpoints,
        quorum: config.witnesses.quorum,
        ...(config.witnesses.caPath !== undefined ? { ca: readFileSync(config.witnesses.caPath, 'utf8') } : {}),
        logVerifiers,
        logger,
        metrics: registerWitnessMetrics(metrics.registry),
      });
      witnessing = w;
      cleanups.push(() => w.close());
    } else if (config.kms.mode === 'aws' && singletons) {
      logger.warn(
        { setting: 'PAYLOG_WITNESSES' },
        'no witnesses configured: only the signer state file (PAYLOG_SIGNER_STATE) stands between a rolled-back database and a signed fork; configure witnesses in production (SECURITY.md "Never a signed fork")',
      );
    }
    // The signer's memory outside the database: a file that does not verify stops the start.
    const signerState = singletons ? new SignerStateFile(config.signerStatePath, { origin: config.logOrigin, verifiers: logVerifiers }) : undefined;
    const lastSigned = await signerState?.load();
    if (lastSigned) logger.info({ size: lastSigned.size, path: config.signerStatePath }, 'signer state: last signed checkpoint');
    // Listeners of each newly signed checkpoint (tiles' signed size).
    const published: Array<(c: StoredCheckpoint) => void> = [];
    const checkpointPublisher = new CheckpointPublisher(database.db, {
      origin: config.logOrigin,
      signers,
      logger,
      headKey,
      ...(signerState ? { state: signerState } : {}),
      ...(witnessing ? { witnesses: witnessing } : {}),
      onPublished: (c) => {
        for (const f of published) f(c);
        metrics.checkpointSignedAt.value = Date.now();
        metrics.checkpointSize.set(c.size);
      },
      onRefused: (r) => metrics.checkpointRefused.inc({ reason: r.reason }),
      onRefusalChanged: (r) => {
        metrics.checkpointRefusing.set(r ? 1 : 0);
        opts.onSigningRefusal?.(r);
      },
    });
    metrics.checkpointRefusing.set(0);
    const appender = new LogAppender(database, {
      headKey,
      preconditions: APPEND_PRECONDITIONS,
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
    const processorRegistry = new ProcessorRegistry(database, adminDatabase);
    const revocations = new RevocationList(database);
    const keyEvents = new KeyEventLog(appender);
    const epochs = new EpochKeyring({
      database,
      kms,
      granularity: config.keys.epoch,
      cacheTtlMs: config.keys.cacheTtlSeconds * 1000,
      cacheMaxUses: config.keys.cacheMaxUses,
      recordKeyEvent: (e) => keyEvents.record(e),
      rowKey: epochKey,
      onUntrustedRow: ({ table, id }) => {
        metrics.untrustedRows.inc({ table });
        logger.error({ table, row: id }, 'a key row was not created by paylog (planted in the database?): ignored');
      },
      onCacheHit: () => metrics.epochCacheHits.inc(),
      onCacheMiss: () => metrics.epochCacheMisses.inc(),
    });
    cleanups.push(async () => epochs.close());
    // Every process zeroes a shredded epoch's cached key when the shred commits (hygiene: the
    // release's commit-time precondition is what guarantees nothing is released after it).
    const keyNotices = new KeyNoticeListener({
      ...runtimeLogin,
      timeoutMs: config.budgets.dbConnectTimeoutMs,
      onNotice: (n) => epochs.forget(n.epochId),
      onSubscribed: async () => {
        const gone = await epochs.forgetShredded();
        if (gone.length > 0) logger.info({ epochs: gone }, 'cached keys of shredded epochs zeroed');
      },
      onError: (e) => logger.warn({ error: errorForLog(e) }, 'key notification listener: connection lost; it will be reopened'),
    });
    keyNotices.start();
    cleanups.push(() => keyNotices.close());
    registerEpochKeyGauges(metrics.registry, { cachedKeys: () => epochs.cachedPrivateKeys, listening: () => keyNotices.listening });
    const cseKeys = new CseKeyStore(
      { database, kms, recordKeyEvent: (e) => keyEvents.record(e), legacyKmsKeyId: dataKeyId, ...(opts.clock ? { clock: opts.clock } : {}) },
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
      fingerprintKey,
      probes: new ProbeLimiter(database, { limit: config.probeLimitPerHour, onRefused: () => metrics.probeRefusals.inc() }),
      logger,
      metrics,
      processors: processorRegistry,
      revocations,
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
      cseKeys,
      devKms: config.kms.mode === 'local',
      clock,
      serviceKeyIds: [dataKeyId, ...signingKeyIds],
      logger,
      kmsCounts: async () => {
        const out: Record<string, number> = {};
        for (const v of (await metrics.kmsRequests.get()).values) {
          const op = String(v.labels.operation);
          out[op] = (out[op] ?? 0) + v.value;
        }
        return out;
      },
    });
    if (singletons && opts.retentionSchedule !== false) {
      const runRetention = () =>
        keyLifecycle.applyRetention(null, {}).then(
          (r) => logger.info({ periods: r.periods.length, epochs: r.epochs.length, v1Records: r.v1Records, logIndex: r.logIndex }, 'retention run'),
          (e: unknown) => logger.error({ code: (e as { code?: string }).code }, 'retention run failed'),
        );
      const first = setTimeout(() => void runRetention(), opts.retentionFirstRunMs ?? RETENTION_FIRST_RUN_MS);
      const daily = setInterval(() => void runRetention(), RETENTION_INTERVAL_MS);
      first.unref();
      daily.unref();
      cleanups.push(async () => {
        clearTimeout(first);
        clearInterval(daily);
      });
    }
    const admin = new AdminService(processorRegistry, revocations, appender);
    const logRead = new LogReadService(database.db, {
      origin: config.logOrigin,
      keys: publishedKeys,
      processors: processorRegistry,
      headKey,
      ...(witnessing ? { witnessed: () => witnessing.latestWitnessed() } : {}),
    });
    const tiles = new TilesService(database.db, { verifiers: logVerifiers, checkpoint: (p) => logRead.checkpoint(p), logger });
    published.push((c) => tiles.noteSigned(c.size));
    let restored: RestoreReport | undefined;
    if (opts.restoreLog !== undefined) {
      if (!signerState) throw new Error('the log is restored by the signing process only');
      restored = await restoreLostTail({ db: database.db, appender, headKey, state: signerState, origin: config.logOrigin, verifiers: logVerifiers }, opts.restoreLog);
      logger.info({ ...restored }, 'log restored from the export: the stored tree extends the last signed checkpoint again');
    }
    if (singletons) {
      try {
        const current = await checkpointPublisher.publish();
        if (current) {
          metrics.checkpointSignedAt.value ??= Date.now();
          metrics.checkpointSize.set(current.size);
        }
      } catch (e) {
        logger.error({ code: (e as { code?: string }).code }, 'initial checkpoint not signed');
      }
      opts.onSigningRefusal?.(checkpointPublisher.refusal());
      checkpointPublisher.start();
      cleanups.push(() => checkpointPublisher.close());
    }

    // /readyz needs no certificate: bounded, cached checks (src/readiness.ts).
    const checkReadiness = createReadiness({
      database: () => database.pool.query('SELECT 1'),
      kms: (signal) => kms.ping(dataKeyId, signal),
    });
    // Witnessing is reported, not required: third parties being slow must not stop appends.
    // A signer that refuses to sign the stored tree (a rolled-back or rewritten database, a
    // witness that saw another history) makes every worker not ready, with the reason.
    const readiness = async () => {
      const report = await checkReadiness();
      const workers = opts.workers?.();
      const signing = singletons ? checkpointPublisher.refusal() : (opts.signingRefusal?.() ?? null);
      const details = { ...(witnessing ? { witnesses: witnessing.status() } : {}), ...(workers ? { workers } : {}), ...(signing ? { signing: { refused: true, ...signing } } : {}) };
      const r = signing ? { ...report, ok: false } : report;
      return Object.keys(details).length > 0 ? { ...r, details } : r;
    };
    const server = await buildServer({
      tls,
      logger,
      metrics,
      transactions: transactionsService,
      revocations,
      readiness,
      requestTimeoutMs: config.budgets.requestTimeoutMs,
      extraRoutes: [
        (app) => registerReleaseRoutes(app, { release, releaseRatePerMinute: config.releaseRatePerMinute }),
        (app) => registerAdminRoutes(app, { admin }),
        (app) => registerKeyRoutes(app, { keys: keyLifecycle }),
        (app) => registerLogRoutes(app, { log: logRead }),
        (app) => registerTileRoutes(app, { tiles }),
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
      ...(witnessing ? { witnesses: witnessing } : {}),
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
      ...(restored ? { restored } : {}),
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
