/**
 * Service side of C2SP tlog-witness: submits each new signed checkpoint with its RFC 9162
 * consistency proof to every configured witness (`POST <prefix>/add-checkpoint`), keeps the
 * returned tlog-cosignatures in the append-only `witness_cosignatures` table, and finds the
 * newest checkpoint that reached the quorum (served on `/v1/log/checkpoint` and the tiles'
 * `checkpoint`).
 *
 * Contract:
 * - The signer asks every witness (`vet`) after signing a checkpoint and BEFORE storing it; a
 *   witness that answers the checkpoint conflicts with what it has cosigned (409 with a larger
 *   size, or 409 again at the size proved from; 422) makes the signer refuse it: it is never
 *   stored or served. Appends never wait for witnesses; a witness that is unreachable or slow
 *   delays that checkpoint's storing by at most WITNESS_REQUEST_TIMEOUT_MS and is otherwise
 *   only reported. `submit` (asynchronous, one request in flight per witness and a slot for the
 *   newest checkpoint) remains for callers that only want cosignatures.
 * - 409 (`text/x.tlog.size`): the witness's size is adopted and the request retried once with a
 *   proof from that size, if it is not beyond the checkpoint; 403/404/400 are logged and
 *   counted, never retried for that checkpoint.
 * - A cosignature is stored only after it verifies under the witness's configured key; rows are
 *   re-verified when read, so a row inserted behind the service's back is ignored.
 * - https witness URLs are checked against `ca` (PAYLOG_WITNESS_CA) when given, else against
 *   Node's built-in roots; the certificate must name the URL's host.
 * - Requests go through the one outbound HTTP module (src/net/http.ts) with
 *   {@link witnessEgressPolicy}: a redirect is never followed (a 3xx is a refusal like any other
 *   status) and an answer larger than WITNESS_MAX_RESPONSE_BYTES is not read (a failed request).
 */
import { desc, eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../../db/connection.js';
import { witnessCosignatures } from '../../db/schema.js';
import { PaylogError } from '../../errors.js';
import { readNodes } from '../store.js';
import { refusal, type StoredCheckpoint } from '../checkpoint-publisher.js';
import { consistencyProof, consistencyProofNodes } from '../merkle.js';
import type { NoteVerifier } from '../note.js';
import { formatAddCheckpoint, TLOG_SIZE_CONTENT_TYPE } from './add-checkpoint.js';
import { verifyCosignatures } from './cosignature.js';
import type { WitnessEndpoint } from './endpoints.js';
import type { WitnessMetrics } from './metrics.js';
import { newestQuorumCheckpoint } from './quorum.js';
import { httpClient, type EgressPolicy, type HttpClient } from '../../net/http.js';

/** Per-request bound on an add-checkpoint call. */
const WITNESS_REQUEST_TIMEOUT_MS = 10_000;
/** Largest add-checkpoint answer read: a few cosignature lines of ~100 bytes each. */
const WITNESS_MAX_RESPONSE_BYTES = 64 * 1024;

/** The egress policy of add-checkpoint calls: connect and whole request each bounded by WITNESS_REQUEST_TIMEOUT_MS. */
function witnessEgressPolicy(ca: string | undefined): EgressPolicy {
  return {
    timeoutMs: WITNESS_REQUEST_TIMEOUT_MS,
    connectTimeoutMs: WITNESS_REQUEST_TIMEOUT_MS,
    deadlineMs: WITNESS_REQUEST_TIMEOUT_MS,
    maxResponseBytes: WITNESS_MAX_RESPONSE_BYTES,
    ...(ca !== undefined ? { tls: { ca } } : {}),
  };
}
/** 409 answers followed (with the witness's size) per checkpoint. */
const MAX_CONFLICT_RETRIES = 1;
/** How long the newest witnessed checkpoint is reused on another instance's publications. */
const WITNESSED_TTL_MS = 1_000;

/** What one witness answered about one checkpoint. */
type AskResult = { kind: 'cosigned'; body: string } | { kind: 'known' } | { kind: 'conflict'; witnessSize: number; why: string } | { kind: 'failed' };

type Outcome = 'cosigned' | 'conflict' | 'inconsistent' | 'forbidden' | 'unknown_log' | 'bad_request' | 'error';

const OUTCOME_BY_STATUS: Record<number, Outcome> = { 409: 'conflict', 422: 'inconsistent', 403: 'forbidden', 404: 'unknown_log', 400: 'bad_request' };

interface WitnessLane {
  w: WitnessEndpoint;
  /** Size the witness last cosigned for us (undefined: ask our table, else 0). */
  knownSize?: number;
  /** Root of the checkpoint of `knownSize` this service had cosigned (skip resubmitting it). */
  knownRoot?: Buffer;
  running: boolean;
  waiting?: StoredCheckpoint;
}

interface WitnessStatus {
  quorum: number;
  witnesses: number;
  signedSize: number;
  witnessedSize: number;
  lagEntries: number;
  lagSeconds: number;
}

export class WitnessCosigning {
  readonly #lanes: WitnessLane[];
  #signedSize = 0;
  /** When each signed size was published (for the quorum latency), newest few only. */
  readonly #publishedAt = new Map<number, number>();
  #pendingSince: number | null = null;
  #witnessed: { size: number; note: string; at: number } | null = null;
  #closed = false;
  readonly #inFlight = new Set<Promise<void>>();
  readonly #quorumListeners: Array<(size: number, latencyMs: number) => void> = [];
  /** One keep-alive pool for all witnesses; TLS trust from `ca` when set. */
  readonly #http: HttpClient;

  constructor(
    private readonly db: Db,
    private readonly opts: {
      witnesses: WitnessEndpoint[];
      quorum: number;
      /** PEM CA certificate(s) trusted for https witnesses (replaces Node's built-in roots). */
      ca?: string;
      logVerifiers: NoteVerifier[];
      logger?: Logger;
      metrics?: WitnessMetrics;
    },
  ) {
    if (opts.quorum < 1 || opts.quorum > opts.witnesses.length) throw new PaylogError('BAD_REQUEST', 'witness quorum must be between 1 and the number of witnesses');
    this.#lanes = opts.witnesses.map((w) => ({ w, running: false }));
    this.#http = httpClient(witnessEgressPolicy(opts.ca));
  }

  /** Hands a newly signed checkpoint to every witness (returns at once). */
  submit(c: StoredCheckpoint): void {
    if (this.#closed) return;
    this.#noteSigned(c);
    for (const lane of this.#lanes) {
      lane.waiting = c;
      if (!lane.running) this.#run(lane);
    }
    this.#updateLag();
  }

  /**
   * Asks every witness about a signed checkpoint BEFORE it is stored (CheckpointWitnesses in
   * src/log/checkpoint-publisher.ts). Throws INCONSISTENT_TREE (reason `witness`) when any witness says
   * the checkpoint does not extend what it has cosigned: it has cosigned a larger tree (409 with
   * a size beyond this checkpoint), a different root at the same size (409 with the same size
   * again), or the consistency proof from its size does not verify (422). A witness that is
   * unreachable, slow (WITNESS_REQUEST_TIMEOUT_MS) or refuses for another reason is logged and
   * counted only: witnessing is reported, not required. `recorded()` stores the cosignatures,
   * to be called once the checkpoint row is stored.
   */
  async vet(c: StoredCheckpoint): Promise<{ recorded(): Promise<void> }> {
    const answers = await Promise.all(
      this.#lanes.map((lane) =>
        this.#ask(lane, c).catch((e: unknown): AskResult => {
          this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome: 'error' });
          this.opts.logger?.warn({ witness: lane.w.key, size: c.size, err: { type: (e as Error)?.name, message: (e as Error)?.message } }, 'witness submission failed');
          return { kind: 'failed' };
        }),
      ),
    );
    const conflict = answers.findIndex((r) => r.kind === 'conflict');
    if (conflict >= 0) {
      const r = answers[conflict] as Extract<AskResult, { kind: 'conflict' }>;
      throw refusal('witness', r.witnessSize, c.size, `witness ${this.#lanes[conflict]!.w.key} ${r.why} (its size ${r.witnessSize}, this checkpoint's size ${c.size})`);
    }
    this.#noteSigned(c);
    this.#updateLag();
    return {
      recorded: async () => {
        for (const [i, r] of answers.entries()) {
          if (r.kind !== 'cosigned') continue;
          const lane = this.#lanes[i]!;
          await this.#store(lane, c, r.body).catch((e: unknown) =>
            this.opts.logger?.warn({ witness: lane.w.key, size: c.size, err: { type: (e as Error)?.name, message: (e as Error)?.message } }, 'witness cosignature not stored'),
          );
        }
      },
    };
  }

  #noteSigned(c: StoredCheckpoint): void {
    if (c.size < this.#signedSize) return;
    if (!this.#publishedAt.has(c.size)) this.#publishedAt.set(c.size, performance.now());
    while (this.#publishedAt.size > 64) this.#publishedAt.delete(this.#publishedAt.keys().next().value as number);
    this.#signedSize = c.size;
    if (this.#pendingSince === null && (this.#witnessed === null || this.#witnessed.size < c.size)) this.#pendingSince = Date.now();
  }

  #run(lane: WitnessLane): void {
    lane.running = true;
    const p = (async () => {
      while (lane.waiting !== undefined && !this.#closed) {
        const c = lane.waiting;
        lane.waiting = undefined;
        await this.#submitOne(lane, c).catch((e: unknown) => {
          this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome: 'error' });
          this.opts.logger?.warn({ witness: lane.w.key, size: c.size, err: { type: (e as Error)?.name, message: (e as Error)?.message } }, 'witness submission failed');
        });
      }
    })().finally(() => {
      lane.running = false;
      this.#inFlight.delete(p);
    });
    this.#inFlight.add(p);
  }

  async #knownSize(lane: WitnessLane): Promise<number> {
    if (lane.knownSize !== undefined) return lane.knownSize;
    const rows = await this.db
      .select({ size: witnessCosignatures.checkpointSize })
      .from(witnessCosignatures)
      .where(eq(witnessCosignatures.witnessKey, lane.w.key))
      .orderBy(desc(witnessCosignatures.checkpointSize))
      .limit(1);
    return rows[0]?.size ?? 0;
  }

  async #proof(from: number, to: number): Promise<Buffer[]> {
    if (from === 0 || from === to) return [];
    return consistencyProof(from, to, await readNodes(this.db, consistencyProofNodes(from, to)));
  }

  // tlog-witness §add-checkpoint, client side: ask, then store the cosignature.
  async #submitOne(lane: WitnessLane, c: StoredCheckpoint): Promise<void> {
    const r = await this.#ask(lane, c);
    if (r.kind === 'cosigned') await this.#store(lane, c, r.body);
  }

  // tlog-witness §add-checkpoint, client side. A size the witness has cosigned counts as a
  // conflict only when the witness itself answered it (the cosignatures table is writable by
  // the runtime role: a planted row is a reason to ask, not to refuse).
  async #ask(lane: WitnessLane, c: StoredCheckpoint): Promise<AskResult> {
    // Already cosigned (two publications of the same tree head): nothing to ask.
    if (lane.knownSize === c.size && lane.knownRoot?.equals(c.rootHash)) return { kind: 'known' };
    let old = await this.#knownSize(lane);
    let fromWitness = false;
    for (let attempt = 0; attempt <= MAX_CONFLICT_RETRIES; attempt++) {
      if (old > c.size) {
        if (!fromWitness) {
          old = 0; // ask the witness for its size
        } else {
          this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome: 'conflict' });
          this.opts.logger?.error({ witness: lane.w.key, witnessSize: old, size: c.size }, 'witness has cosigned a larger tree than this checkpoint: not submitted');
          return { kind: 'conflict', witnessSize: old, why: 'has cosigned a larger tree than this checkpoint' };
        }
      }
      const body = formatAddCheckpoint({ oldSize: old, proof: await this.#proof(old, c.size), checkpoint: c.note });
      const res = await this.#http.request(`${lane.w.url}/add-checkpoint`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
      const text = new TextDecoder().decode(res.body);
      if (res.status === 200) return { kind: 'cosigned', body: text };
      const outcome = OUTCOME_BY_STATUS[res.status] ?? 'error';
      this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome });
      if (res.status === 409 && (res.header('content-type') ?? '').startsWith(TLOG_SIZE_CONTENT_TYPE) && /^(0|[1-9][0-9]*)\n$/.test(text)) {
        const theirs = Number(text.trim());
        fromWitness = true;
        if (theirs !== old) {
          old = theirs;
          lane.knownSize = theirs;
          delete lane.knownRoot;
          continue;
        }
        // Its size is the one we proved from, and it still conflicts: a different root there.
        this.opts.logger?.error({ witness: lane.w.key, status: res.status, size: c.size, oldSize: old }, 'witness refused the checkpoint: it conflicts with what it has cosigned');
        return { kind: 'conflict', witnessSize: theirs, why: 'has cosigned a different tree' };
      }
      if (res.status === 422) {
        this.opts.logger?.error({ witness: lane.w.key, status: res.status, size: c.size, oldSize: old }, 'witness refused the checkpoint: not consistent with what it has cosigned');
        return { kind: 'conflict', witnessSize: old, why: 'found the checkpoint inconsistent with the tree it has cosigned' };
      }
      this.opts.logger?.error({ witness: lane.w.key, status: res.status, size: c.size, oldSize: old }, 'witness refused the checkpoint');
      return { kind: 'failed' };
    }
    return { kind: 'failed' };
  }

  async #store(lane: WitnessLane, c: StoredCheckpoint, body: string): Promise<void> {
    const { valid } = verifyCosignatures(`${c.note}${body.endsWith('\n') ? body : `${body}\n`}`, [lane.w.cosigner]);
    if (valid.length === 0) {
      this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome: 'error' });
      this.opts.logger?.error({ witness: lane.w.key, size: c.size }, 'witness answered 200 without a cosignature that verifies under its key');
      return;
    }
    await this.db.insert(witnessCosignatures).values(
      valid.map((v) => ({ checkpointSize: c.size, rootHash: c.rootHash, witnessKey: v.key, cosignedAt: v.timestamp, signatureLine: v.line })),
    );
    lane.knownSize = c.size;
    lane.knownRoot = c.rootHash;
    this.opts.metrics?.submissions.inc({ witness: lane.w.key, outcome: 'cosigned' });
    this.#witnessed = null; // re-read
    const latest = await this.latestWitnessed();
    const at = latest !== null ? this.#publishedAt.get(latest.size) : undefined;
    if (latest !== null && at !== undefined) {
      this.#publishedAt.delete(latest.size);
      for (const s of [...this.#publishedAt.keys()]) if (s < latest.size) this.#publishedAt.delete(s);
      const ms = performance.now() - at;
      this.opts.metrics?.quorumSeconds.observe(ms / 1000);
      for (const f of this.#quorumListeners) f(latest.size, ms);
    }
    this.#updateLag();
  }

  /**
   * The newest checkpoint signed by our keys that carries valid cosignatures from at least
   * `quorum` configured witnesses, as a note with those cosignature lines appended (newest per
   * witness). Null when none has reached the quorum.
   */
  async latestWitnessed(): Promise<{ size: number; note: string } | null> {
    if (this.#witnessed !== null && Date.now() - this.#witnessed.at < WITNESSED_TTL_MS) return this.#witnessed;
    const found = await newestQuorumCheckpoint(this.db, this.opts);
    if (found === null) return null;
    this.#witnessed = { ...found, at: Date.now() };
    return this.#witnessed;
  }

  #updateLag(): void {
    const witnessedSize = this.#witnessed?.size ?? 0;
    if (this.#witnessed !== null && witnessedSize >= this.#signedSize) this.#pendingSince = null;
    this.opts.metrics?.lagEntries.set(Math.max(0, this.#signedSize - witnessedSize));
    this.opts.metrics?.lagSeconds.set(this.#pendingSince === null ? 0 : (Date.now() - this.#pendingSince) / 1000);
  }

  /** Calls `f` when a signed size first reaches the quorum, with the ms since it was published. */
  onQuorum(f: (size: number, latencyMs: number) => void): void {
    this.#quorumListeners.push(f);
  }

  /** For /readyz: how far witnessing lags behind signing. */
  status(): WitnessStatus {
    this.#updateLag();
    const witnessedSize = this.#witnessed?.size ?? 0;
    return {
      quorum: this.opts.quorum,
      witnesses: this.opts.witnesses.length,
      signedSize: this.#signedSize,
      witnessedSize,
      lagEntries: Math.max(0, this.#signedSize - witnessedSize),
      lagSeconds: this.#pendingSince === null ? 0 : (Date.now() - this.#pendingSince) / 1000,
    };
  }

  /** Stops taking checkpoints and waits (bounded by the request timeout) for requests in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#http.close();
  }
}
