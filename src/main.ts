/**
 * `npm start`: loads settings, starts paylog (embedded PostgreSQL + local KMS by default) and
 * prints ready-to-run curl commands for the dev principals. SIGINT/SIGTERM shut down gracefully.
 *
 * PAYLOG_WORKERS (default: the number of cores) > 1 runs paylog as a node:cluster: the primary
 * owns the embedded PostgreSQL server, the dev-only local KMS endpoint and the dev PKI, and forks
 * that many workers that share the listening port and the one log (appends serialise across
 * processes on the database's advisory lock). The checkpoint signer (and the daily jobs) run in
 * worker 0 only; other workers tell it, through the primary, when they commit a batch.
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { mkdirSync } from 'node:fs';
import { ConfigError, loadConfig, type Config } from './config.js';
import { startPaylog, type SigningRefusal } from './app.js';
import { join } from 'node:path';
import { devWalkthrough, writeExampleTransaction } from './pki/walkthrough.js';
import type { EmbeddedServer } from './db/embedded.js';
import type { LocalKmsEndpoint } from './kms/local/server.js';
import { startEmbeddedDatabase } from './bootstrap/database.js';
import { ensureDevPkiOf, startDevLocalKms } from './bootstrap/dev.js';

/** Environment the primary hands its workers (internal, not settings). */
const ENV_WORKER_INDEX = 'PAYLOG_INTERNAL_WORKER_INDEX';
const ENV_LOCAL_KMS_URL = 'PAYLOG_INTERNAL_LOCAL_KMS_URL';
/** A worker tells worker 0 about its commits at most this often (checkpoint freshness). */
const COMMIT_NOTICE_MIN_MS = 50;
const WORKER_STOP_GRACE_MS = 30_000;

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

/** Worker 0 → primary → every worker: the signer refuses to sign (or resumed: null). */
interface SigningMessage {
  paylog: 'signing';
  refusal: SigningRefusal | null;
}

/** What the primary tells every worker whenever a worker starts or stops listening. */
interface WorkersMessage {
  paylog: 'workers';
  listening: number;
  configured: number;
}

async function runOne(config: Config, worker?: { index: number; localKmsUrl?: string }): Promise<void> {
  // Registered before start-up: the primary's first message follows this worker's `listening`.
  let workersStatus: { listening: number; configured: number } | undefined;
  let signingRefusal: SigningRefusal | null = null;
  if (worker) {
    process.on('message', (m: Partial<WorkersMessage> | Partial<SigningMessage>) => {
      if (m?.paylog === 'workers' && 'listening' in m && typeof m.listening === 'number' && typeof m.configured === 'number') {
        workersStatus = { listening: m.listening, configured: m.configured };
      }
      if (m?.paylog === 'signing' && 'refusal' in m) signingRefusal = m.refusal ?? null;
    });
  }
  let lastNotice = 0;
  const notify =
    worker && worker.index !== 0
      ? () => {
          const t = Date.now();
          if (t - lastNotice >= COMMIT_NOTICE_MIN_MS) {
            lastNotice = t;
            process.send?.({ paylog: 'committed' });
          }
        }
      : undefined;
  const paylog = await startPaylog(config, {
    ...(worker?.localKmsUrl ? { localKmsUrl: worker.localKmsUrl } : {}),
    singletons: !worker || worker.index === 0,
    ...(notify ? { onBatchCommitted: notify } : {}),
    ...(worker ? { workers: () => workersStatus } : {}),
    ...(worker && worker.index === 0 ? { onSigningRefusal: (refusal: SigningRefusal | null) => process.send?.({ paylog: 'signing', refusal } satisfies SigningMessage) } : {}),
    ...(worker && worker.index !== 0 ? { signingRefusal: () => signingRefusal } : {}),
  });
  if (worker?.index === 0) process.on('message', (m: { paylog?: string }) => m?.paylog === 'committed' && paylog.checkpoints.schedule());
  if (!worker || worker.index === 0) {
    paylog.logger.info({ url: paylog.url, kms: config.kms.mode, database: config.databaseUrl ? 'external' : 'embedded', workers: config.workers ?? 1 }, 'paylog listening');
    if (paylog.devPki) {
      const example = writeExampleTransaction(join(config.dataDir, 'examples'));
      process.stdout.write(devWalkthrough(paylog.url, paylog.devPki, paylog.logKeys[0]?.vkey, example));
    }
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    paylog.logger.info({ signal }, 'shutting down: finishing in-flight batches');
    paylog.close().then(
      () => {
        if (!worker) process.stderr.write('paylog: stopped\n');
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function runPrimary(config: Config, workers: number, externalLocalKms?: string): Promise<void> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  let embedded: EmbeddedServer | undefined;
  let local: LocalKmsEndpoint | undefined;
  const env: Record<string, string> = {};
  // The dev bootstrap of src/bootstrap/ (the same steps a single process takes), done once here.
  if (!config.databaseUrl) {
    const started = await startEmbeddedDatabase(config.dataDir);
    embedded = started.server;
    env.DATABASE_URL = started.ownerUrl;
  }
  if (externalLocalKms) {
    env[ENV_LOCAL_KMS_URL] = externalLocalKms;
  } else if (config.kms.mode === 'local') {
    local = await startDevLocalKms(config);
    env[ENV_LOCAL_KMS_URL] = local.url;
  }
  // Written once here, read by every worker.
  if (!config.tls) await ensureDevPkiOf(config);

  const byIndex = new Map<number, Worker>();
  const listening = new Set<number>();
  let stopping = false;
  // /readyz in every worker reports how many workers listen (connections are spread only over
  // workers already listening, so a client that connects earlier stays on the first ones).
  // Worker 0's signer refusal, relayed to every worker (and to workers started later).
  let signing: SigningMessage = { paylog: 'signing', refusal: null };
  const broadcastWorkers = () => {
    const m: WorkersMessage = { paylog: 'workers', listening: listening.size, configured: workers };
    for (const w of byIndex.values()) if (w.isConnected()) w.send(m, () => {});
  };
  const broadcastSigning = () => {
    for (const w of byIndex.values()) if (w.isConnected()) w.send(signing, () => {});
  };
  const fork = (index: number) => {
    const w = cluster.fork({ ...env, [ENV_WORKER_INDEX]: String(index) });
    byIndex.set(index, w);
    w.on('listening', () => {
      listening.add(index);
      broadcastWorkers();
      if (w.isConnected()) w.send(signing, () => {});
    });
    w.on('message', (m: { paylog?: string; refusal?: SigningRefusal | null }) => {
      if (m?.paylog === 'committed') byIndex.get(0)?.send({ paylog: 'committed' });
      if (m?.paylog === 'signing' && index === 0) {
        signing = { paylog: 'signing', refusal: m.refusal ?? null };
        broadcastSigning();
      }
    });
    w.on('exit', (code, signal) => {
      if (byIndex.get(index) === w) {
        byIndex.delete(index);
        listening.delete(index);
        broadcastWorkers();
      }
      if (!stopping) {
        process.stderr.write(`paylog: worker ${index} exited (code ${code}, signal ${signal}); starting it again\n`);
        setTimeout(() => fork(index), 1000).unref();
      } else if (byIndex.size === 0) void finish();
    });
  };
  // Worker 0 first (it applies migrations and signs the first checkpoint), then the others.
  fork(0);
  await new Promise<void>((r) => byIndex.get(0)!.once('listening', () => r()));
  for (let i = 1; i < workers; i++) fork(i);

  let finished: Promise<void> | undefined;
  const finish = () =>
    (finished ??= (async () => {
      await local?.close().catch(() => {});
      await embedded?.stop().catch(() => {});
      process.stderr.write('paylog: stopped\n');
      process.exit(0);
    })());
  const stop = () => {
    if (stopping) return;
    stopping = true;
    for (const w of byIndex.values()) w.process.kill('SIGTERM');
    if (byIndex.size === 0) void finish();
    setTimeout(() => {
      for (const w of byIndex.values()) w.process.kill('SIGKILL');
    }, WORKER_STOP_GRACE_MS).unref();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

async function main(): Promise<void> {
  const config = loadOrExit();
  if (cluster.isWorker) {
    const index = Number(process.env[ENV_WORKER_INDEX] ?? '0');
    const localKmsUrl = process.env[ENV_LOCAL_KMS_URL];
    await runOne(config, { index, ...(localKmsUrl ? { localKmsUrl } : {}) });
    return;
  }
  const workers = config.workers ?? availableParallelism();
  // Dev/bench only: an already running local KMS endpoint (the benchmark counts KMS calls at it).
  const externalLocalKms = config.kms.mode === 'local' ? process.env[ENV_LOCAL_KMS_URL] : undefined;
  if (externalLocalKms !== undefined && !/^http:\/\/(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\]):\d{1,5}$/.test(externalLocalKms)) {
    process.stderr.write(`paylog: ${ENV_LOCAL_KMS_URL} must be a loopback http://127.x.x.x:port URL (dev-only local KMS)\n`);
    process.exit(2);
  }
  if (workers <= 1) await runOne(config, externalLocalKms ? { index: 0, localKmsUrl: externalLocalKms } : undefined);
  else await runPrimary(config, workers, externalLocalKms);
}

main().catch((e: unknown) => {
  const err = e as Error;
  process.stderr.write(`paylog: failed to start: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}\n`);
  process.exit(1);
});
