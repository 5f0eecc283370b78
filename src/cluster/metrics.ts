/**
 * `/metrics` across node:cluster workers: whichever worker takes the scrape asks the primary,
 * which collects every worker's registry over IPC and aggregates them with prom-client's
 * `AggregatorRegistry.aggregate`, each metric by its own `aggregator` (src/metrics.ts: sums for
 * counters and histograms, `max`/`min` for gauges such as the log size). Node's per-process
 * metrics carry a `worker` label and are kept per worker, never summed.
 *
 * Contract: every wait is bounded. The primary waits METRICS_COLLECT_TIMEOUT_MS for the
 * workers; a worker that has not answered by then is represented by its previous snapshot (so
 * cluster-wide counters never step back while it is busy), and an exited worker's snapshot is
 * dropped. A worker waits METRICS_REQUEST_TIMEOUT_MS for the primary, then the scrape fails
 * (503) rather than answering with one process's numbers.
 */
import type { Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { isProcessMetric } from '../metrics.js';
import { isMessage, type ClusterMessage, type MetricsSnapshot } from './messages.js';

/** How long the primary waits for the workers' registries. */
const METRICS_COLLECT_TIMEOUT_MS = 1_500;
/** How long a worker waits for the primary's aggregate (longer than the collection). */
const METRICS_REQUEST_TIMEOUT_MS = 3_000;

/** The scrape could not be answered cluster-wide in time (the route answers 503). */
class ClusterMetricsUnavailable extends Error {
  override readonly name = 'ClusterMetricsUnavailable';
}

/** Prometheus text of the cluster: one aggregate over the workers' snapshots. */
async function aggregateSnapshots(snapshots: readonly MetricsSnapshot[]): Promise<string> {
  // Per-process metrics differ in their `worker` label, so `first` keeps each process's value
  // (prom-client's own choices for them, e.g. `omit` for the start time, would drop them).
  const kept = snapshots.map((s) => s.map((m) => (isProcessMetric(m.name) ? { ...m, aggregator: 'first' as const } : m)));
  return await AggregatorRegistry.aggregate(kept).metrics();
}

/** Primary side: collects every worker's registry and aggregates them. */
export class ClusterMetrics {
  private readonly last = new Map<number, MetricsSnapshot>();
  private readonly pending = new Map<number, { waiting: Set<number>; done: () => void }>();
  private nextId = 0;

  constructor(private readonly workers: () => ReadonlyMap<number, Worker>) {}

  /** A worker's answer to a collection. */
  snapshot(index: number, id: number, metrics: MetricsSnapshot): void {
    this.last.set(index, metrics);
    this.settle(id, index);
  }

  /** Worker `index` exited: its numbers leave the aggregate, and no collection waits for it. */
  forget(index: number): void {
    this.last.delete(index);
    for (const id of [...this.pending.keys()]) this.settle(id, index);
  }

  /** The cluster-wide exposition (within METRICS_COLLECT_TIMEOUT_MS plus the aggregation). */
  async exposition(): Promise<string> {
    const id = this.nextId++;
    const waiting = new Set<number>();
    const collect: ClusterMessage = { paylog: 'metrics-collect', id };
    for (const [index, w] of this.workers()) {
      if (!w.isConnected()) continue;
      waiting.add(index);
      w.send(collect, () => {});
    }
    if (waiting.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, METRICS_COLLECT_TIMEOUT_MS);
        this.pending.set(id, { waiting, done: () => (clearTimeout(timer), resolve()) });
      });
    }
    this.pending.delete(id);
    return await aggregateSnapshots([...this.last.values()]);
  }

  private settle(id: number, index: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    p.waiting.delete(index);
    if (p.waiting.size === 0) p.done();
  }
}

/**
 * Worker side: answers the primary's collections from `registry`, and returns what the /metrics
 * route calls to get the cluster-wide exposition from the primary.
 */
export function clusterExposition(registry: Registry): () => Promise<string> {
  const waiting = new Map<number, (text: string) => void>();
  let nextId = 0;
  process.on('message', (m: unknown) => {
    if (isMessage(m, 'metrics-collect')) {
      void registry.getMetricsAsJSON().then(
        (metrics) => process.send?.({ paylog: 'metrics-snapshot', id: m.id, metrics } satisfies ClusterMessage, undefined, {}, () => {}),
        () => {}, // an unreadable registry: the primary uses this worker's previous snapshot
      );
    }
    if (isMessage(m, 'metrics')) waiting.get(m.id)?.(m.text);
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new ClusterMetricsUnavailable(`the primary did not answer within ${METRICS_REQUEST_TIMEOUT_MS} ms`));
      }, METRICS_REQUEST_TIMEOUT_MS);
      waiting.set(id, (text) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(text);
      });
      process.send?.({ paylog: 'metrics-request', id } satisfies ClusterMessage, undefined, {}, () => {});
    });
}
