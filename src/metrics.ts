/**
 * Prometheus metrics (prom-client), one registry per service instance. No card data in labels.
 *
 * Under node:cluster (src/cluster/metrics.ts) the workers' registries are aggregated per metric
 * by each metric's `aggregator`: counters and histograms are summed (prom-client's default);
 * gauges say how (`max` for sizes, lags and "refusing", `min` where any process at 0 matters).
 * Node's per-process metrics are labelled `worker` instead and kept per process.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  batchSize: Histogram;
  batchDuration: Histogram;
  logSize: Gauge;
  releases: Counter<'outcome'>;
  /** KMS requests by operation (GenerateDataKey, Decrypt, Encrypt, ...) and outcome (ok, error name). */
  kmsRequests: Counter<'operation' | 'outcome'>;
  /** Epoch private-key cache lookups on the release path. */
  epochCacheHits: Counter;
  epochCacheMisses: Counter;
  /** Database rows the service refused to use because they fail authentication (planted behind its back), by table. */
  untrustedRows: Counter<'table'>;
  kmsDuration: Histogram<'operation'>;
  checkpointSize: Gauge;
  /** Submissions refused by the probe limit (issue 17; src/services/probe-limit.ts). */
  probeRefusals: Counter;
  /** Replays of a transactionId whose served fields differ (409 IDEMPOTENCY_CONFLICT). */
  idempotencyConflicts: Counter;
  /** When this instance last signed (or found current) the checkpoint covering the log; ms epoch. */
  checkpointSignedAt: { value: number | undefined };
  /** Publications refused because the stored tree does not extend the last signed checkpoint. */
  checkpointRefused: Counter<'reason'>;
  /** 1 while this instance refuses to sign (until a publication succeeds again), else 0. */
  checkpointRefusing: Gauge;
}

/** Prefix of Node's default process metrics (`paylog_process_cpu_seconds_total`, `paylog_nodejs_…`). */
const DEFAULT_METRICS_PREFIX = 'paylog_';
/** Label of Node's per-process metrics in a cluster worker (its index; `npm start` with PAYLOG_WORKERS > 1). */
const WORKER_LABEL = 'worker';

/** Whether `name` is one of Node's per-process metrics (prom-client defaults, labelled by worker). */
export function isProcessMetric(name: string): boolean {
  return name.startsWith(`${DEFAULT_METRICS_PREFIX}process_`) || name.startsWith(`${DEFAULT_METRICS_PREFIX}nodejs_`);
}

/** `worker`: this process's index in the cluster (its process metrics are labelled with it). */
export function createMetrics(opts: { worker?: number } = {}): Metrics {
  const registry = new Registry();
  const labels = opts.worker === undefined ? {} : { labels: { [WORKER_LABEL]: String(opts.worker) } };
  collectDefaultMetrics({ register: registry, prefix: DEFAULT_METRICS_PREFIX, ...labels });
  const checkpointSignedAt: { value: number | undefined } = { value: undefined };
  new Gauge({
    name: 'paylog_checkpoint_age_seconds',
    help: 'Seconds since this instance last signed, or found current, the checkpoint that covers the log (absent before the first)',
    registers: [registry],
    aggregator: 'max', // only the signing process reports it
    collect() {
      if (checkpointSignedAt.value === undefined) this.reset();
      else this.set((Date.now() - checkpointSignedAt.value) / 1000);
    },
  });
  return {
    checkpointSignedAt,
    probeRefusals: new Counter({
      name: 'paylog_probe_limit_refusals_total',
      help: 'Submissions refused (429 PROBE_LIMIT_EXCEEDED): more new transactions with the same served payment details from one principal in an hour than the probe limit allows',
      registers: [registry],
    }),
    idempotencyConflicts: new Counter({
      name: 'paylog_idempotency_conflicts_total',
      help: 'Replays of a transactionId that differ in a served field (409 IDEMPOTENCY_CONFLICT)',
      registers: [registry],
    }),
    checkpointRefused: new Counter({
      name: 'paylog_checkpoint_refused_total',
      help: 'Checkpoint publications refused by reason: behind (tree smaller than the last signed checkpoint), inconsistent (no consistency proof), witness (a witness has cosigned a different history), state_file (the signer state file does not verify)',
      labelNames: ['reason'],
      registers: [registry],
    }),
    checkpointRefusing: new Gauge({
      name: 'paylog_checkpoint_refusing',
      help: '1 while the signer refuses to sign the stored tree (see paylog_checkpoint_refused_total), else 0',
      registers: [registry],
      aggregator: 'max',
    }),
    checkpointSize: new Gauge({ name: 'paylog_checkpoint_size', help: 'Tree size of the latest checkpoint this instance signed or found current', registers: [registry], aggregator: 'max' }),
    kmsDuration: new Histogram({
      name: 'paylog_kms_request_duration_seconds',
      help: 'KMS request latency by operation (retries included), successful or not',
      labelNames: ['operation'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    registry,
    httpRequests: new Counter({
      name: 'paylog_http_requests_total',
      help: 'HTTP requests by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'paylog_http_request_duration_seconds',
      help: 'HTTP request latency by route pattern',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'paylog_log_batch_size',
      help: 'Entries per group-committed batch',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
      registers: [registry],
    }),
    batchDuration: new Histogram({
      name: 'paylog_log_batch_commit_seconds',
      help: 'Time to commit one batch',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry],
    }),
    // Every worker sees the one log; the largest size any has seen is the log's.
    logSize: new Gauge({ name: 'paylog_log_size', help: 'Entries in the log (tree size)', registers: [registry], aggregator: 'max' }),
    releases: new Counter({
      name: 'paylog_releases_total',
      help: 'Release attempts by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    kmsRequests: new Counter({
      name: 'paylog_kms_requests_total',
      help: 'KMS requests by operation and outcome (ok, or the KMS error name)',
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    }),
    epochCacheHits: new Counter({
      name: 'paylog_epoch_key_cache_hits_total',
      help: 'Epoch private-key cache hits (releases served without a KMS call)',
      registers: [registry],
    }),
    epochCacheMisses: new Counter({
      name: 'paylog_epoch_key_cache_misses_total',
      help: 'Epoch private-key cache misses (single-flight: one KMS Decrypt per miss, however many waiters)',
      registers: [registry],
    }),
    untrustedRows: new Counter({
      name: 'paylog_untrusted_rows_total',
      help: 'Rows the runtime role could have planted that failed authentication and were not used (counted once per row per process), by table',
      labelNames: ['table'],
      registers: [registry],
    }),
  };
}
