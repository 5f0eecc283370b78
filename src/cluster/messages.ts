/**
 * The messages the node:cluster primary and its workers exchange (IPC), in one place. Each
 * carries `paylog: <kind>`; anything else on the channel (prom-client's, node's own) is ignored.
 *
 * Contract: receivers check a message with `isMessage` before reading it; a worker acts on
 * `stop` and `sign-final` only from the primary (the IPC channel is the primary's).
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import type { SigningRefusal } from '../app.js';
import type { AppendOutcome, AppendRequest, CommitInfo } from '../log/append/types.js';

/** Environment the primary hands its workers (internal, not settings). */
export const ENV_WORKER_INDEX = 'PAYLOG_INTERNAL_WORKER_INDEX';
export const ENV_LOCAL_KMS_URL = 'PAYLOG_INTERNAL_LOCAL_KMS_URL';

/** One worker's registry, as prom-client's `getMetricsAsJSON()` gives it. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

export type ClusterMessage =
  /** Worker → primary → worker 0: a batch committed (worker 0 schedules a checkpoint). */
  | { paylog: 'committed' }
  /** Worker 0 → primary → every worker: the signer refuses to sign (or resumed: null). */
  | { paylog: 'signing'; refusal: SigningRefusal | null }
  /** Primary → every worker, whenever a worker starts or stops listening. */
  | { paylog: 'workers'; listening: number; configured: number }
  /** Primary → worker: stop accepting, finish in-flight requests and batches, exit. */
  | { paylog: 'stop' }
  /** Primary → worker 0 (stopping): every other worker has exited; sign the final tree now. */
  | { paylog: 'sign-final' }
  /** Worker → primary: a scrape of /metrics wants the cluster-wide exposition. */
  | { paylog: 'metrics-request'; id: number }
  /** Primary → worker: the answer to its `metrics-request`. */
  | { paylog: 'metrics'; id: number; text: string }
  /** Primary → every worker: send your registry (for the aggregation `id`). */
  | { paylog: 'metrics-collect'; id: number }
  /** Worker → primary: its registry for the aggregation `id`. */
  | { paylog: 'metrics-snapshot'; id: number; metrics: MetricsSnapshot }
  /** Worker → primary: entries for the instance's one integrator (src/cluster/integrator.ts). */
  | { paylog: 'append'; id: number; reqs: AppendRequest[] }
  /**
   * Primary → worker: the outcome of each entry of its `append` message `id`, in order, once
   * settled (committed, or failed); `commits`: batches committed since the last answer (metrics).
   */
  | { paylog: 'appended'; id: number; results: AppendResult[]; commits: CommitInfo[] };

/** One entry's settlement over IPC: its outcome, or the PaylogError it was rejected with. */
export type AppendResult = { ok: AppendOutcome } | { error: { code: string; message: string; details?: Record<string, unknown> } };

/** Narrows an IPC message to one of paylog's kinds (shape of `paylog` only; fields are read with care). */
export function isMessage<K extends ClusterMessage['paylog']>(m: unknown, kind: K): m is Extract<ClusterMessage, { paylog: K }> {
  return typeof m === 'object' && m !== null && (m as { paylog?: unknown }).paylog === kind;
}
