/**
 * Closed-loop load for fault drills (scripts/fault-drill.ts and the fault tests): N workers,
 * each submitting new transactions back to back and, every RELEASE_EVERY-th operation, releasing
 * one already acknowledged. A worker that gets a 503 waits briefly and sends the SAME body again
 * (as a client honouring Retry-After would), so a submission whose COMMIT outcome was unknown is
 * reconciled by the idempotent replay (200, same log index).
 *
 * Classifies every answer: 201/200 (acknowledged: id → log index and body kept), 503 with
 * Retry-After (allowed), anything else — another status, a 503 without Retry-After, a
 * connection error — is recorded in `bad`.
 */

export interface Answer {
  status: number;
  retryAfter?: string | undefined;
  json: any;
}

export interface LoadOps {
  /** POST /v1/transactions with `body`; rejects on a transport error (no answer). */
  submit(body: Record<string, any>): Promise<Answer>;
  /** POST /v1/transactions/{id}/release as the assigned processor. */
  release?(transactionId: string): Promise<Answer>;
  /** A new transaction body (unique transactionId). */
  makeBody(): Record<string, any>;
}

export interface Acked {
  logIndex: number;
  body: Record<string, any>;
}

export interface Sample {
  kind: 'submit' | 'release';
  start: number;
  end: number;
  status: number | 'transport';
}

export interface LoadRun {
  readonly acked: Map<string, Acked>;
  readonly samples: Sample[];
  readonly bad: string[];
  /** Counts by outcome: "201", "200", "503", "release 200", "release 503", ... */
  counts(): Record<string, number>;
  maxLatencyMs(): number;
  /** End time (ms, performance.now()) of the first acknowledged submission (201) ending at or after `t`. */
  firstCreatedAfter(t: number): number | undefined;
  stop(): Promise<void>;
}

export const RETRY_DELAY_MS = 50;
export const RELEASE_EVERY = 8;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function startLoad(ops: LoadOps, concurrency: number): LoadRun {
  const acked = new Map<string, Acked>();
  const ackedIds: string[] = [];
  const samples: Sample[] = [];
  const bad: string[] = [];
  let stopping = false;

  const record = (kind: Sample['kind'], start: number, a: Answer | undefined, err?: unknown): Answer | undefined => {
    const end = performance.now();
    samples.push({ kind, start, end, status: a ? a.status : 'transport' });
    if (!a) bad.push(`${kind}: no answer (${(err as { code?: string })?.code ?? (err as Error)?.message ?? String(err)})`);
    else if (a.status === 503 && !a.retryAfter) bad.push(`${kind}: 503 without Retry-After (${a.json?.error?.code})`);
    else if (![200, 201, 503].includes(a.status)) bad.push(`${kind}: ${a.status} ${a.json?.error?.code ?? ''} ${a.json?.error?.message ?? ''}`);
    return a;
  };

  const attempt = async (kind: Sample['kind'], call: () => Promise<Answer>): Promise<Answer | undefined> => {
    const t0 = performance.now();
    try {
      return record(kind, t0, await call());
    } catch (e) {
      return record(kind, t0, undefined, e);
    }
  };

  const worker = async (w: number) => {
    let body = ops.makeBody();
    for (let n = 0; !stopping; n++) {
      if (ops.release && n % RELEASE_EVERY === RELEASE_EVERY - 1 && ackedIds.length > 0) {
        const id = ackedIds[(n * 7919 + w) % ackedIds.length]!;
        const release = ops.release;
        const a = await attempt('release', () => release(id));
        if (a?.status === 200 && a.json?.paymentMethod?.pan !== acked.get(id)?.body.paymentMethod?.pan) bad.push(`release ${id}: returned data differs from what was sent`);
        if (a?.status === 503) await sleep(RETRY_DELAY_MS);
        continue;
      }
      const sent = body;
      const a = await attempt('submit', () => ops.submit(sent));
      if (a && (a.status === 201 || a.status === 200)) {
        const id = body.transactionId as string;
        const prior = acked.get(id);
        if (prior && prior.logIndex !== a.json?.logIndex) bad.push(`${id}: acknowledged at two log indexes`);
        if (!prior) ackedIds.push(id);
        acked.set(id, { logIndex: a.json?.logIndex, body });
        body = ops.makeBody();
      } else if (a?.status === 503 || !a) {
        await sleep(RETRY_DELAY_MS); // then the same body again
      } else {
        body = ops.makeBody();
      }
    }
  };
  const workers = Array.from({ length: concurrency }, (_, w) => worker(w));

  return {
    acked,
    samples,
    bad,
    counts: () => {
      const c: Record<string, number> = {};
      for (const s of samples) {
        const k = `${s.kind === 'release' ? 'release ' : ''}${s.status}`;
        c[k] = (c[k] ?? 0) + 1;
      }
      return c;
    },
    maxLatencyMs: () => samples.reduce((m, s) => Math.max(m, s.end - s.start), 0),
    firstCreatedAfter: (t) => {
      let first: number | undefined;
      for (const s of samples) if (s.kind === 'submit' && s.status === 201 && s.end >= t && (first === undefined || s.end < first)) first = s.end;
      return first;
    },
    stop: async () => {
      stopping = true;
      await Promise.all(workers);
    },
  };
}
