/**
 * Start-up step "readiness": what /readyz answers — the bounded, cached database and KMS checks
 * (src/readiness.ts) plus witnessing, workers and the signer's refusal.
 *
 * Contract: witnessing is reported, never required (third parties being slow must not stop
 * appends); a signer that refuses to sign the stored tree MUST make every worker not ready.
 */
import type { AppDatabase } from '../db/connection.js';
import type { KmsBackend } from '../kms/backend.js';
import type { Refusal } from '../log/checkpoint-publisher.js';
import type { WitnessCosigning } from '../log/witness/submitter.js';
import { createReadiness, type ReadinessReport } from '../readiness.js';

interface ReadinessDeps {
  /** The runtime pool. */
  database: AppDatabase;
  kms: KmsBackend;
  dataKeyId: string;
  witnessing?: WitnessCosigning;
  workers?: () => { listening: number; configured: number } | undefined;
  /** The signer's refusal (this process's publisher, or worker 0's as last reported). */
  signing: () => (Refusal & { since: string }) | null | undefined;
}

/** /readyz: the cached checks, failed while signing is refused, with the details that apply. */
export function readinessCheck(deps: ReadinessDeps): () => Promise<ReadinessReport & { details?: Record<string, unknown> }> {
  const checkReadiness = createReadiness({
    database: () => deps.database.pool.query('SELECT 1'),
    kms: (signal) => deps.kms.ping(deps.dataKeyId, signal),
  });
  return async () => {
    const report = await checkReadiness();
    const workers = deps.workers?.();
    const signing = deps.signing() ?? null;
    const details = { ...(deps.witnessing ? { witnesses: deps.witnessing.status() } : {}), ...(workers ? { workers } : {}), ...(signing ? { signing: { refused: true, ...signing } } : {}) };
    const r = signing ? { ...report, ok: false } : report;
    return Object.keys(details).length > 0 ? { ...r, details } : r;
  };
}
