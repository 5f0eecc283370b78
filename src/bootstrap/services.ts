/**
 * Start-up step "services": the payment-domain services over the log, the key layer and the
 * database pools — one instance each, shared by every route.
 *
 * Contract: constructs only (no I/O); the services themselves own their rules. It MUST NOT
 * register a route (src/api/routes/index.ts does).
 */
import { recordKeyringFor } from '../keys/compose.js';
import type { Config } from '../config.js';
import type { Logger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import type { DataKeySource } from '../crypto/envelope.js';
import type { Appender } from '../log/appender.js';
import type { PublishedKey } from '../log/checkpoint-publisher.js';
import type { NoteVerifier } from '../log/note.js';
import type { WitnessCosigning } from '../log/witness/submitter.js';
import { ProcessorRegistry } from '../auth/processors.js';
import { RevocationList } from '../auth/revocations.js';
import { TransactionService } from '../services/transactions.js';
import { ProbeLimiter } from '../services/probe-limit.js';
import { ReleaseService } from '../services/release.js';
import { KeyLifecycleService } from '../services/key-lifecycle.js';
import type { KeyEventLog } from '../services/key-events.js';
import { AdminService } from '../services/admin.js';
import { LogReadService } from '../services/log-read.js';
import { TilesService } from '../services/tiles.js';
import type { KeyLayer } from './key-layer.js';
import type { CardSecurityCodes } from '../cvc/codes.js';
import { DestinationService } from '../services/forward/destinations.js';
import { ForwardService } from '../services/forward/forward.js';
import { ForwardHistory } from '../services/forward/history.js';

export interface Services {
  processors: ProcessorRegistry;
  revocations: RevocationList;
  transactions: TransactionService;
  release: ReleaseService;
  keyLifecycle: KeyLifecycleService;
  admin: AdminService;
  logRead: LogReadService;
  tiles: TilesService;
  /** Held card security codes (src/cvc/): taken by an authorizing release and by a forward. */
  cardSecurityCodes: CardSecurityCodes;
  destinations: DestinationService;
  forward: ForwardService;
  forwardHistory: ForwardHistory;
}

interface ServicesDeps {
  database: AppDatabase;
  keysDatabase: AppDatabase;
  adminDatabase: AppDatabase;
  appender: Appender;
  kms: KmsBackend;
  dataKeyId: string;
  signingKeyIds: string[];
  dataKeys: DataKeySource;
  macKey: Buffer;
  fingerprintKey: Buffer;
  headKey: Buffer;
  keyLayer: KeyLayer;
  keyEvents: KeyEventLog;
  publishedKeys: PublishedKey[];
  logVerifiers: NoteVerifier[];
  witnessing?: WitnessCosigning;
  /** Held card security codes (src/cvc/); its `take` is the forward's and the release's seam (src/services/forward/cvc-seam.ts). */
  cardSecurityCodes: CardSecurityCodes;
  clock?: () => Date;
}

/** KMS requests so far by operation (the dev key-status report shows them). */
async function kmsCountsOf(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await metrics.kmsRequests.get()).values) {
    const op = String(v.labels.operation);
    out[op] = (out[op] ?? 0) + v.value;
  }
  return out;
}

/** Every service, wired to its dependencies. */
export function createServices(config: Config, d: ServicesDeps, logger: Logger, metrics: Metrics): Services {
  const { database, appender, keyLayer } = d;
  const processors = new ProcessorRegistry(database, d.adminDatabase);
  const revocations = new RevocationList(database);
  const recordKeys = recordKeyringFor({ sealWith: config.keys.mode === 'hierarchical' ? 'epoch' : 'per-transaction', dataKeys: d.dataKeys, epochs: keyLayer.epochs });
  const transactions = new TransactionService({
    database,
    appender,
    recordKeys,
    macKey: d.macKey,
    fingerprintKey: d.fingerprintKey,
    probes: new ProbeLimiter(database, { limit: config.probeLimitPerHour, onRefused: () => metrics.probeRefusals.inc() }),
    logger,
    metrics,
    processors,
    revocations,
    ...(config.keys.mode === 'hierarchical' ? { epochs: keyLayer.epochs } : {}),
    ...(d.clock ? { clock: d.clock } : {}),
    cse: keyLayer.cse,
    cardSecurityCodes: d.cardSecurityCodes,
    proofs: (index) => logRead.servedProof(index),
  });
  const release = new ReleaseService({
    database,
    appender,
    recordKeys,
    transactions,
    processors,
    macKey: d.macKey,
    metrics,
    takeCardSecurityCode: (id) => d.cardSecurityCodes.take(id),
  });
  const keyLifecycle = new KeyLifecycleService({
    database,
    keysDatabase: d.keysDatabase,
    kms: d.kms,
    epochs: keyLayer.epochs,
    keyEvents: d.keyEvents,
    retention: config.keys.retention,
    cseKeys: keyLayer.cseKeys,
    devKms: config.kms.mode === 'local',
    clock: d.clock ?? (() => new Date()),
    serviceKeyIds: [d.dataKeyId, ...d.signingKeyIds],
    logger,
    kmsCounts: () => kmsCountsOf(metrics),
  });
  const admin = new AdminService(processors, revocations, appender);
  const witnessing = d.witnessing;
  const logRead = new LogReadService(database.db, {
    origin: config.logOrigin,
    keys: d.publishedKeys,
    processors,
    headKey: d.headKey,
    ...(witnessing ? { witnessed: () => witnessing.latestWitnessed() } : {}),
  });
  const tiles = new TilesService(database.db, { verifiers: d.logVerifiers, checkpoint: (p) => logRead.checkpoint(p), logger });
  const destinations = new DestinationService({ database, adminDatabase: d.adminDatabase, kms: d.kms, kmsKeyId: d.dataKeyId, admin });
  const forward = new ForwardService({
    database,
    appender,
    recordKeys,
    destinations,
    revocations,
    takeCardSecurityCode: (id) => d.cardSecurityCodes.take(id),
    macKey: d.macKey,
  });
  const forwardHistory = new ForwardHistory({ database, transactions });
  return { processors, revocations, transactions, release, keyLifecycle, admin, logRead, tiles, cardSecurityCodes: d.cardSecurityCodes, destinations, forward, forwardHistory };
}
