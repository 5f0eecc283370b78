/**
 * A cluster worker's append path: its entries go to the instance's one integrator in the
 * primary (src/cluster/integrator.ts) over the IPC channel, several per message, and each is
 * answered once the batch holding it has committed there.
 *
 * Why: with one appender per worker, the workers' batches contend for the append lock, and a
 * batch holds it across event-loop turns of a busy worker (TLS, parsing, encryption) while the
 * other worker's batch waits. The primary's event loop does nothing else, so the lock is held
 * only as long as the database needs it, and only between instances.
 *
 * Contract (that of `Appender`, src/log/append/types.ts):
 * - `append()` resolves only after the integrator's batch holding the entry has COMMITTED, with
 *   its outcome; it rejects with the integrator's PaylogError (a refused precondition rejects or
 *   refuses only that entry), or LOG_UNAVAILABLE when the entry is not known to be durable.
 * - Every wait is bounded: an entry not answered within REMOTE_APPEND_WAIT_MS, or still
 *   unanswered when the channel to the primary closes, is rejected (LOG_UNAVAILABLE; it may
 *   still commit: a retry of the submission is answered by idempotency).
 * - Entries appended in one turn of the event loop travel in one message (fewer serialisations).
 *   An entry crosses by value: a leaf it would make on demand (an access entry's `otherwise`
 *   function) is made before it is queued, or the message could not be cloned.
 * - Bounded: beyond MAX_OUTSTANDING_ENTRIES unanswered entries `append()` rejects at once (503),
 *   like the in-process queue; after `close()`, at once.
 */
import { PaylogError, type ErrorCode } from '../errors.js';
import type { AppendOutcome, AppendRequest, Appender, CommitInfo } from '../log/append/types.js';
import { isMessage, type AppendResult, type ClusterMessage } from './messages.js';

/**
 * How long an entry waits for its answer: well beyond one batch under the pool's bounds
 * (connect, lock and statement timeouts: seconds), so it only fires when the primary is stuck.
 */
const REMOTE_APPEND_WAIT_MS = 30_000;
/** Unanswered entries beyond this are refused at once (the in-process queue's bound). */
const MAX_OUTSTANDING_ENTRIES = 10_000;

/** The worker's end of the IPC channel to the primary (default: `process`, a cluster worker's). */
export interface PrimaryChannel {
  send(m: ClusterMessage, done: (e: Error | null) => void): void;
  onMessage(f: (m: unknown) => void): void;
  onDisconnect(f: () => void): void;
  connected(): boolean;
}

const processChannel: PrimaryChannel = {
  send: (m, done) => void process.send!(m, undefined, {}, done),
  onMessage: (f) => void process.on('message', f),
  onDisconnect: (f) => void process.once('disconnect', f),
  connected: () => process.connected === true,
};

interface RemoteAppenderOptions {
  /** Called for each batch the integrator reports (metrics, checkpoint notice). */
  onCommit?: (info: CommitInfo) => void;
  /** The channel to the primary (tests); default this worker's IPC channel. */
  channel?: PrimaryChannel;
  /** How long an entry waits for its answer; default REMOTE_APPEND_WAIT_MS. */
  waitMs?: number;
}

interface Waiter {
  resolve: (o: AppendOutcome) => void;
  reject: (e: unknown) => void;
}

interface InFlight {
  waiters: Waiter[];
  timer: NodeJS.Timeout;
}

function unavailable(message: string): PaylogError {
  return new PaylogError('LOG_UNAVAILABLE', message);
}

/** The entry's settlement as the integrator sent it. */
function settle(w: Waiter, r: AppendResult | undefined): void {
  if (r && 'ok' in r) w.resolve(r.ok);
  else if (r) w.reject(new PaylogError(r.error.code as ErrorCode, r.error.message, r.error.details));
  else w.reject(unavailable('the integrator gave no outcome for the entry'));
}

/** `req` as it can cross the channel: an access entry's `otherwise` leaf made now if it is a function. */
function byValue(req: AppendRequest): AppendRequest {
  const otherwise = req.kind === 'access' ? req.requires?.otherwise : undefined;
  if (req.kind !== 'access' || !req.requires || typeof otherwise !== 'function') return req;
  return { ...req, requires: { ...req.requires, otherwise: otherwise() } };
}

export class RemoteAppender implements Appender {
  private readonly inFlight = new Map<number, InFlight>();
  private outbox: { reqs: AppendRequest[]; waiters: Waiter[] } | null = null;
  private outstanding = 0;
  private nextId = 0;
  private closed = false;
  private drained: (() => void) | null = null;
  private readonly channel: PrimaryChannel;
  private readonly waitMs: number;

  constructor(private readonly opts: RemoteAppenderOptions = {}) {
    this.channel = opts.channel ?? processChannel;
    this.waitMs = opts.waitMs ?? REMOTE_APPEND_WAIT_MS;
    this.channel.onMessage((m: unknown) => {
      if (isMessage(m, 'appended')) this.answered(m.id, m.results, m.commits);
    });
    this.channel.onDisconnect(() => {
      for (const id of [...this.inFlight.keys()]) this.fail(id, unavailable('the integrator (cluster primary) is gone'));
    });
  }

  append(req: AppendRequest): Promise<AppendOutcome> {
    if (this.closed) return Promise.reject(unavailable('the log is shutting down'));
    if (this.outstanding >= MAX_OUTSTANDING_ENTRIES) return Promise.reject(unavailable('the log is overloaded; retry later'));
    if (!this.channel.connected()) return Promise.reject(unavailable('the integrator (cluster primary) is gone'));
    return new Promise<AppendOutcome>((resolve, reject) => {
      this.outstanding++;
      if (!this.outbox) {
        this.outbox = { reqs: [], waiters: [] };
        setImmediate(() => this.flush());
      }
      this.outbox.reqs.push(byValue(req));
      this.outbox.waiters.push({ resolve, reject });
    });
  }

  /** Refuses new entries and resolves once every sent one is answered (or has timed out). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.outstanding === 0) return;
    await new Promise<void>((resolve) => (this.drained = resolve));
  }

  /** Sends the entries of this turn as one message. */
  private flush(): void {
    const box = this.outbox;
    this.outbox = null;
    if (!box) return;
    const id = this.nextId++;
    const timer = setTimeout(() => this.fail(id, unavailable(`the integrator did not answer within ${this.waitMs} ms`)), this.waitMs);
    this.inFlight.set(id, { waiters: box.waiters, timer });
    const msg: ClusterMessage = { paylog: 'append', id, reqs: box.reqs };
    try {
      this.channel.send(msg, (e) => e && this.fail(id, unavailable('the entries could not be handed to the integrator')));
    } catch {
      this.fail(id, unavailable('the entries could not be handed to the integrator'));
    }
  }

  private answered(id: number, results: AppendResult[], commits: CommitInfo[]): void {
    const f = this.take(id);
    f?.waiters.forEach((w, i) => settle(w, results[i]));
    for (const info of commits) {
      try {
        this.opts.onCommit?.(info);
      } catch {
        // a listener's failure is not the entries'
      }
    }
    if (f) this.done(f.waiters.length);
  }

  private fail(id: number, e: PaylogError): void {
    const f = this.take(id);
    if (!f) return;
    for (const w of f.waiters) w.reject(e);
    this.done(f.waiters.length);
  }

  private take(id: number): InFlight | undefined {
    const f = this.inFlight.get(id);
    if (!f) return undefined;
    this.inFlight.delete(id);
    clearTimeout(f.timer);
    return f;
  }

  private done(n: number): void {
    this.outstanding -= n;
    if (this.outstanding === 0) this.drained?.();
  }
}
