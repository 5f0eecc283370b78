/**
 * The instance's one integrator, in the node:cluster primary: every worker's entries
 * (src/cluster/remote-appender.ts) go into one append queue (src/log/appender.ts), so batches
 * of the workers never contend for the append lock, and the lock — still taken, against other
 * instances on the same database — is held by a process whose event loop does nothing else.
 *
 * Contract:
 * - Each `append` message is answered by one `appended` message to the worker that sent it,
 *   once every entry of it has settled (committed, or failed): its outcome, or its PaylogError
 *   (code, message, details; any other error becomes LOG_UNAVAILABLE, the entry not known to be
 *   durable). A refused precondition refuses only that entry.
 * - A worker that exits before its answer loses nothing acknowledged: its entries still commit
 *   (or fail) as they would have, and are simply not answered.
 * - Each committed batch is reported exactly once, in the next answer sent (the worker records
 *   the batch metrics and tells the signer); a report whose worker is gone goes with the next.
 */
import { isPaylogError } from '../errors.js';
import type { Appender, AppendRequest, CommitInfo } from '../log/append/types.js';
import type { AppendResult, ClusterMessage } from './messages.js';

function resultOf(s: PromiseSettledResult<Awaited<ReturnType<Appender['append']>>>): AppendResult {
  if (s.status === 'fulfilled') return { ok: s.value };
  const e: unknown = s.reason;
  if (isPaylogError(e)) return { error: { code: e.code, message: e.message, ...(e.details ? { details: e.details } : {}) } };
  return { error: { code: 'LOG_UNAVAILABLE', message: 'the log could not make the entry durable' } };
}

/** Where an answer goes: the worker that sent the entries (node:cluster `Worker`, or a test's channel). */
export interface WorkerChannel {
  isConnected(): boolean;
  send(m: ClusterMessage, done: (e: Error | null) => void): unknown;
}

export class ClusterIntegrator {
  private commits: CommitInfo[] = [];

  constructor(private readonly appender: Appender) {}

  /** To be given as the appender's `onCommit`. */
  readonly committed = (info: CommitInfo): void => {
    this.commits.push(info);
  };

  /** A worker's `append` message: queues its entries, answers once all have settled. */
  handle(w: WorkerChannel, id: number, reqs: readonly AppendRequest[]): void {
    void Promise.allSettled(reqs.map((r) => this.appender.append(r))).then((settled) => {
      const commits = this.commits;
      this.commits = [];
      const answer: ClusterMessage = { paylog: 'appended', id, results: settled.map(resultOf), commits };
      if (!w.isConnected()) {
        this.commits.unshift(...commits);
        return;
      }
      w.send(answer, () => {});
    });
  }
}
