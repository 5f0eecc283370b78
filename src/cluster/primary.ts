/**
 * The node:cluster primary (PAYLOG_WORKERS > 1): owns the embedded PostgreSQL server, the
 * dev-only local KMS endpoint and the dev PKI, runs the instance's one integrator with
 * PAYLOG_CLUSTER_APPENDS=primary (every worker's log entries are batched here:
 * src/cluster/integrator.ts), forks the workers (which
 * share the listening port and the one log), relays their messages, and answers /metrics for
 * the whole cluster (src/cluster/metrics.ts). With the integrator, IPC uses the 'advanced'
 * (structured clone) serialization, so entries and outcomes keep their Buffers and Dates.
 *
 * Stopping, on SIGTERM or SIGINT sent to this process alone (the workers ignore signals and
 * take the order from the primary, so a terminal's Ctrl-C to the whole group stops the same way):
 *  1. every worker is told `stop`: it stops accepting, finishes in-flight requests, forwards
 *     and batches, and exits;
 *  2. once every worker but worker 0 has exited (killed at OTHERS_STOP_MS if not), worker 0,
 *     the signer, is told `sign-final`: it signs the final tree — which now covers every batch
 *     any worker committed — and exits (killed at SIGNER_STOP_MS if not);
 *  3. the integrator (if any) finishes its queued batches and closes; the local KMS endpoint and the
 *     embedded PostgreSQL server are stopped;
 *  4. the primary exits 0, or 1 if anything had to be killed; never later than SHUTDOWN_BUDGET_MS.
 */
import cluster, { type Worker } from 'node:cluster';
import { mkdirSync } from 'node:fs';
import type { Config } from '../config.js';
import type { SigningRefusal } from '../app.js';
import type { EmbeddedServer } from '../db/embedded.js';
import type { LocalKmsEndpoint } from '../kms/local/server.js';
import { clusterLocationNotice, startEmbeddedDatabase } from '../bootstrap/database.js';
import { ensureDevPkiOf, startDevLocalKms } from '../bootstrap/dev.js';
import { ENV_LOCAL_KMS_URL, ENV_WORKER_INDEX, isMessage, type ClusterMessage } from './messages.js';
import { ClusterMetrics } from './metrics.js';
import { ClusterIntegrator } from './integrator.js';
import { openIntegratorAppender, type IntegratorAppender } from '../bootstrap/integrator.js';

/** Whole stop, signal to exit; past it the primary exits 1 whatever is still running. */
export const SHUTDOWN_BUDGET_MS = 28_000;
/** Workers other than the signer must have exited this long after the signal (else killed). */
const OTHERS_STOP_MS = 12_000;
/** The signer must have signed the final tree and exited this long after the signal (else killed). */
const SIGNER_STOP_MS = 20_000;
/** A worker that exits unexpectedly is started again after this pause. */
const RESTART_DELAY_MS = 1_000;

/** Resolves when `w` has exited (true), or after `ms` (false: it had not). */
function exited(w: Worker, ms: number): Promise<boolean> {
  if (w.isDead()) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), Math.max(0, ms));
    w.once('exit', () => (clearTimeout(timer), resolve(true)));
  });
}

export async function runPrimary(config: Config, workers: number, externalLocalKms?: string): Promise<void> {
  // Signals are taken from the first moment: one arriving during start-up stops the cluster as
  // soon as the start-up step in progress returns (the budget counts from the signal).
  let stopAt = 0;
  const stopSignal = new Promise<string>((resolve) => {
    const onSignal = (signal: string) => {
      if (stopAt !== 0) return;
      stopAt = Date.now();
      setTimeout(() => {
        process.stderr.write(`paylog: not stopped within ${SHUTDOWN_BUDGET_MS} ms; exiting\n`);
        process.exit(1);
      }, SHUTDOWN_BUDGET_MS).unref();
      resolve(signal);
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
  const left = (deadline: number) => deadline - (Date.now() - stopAt);

  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  let embedded: EmbeddedServer | undefined;
  let local: LocalKmsEndpoint | undefined;
  const env: Record<string, string> = {};
  // The dev bootstrap of src/bootstrap/ (the same steps a single process takes), done once here.
  if (!config.databaseUrl) {
    const started = await startEmbeddedDatabase(config.dataDir);
    embedded = started.server;
    env.DATABASE_URL = started.ownerUrl;
    const notice = clusterLocationNotice(started.server);
    if (notice) process.stderr.write(`paylog: ${notice}\n`);
  }
  if (externalLocalKms) {
    env[ENV_LOCAL_KMS_URL] = externalLocalKms;
  } else if (config.kms.mode === 'local') {
    local = await startDevLocalKms(config);
    env[ENV_LOCAL_KMS_URL] = local.url;
  }
  // Written once here, read by every worker.
  if (!config.tls) await ensureDevPkiOf(config);
  // PAYLOG_CLUSTER_APPENDS=primary: the one integrator, before any worker (it migrates and
  // creates the service keys on a first start).
  let integrator: ClusterIntegrator | undefined;
  let integrating: IntegratorAppender | undefined;
  if (config.clusterAppends === 'primary') {
    try {
      integrating = await openIntegratorAppender(config, env.DATABASE_URL, env[ENV_LOCAL_KMS_URL], (info) => integrator?.committed(info));
    } catch (e) {
      await local?.close().catch(() => {});
      await embedded?.stop().catch(() => {});
      throw e;
    }
    integrator = new ClusterIntegrator(integrating.appender);
    cluster.setupPrimary({ serialization: 'advanced' });
  }

  const byIndex = new Map<number, Worker>();
  const listening = new Set<number>();
  const metrics = new ClusterMetrics(() => byIndex);
  let stopping = false;
  // /readyz in every worker reports how many workers listen (connections are spread only over
  // workers already listening, so a client that connects earlier stays on the first ones).
  // Worker 0's signer refusal, relayed to every worker (and to workers started later).
  let signing: ClusterMessage = { paylog: 'signing', refusal: null };
  const send = (w: Worker | undefined, m: ClusterMessage) => {
    if (w?.isConnected()) w.send(m, () => {});
  };
  const broadcast = (m: ClusterMessage) => {
    for (const w of byIndex.values()) send(w, m);
  };
  const broadcastWorkers = () => broadcast({ paylog: 'workers', listening: listening.size, configured: workers });
  const fork = (index: number) => {
    if (stopping) return; // a restart timer that fires during the stop
    const w = cluster.fork({ ...env, [ENV_WORKER_INDEX]: String(index) });
    byIndex.set(index, w);
    w.on('listening', () => {
      listening.add(index);
      broadcastWorkers();
      send(w, signing);
    });
    w.on('message', (m: unknown) => {
      if (isMessage(m, 'append') && Array.isArray(m.reqs)) integrator?.handle(w, m.id, m.reqs);
      if (isMessage(m, 'committed')) send(byIndex.get(0), { paylog: 'committed' });
      if (isMessage(m, 'signing') && index === 0) {
        signing = { paylog: 'signing', refusal: (m.refusal ?? null) as SigningRefusal | null };
        broadcast(signing);
      }
      if (isMessage(m, 'metrics-snapshot')) metrics.snapshot(index, m.id, m.metrics);
      if (isMessage(m, 'metrics-request')) {
        const id = m.id;
        void metrics.exposition().then(
          (text) => send(w, { paylog: 'metrics', id, text }),
          () => {}, // the worker's own bound answers the scrape with 503
        );
      }
    });
    w.on('exit', (code, signal) => {
      if (byIndex.get(index) === w) {
        byIndex.delete(index);
        listening.delete(index);
        metrics.forget(index);
        broadcastWorkers();
      }
      if (!stopping) {
        process.stderr.write(`paylog: worker ${index} exited (code ${code}, signal ${signal}); starting it again\n`);
        setTimeout(() => fork(index), RESTART_DELAY_MS).unref();
      }
    });
  };

  /** Steps 1–4 of the file comment. */
  const shutDown = async (signal: string): Promise<never> => {
    stopping = true;
    process.stderr.write(`paylog: ${signal}: stopping (finishing in-flight requests and batches, then the final checkpoint)\n`);
    let clean = true;
    broadcast({ paylog: 'stop' });
    for (const [index, w] of [...byIndex.entries()].filter(([i]) => i !== 0)) {
      if (!(await exited(w, left(OTHERS_STOP_MS)))) {
        process.stderr.write(`paylog: worker ${index} did not stop in time; killing it\n`);
        w.process.kill('SIGKILL');
        clean = false;
      }
    }
    const signer = byIndex.get(0);
    if (signer) {
      send(signer, { paylog: 'sign-final' });
      if (!(await exited(signer, left(SIGNER_STOP_MS)))) {
        process.stderr.write('paylog: worker 0 (the signer) did not stop in time; killing it\n');
        signer.process.kill('SIGKILL');
        clean = false;
      }
    }
    await integrating?.close().catch(() => {
      clean = false;
    });
    await local?.close().catch(() => {});
    await embedded?.stop().catch(() => {
      clean = false;
    });
    process.stderr.write('paylog: stopped\n');
    process.exit(clean ? 0 : 1);
  };

  // Worker 0 first (it applies migrations and signs the first checkpoint), then the others.
  if (stopAt === 0) {
    fork(0);
    const first = new Promise<void>((r) => byIndex.get(0)!.once('listening', () => r()));
    await Promise.race([first, stopSignal]);
    if (stopAt === 0) for (let i = 1; i < workers; i++) fork(i);
  }
  void stopSignal.then(shutDown);
}
