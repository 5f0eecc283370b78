/**
 * The route table: every route paylog serves is registered here, in this order (the order of
 * the OpenAPI document), and nowhere else.
 *
 * Contract: a route module only translates HTTP to one service; it MUST be listed in ROUTE_TABLE
 * to be served. This module MUST NOT add hooks or authenticate (src/api/server.ts does, for
 * every route in the table alike).
 */
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../../metrics.js';
import type { TransactionService } from '../../services/transactions.js';
import type { ReleaseService } from '../../services/release.js';
import type { AdminService } from '../../services/admin.js';
import type { KeyLifecycleService } from '../../services/key-lifecycle.js';
import type { LogReadService } from '../../services/log-read.js';
import type { TilesService } from '../../services/tiles.js';
import type { CseKeyStore } from '../../cse/keys.js';
import type { ForwardService } from '../../services/forward/forward.js';
import type { ForwardHistory } from '../../services/forward/history.js';
import type { DestinationService } from '../../services/forward/destinations.js';
import { registerOpsRoutes } from './ops.js';
import { registerTransactionRoutes } from './transactions.js';
import { registerReleaseRoutes } from './release.js';
import { registerAdminRoutes } from './admin.js';
import { registerKeyRoutes } from './keys.js';
import { registerLogRoutes, registerTileRoutes } from './log.js';
import { registerCseRoutes } from './cse.js';
import { registerForwardRoutes } from './forward.js';

/** What the routes need: one service per route module, plus the operational checks. */
export interface RouteDeps {
  metrics: Metrics;
  /** The cluster-wide /metrics text (node:cluster worker); default: this process's registry. */
  metricsExposition?: () => Promise<string>;
  readiness: () => Promise<{ ok: boolean; checks: Record<string, boolean>; details?: Record<string, unknown> }>;
  transactions: TransactionService;
  release: ReleaseService;
  releaseRatePerMinute: number;
  admin: AdminService;
  keys: KeyLifecycleService;
  log: LogReadService;
  tiles: TilesService;
  cseKeys: CseKeyStore;
  forward: ForwardService;
  forwardHistory: ForwardHistory;
  destinations: DestinationService;
}

/** Every route module, in registration order. */
const ROUTE_TABLE: ReadonlyArray<(app: FastifyInstance, deps: RouteDeps) => void> = [
  (app, d) => registerOpsRoutes(app, { metrics: d.metrics, ...(d.metricsExposition ? { exposition: d.metricsExposition } : {}), readiness: d.readiness, routes: app.paylogRoutes }),
  (app, d) => registerTransactionRoutes(app, { transactions: d.transactions }),
  (app, d) => registerReleaseRoutes(app, { release: d.release, releaseRatePerMinute: d.releaseRatePerMinute }),
  (app, d) => registerAdminRoutes(app, { admin: d.admin }),
  (app, d) => registerKeyRoutes(app, { keys: d.keys }),
  (app, d) => registerLogRoutes(app, { log: d.log }),
  (app, d) => registerTileRoutes(app, { tiles: d.tiles }),
  (app, d) => registerCseRoutes(app, { cseKeys: d.cseKeys }),
  (app, d) => registerForwardRoutes(app, { forward: d.forward, history: d.forwardHistory, destinations: d.destinations }),
];

/** Registers every route of ROUTE_TABLE on `app` (pass as `routes` to buildServer). */
export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  for (const register of ROUTE_TABLE) register(app, deps);
}
