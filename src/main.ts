/**
 * The service's entrypoint: `npm start` runs it with tsx (`node --import tsx src/main.ts`),
 * `node dist/main.js` runs the build (`npm run build`; what systemd and the container recipe in
 * docs/deploy/ run). Loads settings, starts paylog (embedded PostgreSQL + local KMS by default)
 * and prints ready-to-run curl commands for the dev principals.
 *
 * PAYLOG_WORKERS (default: the number of cores) > 1 runs paylog as a node:cluster: the primary
 * (src/cluster/primary.ts) owns the embedded PostgreSQL server, the dev-only local KMS endpoint
 * and the dev PKI, and forks that many workers that share the listening port and the one log.
 * Each worker batches its own log entries (appends serialise across processes on the
 * database's advisory lock), or, with PAYLOG_CLUSTER_APPENDS=primary, hands them to the
 * primary's one integrator (src/cluster/remote-appender.ts → src/cluster/integrator.ts), which
 * batches them all; the lock then serialises only the batches of different instances. The checkpoint signer
 * (and the daily jobs) run in worker 0 only; other workers tell it, through the primary, when
 * they commit a batch.
 *
 * Stopping: SIGTERM or SIGINT to the one process started (the primary, or the single process)
 * stops accepting, finishes in-flight requests, forwards and batches, signs the final checkpoint,
 * stops the workers and the embedded PostgreSQL, and exits 0 — within SHUTDOWN_BUDGET_MS, past
 * which it exits 1. Cluster workers ignore signals: they stop when the primary says so.
 */
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startPaylog, type Paylog, type SigningRefusal } from './app.js';
import { devWalkthrough, writeExampleTransaction } from './pki/walkthrough.js';
import { ENV_LOCAL_KMS_URL, ENV_WORKER_INDEX, isMessage, type ClusterMessage } from './cluster/messages.js';
import { clusterExposition } from './cluster/metrics.js';
import { runPrimary, SHUTDOWN_BUDGET_MS } from './cluster/primary.js';
import { RemoteAppender } from './cluster/remote-appender.js';
import type { CommitInfo } from './log/append/types.js';

/** A worker tells worker 0 about its commits at most this often (checkpoint freshness). */
const COMMIT_NOTICE_MIN_MS = 50;
/** The signer (worker 0) waits at most this long for the primary's `sign-final` when stopping. */
const SIGN_FINAL_WAIT_MS = 15_000;

function loadOrExit(): Config {
  try {
    return loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`paylog: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
}

/** Resolves on the first message of `kind` from the primary, on disconnect, or after `ms`. */
function primarySays(kind: ClusterMessage['paylog'], ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.off('message', onMessage);
      process.off('disconnect', done);
      resolve();
    };
    const onMessage = (m: unknown) => isMessage(m, kind) && done();
    const timer = setTimeout(done, ms);
    process.on('message', onMessage);
    process.once('disconnect', done);
  });
}

/** Past SHUTDOWN_BUDGET_MS from now, the process exits 1 whatever is still running. */
let budgetArmed = false;
function armShutdownBudget(): void {
  if (budgetArmed) return;
  budgetArmed = true;
  setTimeout(() => {
    process.stderr.write(`paylog: not stopped within ${SHUTDOWN_BUDGET_MS} ms; exiting\n`);
    process.exit(1);
  }, SHUTDOWN_BUDGET_MS).unref();
}

/** The process's stop: on the primary's `stop` (worker), or on SIGTERM/SIGINT (single process). */
function stopOn(worker: { index: number } | undefined, stop: (reason: string) => void): void {
  if (worker) {
    // The primary orders the stop (a terminal's Ctrl-C reaches the whole process group).
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
    process.on('message', (m: unknown) => isMessage(m, 'stop') && stop('primary'));
    return;
  }
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** The single process, or one cluster worker (`worker`); `localKmsUrl`: a dev-only local KMS already running. */
async function runOne(config: Config, localKmsUrl: string | undefined, worker?: { index: number }): Promise<void> {
  // Stop orders are taken before start-up: one that arrives meanwhile is carried out once started.
  // A single process bounds its own stop from the first order (the cluster primary bounds its workers).
  let stopReason: string | undefined;
  let stop: (reason: string) => void = (reason) => (stopReason ??= reason);
  stopOn(worker, (reason) => {
    if (!worker) armShutdownBudget();
    stop(reason);
  });
  // Registered before start-up: the primary's first message follows this worker's `listening`.
  let workersStatus: { listening: number; configured: number } | undefined;
  let signingRefusal: SigningRefusal | null = null;
  if (worker) {
    process.on('message', (m: unknown) => {
      if (isMessage(m, 'workers') && typeof m.listening === 'number' && typeof m.configured === 'number') {
        workersStatus = { listening: m.listening, configured: m.configured };
      }
      if (isMessage(m, 'signing')) signingRefusal = m.refusal ?? null;
    });
  }
  let lastNotice = 0;
  const notify =
    worker && worker.index !== 0
      ? () => {
          const t = Date.now();
          if (t - lastNotice >= COMMIT_NOTICE_MIN_MS) {
            lastNotice = t;
            process.send?.({ paylog: 'committed' } satisfies ClusterMessage);
          }
        }
      : undefined;
  const paylog = await startPaylog(config, {
    ...(localKmsUrl ? { localKmsUrl } : {}),
    singletons: !worker || worker.index === 0,
    ...(notify ? { onBatchCommitted: notify } : {}),
    ...(worker ? { workers: () => workersStatus, worker: worker.index, metricsExposition: clusterExposition } : {}),
    ...(worker && config.clusterAppends === 'primary' ? { appendVia: (onCommit: (info: CommitInfo) => void) => new RemoteAppender({ onCommit }) } : {}),
    ...(worker && worker.index === 0
      ? { onSigningRefusal: (refusal: SigningRefusal | null) => process.send?.({ paylog: 'signing', refusal } satisfies ClusterMessage) }
      : {}),
    ...(worker && worker.index !== 0 ? { signingRefusal: () => signingRefusal } : {}),
  });
  if (worker?.index === 0) process.on('message', (m: unknown) => isMessage(m, 'committed') && paylog.checkpoints.schedule());
  if (!worker || worker.index === 0) {
    paylog.logger.info({ url: paylog.url, kms: config.kms.mode, database: config.databaseUrl ? 'external' : 'embedded', workers: config.workers ?? 1 }, 'paylog listening');
    if (paylog.devPki) {
      const example = writeExampleTransaction(join(config.dataDir, 'examples'));
      process.stdout.write(devWalkthrough(paylog.url, paylog.devPki, paylog.logKeys[0]?.vkey, example));
    }
  }
  let stopping = false;
  stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    paylog.logger.info({ reason }, 'shutting down: finishing in-flight requests and batches');
    closeAndExit(paylog, worker);
  };
  if (stopReason) stop(stopReason);
}

/** Closes paylog (worker 0 signs the final tree only once the primary says every other worker is gone). */
function closeAndExit(paylog: Paylog, worker: { index: number } | undefined): void {
  const beforeFinalCheckpoint = worker?.index === 0 ? () => primarySays('sign-final', SIGN_FINAL_WAIT_MS) : undefined;
  paylog.close(beforeFinalCheckpoint ? { beforeFinalCheckpoint } : {}).then(
    () => {
      if (!worker) process.stderr.write('paylog: stopped\n');
      process.exit(0);
    },
    () => process.exit(1),
  );
}

async function main(): Promise<void> {
  const config = loadOrExit();
  if (cluster.isWorker) {
    const index = Number(process.env[ENV_WORKER_INDEX] ?? '0');
    await runOne(config, process.env[ENV_LOCAL_KMS_URL], { index });
    return;
  }
  const workers = config.workers ?? availableParallelism();
  // Dev/bench only: an already running local KMS endpoint (the benchmark counts KMS calls at it).
  const externalLocalKms = config.kms.mode === 'local' ? process.env[ENV_LOCAL_KMS_URL] : undefined;
  if (externalLocalKms !== undefined && !/^http:\/\/(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):\d{1,5}$/.test(externalLocalKms)) {
    process.stderr.write(`paylog: ${ENV_LOCAL_KMS_URL} must be a loopback http://127.x.x.x:port URL (dev-only local KMS)\n`);
    process.exit(2);
  }
  if (workers <= 1) await runOne(config, externalLocalKms);
  else await runPrimary(config, workers, externalLocalKms);
}

main().catch((e: unknown) => {
  const err = e as Error;
  process.stderr.write(`paylog: failed to start: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}\n`);
  process.exit(1);
});
