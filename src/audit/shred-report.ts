/**
 * The auditor's shred report (issue 9, PCI DSS 3.2.1 evidence): which log indices hold
 * transactions whose key material was shredded, derived ONLY from the log's own leaves, as the
 * verifier streams them:
 *
 * - a transaction leaf names its key: `env.ep` (v2 leaf) / `envelope.epochId` (v1 leaf) — the
 *   epoch whose key wrapped its data key — or `env.kms` / `envelope.kmsKeyId` (envelope v1: a
 *   per-record data key wrapped by KMS);
 * - `key_event` `epoch_shredded` names the epoch whose private key was destroyed: every
 *   transaction sealed under that epoch is shredded;
 * - `key_event` `transaction_shredded` (and the v1 leaf's `shred`) names one transaction
 *   (an early shred by an administrator);
 * - `key_event` `retention_run` carries its policy (retention, as of): every envelope-v1
 *   transaction (a KMS key reference) appended before the run and created before
 *   `asOf − retention` ({@link retentionCutoff}) had its data key destroyed by a run; each such
 *   record is attributed to the first run (in log order) that names it.
 *
 * Ranges: `[first, last]` log indices (inclusive) of shredded transaction leaves. A range never
 * contains a transaction whose key material is live; entries of other kinds inside it (access
 * entries, key events — no card data) do not split it. E.g. `[[0,41],[57,57]]`.
 *
 * Memory: bounded. Each transaction leaf leaves one record (index, time, key reference, its id
 * as written), about 40 bytes, in ./spill-records.ts — a few MiB in memory, the rest in an
 * anonymous temporary file — read back once by {@link ShredLedger.report}; in memory only the
 * shred events, one code per key reference, and the report's own ranges. The verdicts are those
 * of a ledger holding every record in memory: every transaction is kept until the end (an event
 * may name transactions appended before it, and an epoch shred names the epoch's transactions
 * wherever they are), ids are compared exactly (not by a digest prefix).
 */
import type { Leaf } from '../log/leaf.js';
import { retentionCutoff } from '../log/retention-policy.js';
import { SpillRecords } from './spill-records.js';

/** `[first, last]` log indices, inclusive. */
type IndexRange = [number, number];

/** One shred event of the log, with the transactions it names. */
interface ShredEvent {
  /** Log index of the `key_event` leaf. */
  index: number;
  event: 'epoch_shredded' | 'transaction_shredded' | 'retention_run' | 'shred';
  /** The event's time (ISO 8601 UTC), from its leaf. */
  time: string;
  /** `system` or `<role>:<name>` of the admin certificate. */
  actor?: string;
  /** The policy the leaf records (retention runs and the epochs they shred), and the cutoff derived from it. */
  policy?: { retention?: string; asOf?: string; cutoff?: string };
  epoch?: string;
  transactionId?: string;
  reason?: string;
  /** Counts the leaf itself records (e.g. `records`, `epochs`, `v1Records`). */
  counts?: Record<string, number>;
  /** KMS keys the shred destroys, as its leaf names them (leaf format v3: every key of the epoch's period; a run's scheduled keys). */
  kmsKeyIds?: string[];
  /** Transaction leaves this event's rule names. */
  transactions: number;
  ranges: IndexRange[];
}

export interface ShredReport {
  /** Distinct transaction leaves whose key material was shredded. */
  transactions: number;
  /** Their log indices, as ranges. */
  ranges: IndexRange[];
  /** Every shred event of the log, in log order. */
  events: ShredEvent[];
}

/** Shred record of one transaction: index (f64), time (f64), key reference code (i32), id length (u16), id (UTF-8). */
const REC_INDEX = 0;
const REC_TIME = 8;
const REC_REF = 16;
const REC_ID_LEN = 20;
const REC_ID = 22;
/** UTF-8 bytes per UTF-16 code unit, at most. */
const UTF8_PER_UNIT = 3;

/**
 * Ranges of log indices of transactions given in ordinal order (the k-th transaction leaf has
 * ordinal k); a gap in ordinals (a live transaction between) splits a range.
 */
class RangeBuilder {
  readonly ranges: IndexRange[] = [];
  count = 0;
  private prev = -2;
  add(ordinal: number, index: number): void {
    if (ordinal === this.prev + 1 && this.ranges.length > 0) this.ranges[this.ranges.length - 1]![1] = index;
    else this.ranges.push([index, index]);
    this.prev = ordinal;
    this.count++;
  }
}

interface PendingEvent {
  e: ShredEvent;
  /** Transaction leaves seen before the event. */
  before: number;
  rule: { epochRef: number } | { id: string } | { v1Before: number } | null;
  hits: RangeBuilder;
}

/**
 * Collects transaction leaves and shred events while the verifier streams the log; {@link report}
 * resolves them once every leaf has been seen (an event may name transactions appended before it).
 * Call {@link close} when done (it releases the spill file).
 */
export class ShredLedger {
  private readonly records: SpillRecords;
  private transactions = 0;
  /** Key reference code per kind and reference: +k = epoch k, −k = KMS key k (k ≥ 1). */
  private readonly refCodes = new Map<string, number>();
  private readonly pending: PendingEvent[] = [];

  /** The last reference looked up (consecutive transactions usually share their epoch). */
  private lastKind: 'ep' | 'kms' | undefined;
  private lastRef = '';
  private lastCode = 0;

  /** `store`: chunk sizes of the record store (tests force spilling with small ones). */
  constructor(store?: ConstructorParameters<typeof SpillRecords>[0]) {
    this.records = new SpillRecords(store);
  }

  private refCode(kind: 'ep' | 'kms', ref: string): number {
    if (this.lastKind === kind && this.lastRef === ref) return this.lastCode;
    const k = `${kind}:${ref}`;
    let c = this.refCodes.get(k);
    if (c === undefined) {
      c = this.refCodes.size + 1;
      this.refCodes.set(k, c);
    }
    this.lastKind = kind;
    this.lastRef = ref;
    this.lastCode = kind === 'ep' ? c : -c;
    return this.lastCode;
  }

  private addTransaction(index: number, id: string, timeMs: number, refCode: number): void {
    const r = this.records;
    const at = r.begin(REC_ID + UTF8_PER_UNIT * id.length);
    this.endRecord(at, index, timeMs, refCode, r.chunk.write(id, at + REC_ID, 'utf8'));
  }

  /** Completes the record begun at `at` whose id (`n` bytes) is written. */
  private endRecord(at: number, index: number, timeMs: number, refCode: number, n: number): void {
    const b = this.records.chunk;
    b.writeDoubleLE(index, at + REC_INDEX);
    b.writeDoubleLE(timeMs, at + REC_TIME);
    b.writeInt32LE(refCode, at + REC_REF);
    b.writeUInt16LE(n, at + REC_ID_LEN);
    this.records.end(REC_ID + n);
    this.transactions++;
  }

  /**
   * A v2/v3 transaction of the auditor's hot path ({@link observe}'s rule): its id given as the
   * ASCII bytes `idIn[idStart, idEnd)` (ASCII: the same bytes as the id's UTF-8), its epoch `ep`
   * or else its KMS key `kms`.
   */
  observeTransaction(index: number, idIn: Uint8Array, idStart: number, idEnd: number, timeMs: number, ep: string | undefined, kms: string | undefined): void {
    const refCode = ep !== undefined ? this.refCode('ep', ep) : this.refCode('kms', kms!);
    const n = idEnd - idStart;
    const at = this.records.begin(REC_ID + n);
    const b = this.records.chunk;
    for (let k = 0; k < n; k++) b[at + REC_ID + k] = idIn[idStart + k]!;
    this.endRecord(at, index, timeMs, refCode, n);
  }

  /** Feeds one verified leaf (in index order). */
  observe(index: number, leaf: Leaf): void {
    if (leaf.type === 'transaction') {
      if (leaf.v !== 1) this.addTransaction(index, leaf.id, leaf.time, leaf.env.ep !== undefined ? this.refCode('ep', leaf.env.ep) : this.refCode('kms', leaf.env.kms!));
      else {
        const env = leaf.envelope;
        this.addTransaction(index, leaf.transactionId, Date.parse(leaf.time), env.epochId !== undefined ? this.refCode('ep', env.epochId) : this.refCode('kms', env.kmsKeyId!));
      }
      return;
    }
    if (leaf.type !== 'key_event') return;
    const before = this.transactions;
    if (leaf.v === 1) {
      if (leaf.event !== 'shred' || leaf.transactionId === undefined) return;
      const e: ShredEvent = { index, event: 'shred', time: leaf.time, transactionId: leaf.transactionId, transactions: 0, ranges: [] };
      this.pending.push({ e, before, rule: { id: leaf.transactionId }, hits: new RangeBuilder() });
      return;
    }
    if (leaf.event !== 'epoch_shredded' && leaf.event !== 'transaction_shredded' && leaf.event !== 'retention_run') return;
    const policy: ShredEvent['policy'] = {};
    if (leaf.policy?.retention !== undefined) policy.retention = leaf.policy.retention;
    if (leaf.policy?.asOf !== undefined) policy.asOf = new Date(leaf.policy.asOf).toISOString();
    let cutoffMs: number | undefined;
    if (leaf.policy?.retention !== undefined && leaf.policy.asOf !== undefined) {
      try {
        const c = retentionCutoff(new Date(leaf.policy.asOf), leaf.policy.retention);
        cutoffMs = c.getTime();
        policy.cutoff = c.toISOString();
      } catch {
        // A retention string the rule cannot read: the run names no envelope-v1 records.
      }
    }
    const e: ShredEvent = {
      index,
      event: leaf.event,
      time: new Date(leaf.time).toISOString(),
      actor: leaf.actor === 'system' ? 'system' : `${leaf.actor.role}:${leaf.actor.name}`,
      ...(Object.keys(policy).length > 0 ? { policy } : {}),
      ...(leaf.epoch !== undefined ? { epoch: leaf.epoch } : {}),
      ...(leaf.transactionId !== undefined ? { transactionId: leaf.transactionId } : {}),
      ...(leaf.reason !== undefined ? { reason: leaf.reason } : {}),
      ...(leaf.counts !== undefined ? { counts: { ...leaf.counts } } : {}),
      ...('kmsKeyIds' in leaf && leaf.kmsKeyIds !== undefined ? { kmsKeyIds: [...leaf.kmsKeyIds] } : {}),
      transactions: 0,
      ranges: [],
    };
    let rule: PendingEvent['rule'] = null;
    if (leaf.event === 'epoch_shredded' && leaf.epoch !== undefined) rule = { epochRef: this.refCode('ep', leaf.epoch) };
    else if (leaf.event === 'transaction_shredded' && leaf.transactionId !== undefined) rule = { id: leaf.transactionId };
    else if (leaf.event === 'retention_run' && cutoffMs !== undefined) rule = { v1Before: cutoffMs };
    this.pending.push({ e, before, rule, hits: new RangeBuilder() });
  }

  /**
   * The report over every leaf observed so far: one pass over the transaction records, each
   * matched against the events' rules (an epoch shred: every transaction of the epoch; a
   * transaction shred: that id appended before it; a retention run: the envelope-v1 records
   * appended before it and created before its cutoff, each attributed to the first such run).
   */
  report(): ShredReport {
    const byId = new Map<string, PendingEvent[]>();
    const byEpoch = new Map<number, PendingEvent[]>();
    const runs: { p: PendingEvent; cutoff: number }[] = [];
    for (const p of this.pending) {
      p.hits = new RangeBuilder();
      const r = p.rule;
      if (r === null) continue;
      if ('id' in r) byId.set(r.id, [...(byId.get(r.id) ?? []), p]);
      else if ('epochRef' in r) byEpoch.set(r.epochRef, [...(byEpoch.get(r.epochRef) ?? []), p]);
      else runs.push({ p, cutoff: r.v1Before });
    }
    const all = new RangeBuilder();
    if (this.pending.length > 0) {
      let o = 0;
      this.records.scan((b, at) => {
        const index = b.readDoubleLE(at + REC_INDEX);
        const ref = b.readInt32LE(at + REC_REF);
        let hit = false;
        for (const p of byEpoch.get(ref) ?? []) {
          p.hits.add(o, index);
          hit = true;
        }
        if (ref < 0 && runs.length > 0) {
          // An envelope-v1 record: the first retention run (log order) appended after it whose cutoff it predates.
          const t = b.readDoubleLE(at + REC_TIME);
          const run = runs.find((r) => o < r.p.before && t < r.cutoff);
          if (run !== undefined) {
            run.p.hits.add(o, index);
            hit = true;
          }
        }
        if (byId.size > 0) {
          const named = byId.get(b.toString('utf8', at + REC_ID, at + REC_ID + b.readUInt16LE(at + REC_ID_LEN)));
          for (const p of named ?? []) {
            if (o < p.before) {
              p.hits.add(o, index);
              hit = true;
            }
          }
        }
        if (hit) all.add(o, index);
        o++;
      });
    }
    const events = this.pending.map((p) => ({ ...p.e, transactions: p.hits.count, ranges: p.hits.ranges }));
    return { transactions: all.count, ranges: all.ranges, events };
  }

  /** Releases the spill file (the ledger cannot report after this). */
  close(): void {
    this.records.close();
  }
}

/** `[[0,41],[57,57]]` */
function formatRanges(ranges: readonly IndexRange[]): string {
  return `[${ranges.map(([a, b]) => `[${a},${b}]`).join(',')}]`;
}

/** Human-readable lines of a shred report (no card data: only indices, ids, epochs, policy). */
export function formatShredReport(r: ShredReport): string[] {
  if (r.events.length === 0) return ['  shredded:   none'];
  const lines = [`  shredded:   ${r.transactions} transaction${r.transactions === 1 ? '' : 's'} at log indices ${formatRanges(r.ranges)}`];
  for (const e of r.events) {
    const what = e.transactionId !== undefined ? `${e.transactionId}${e.epoch !== undefined ? ` (epoch ${e.epoch})` : ''}` : (e.epoch ?? '');
    const policy = e.policy?.retention !== undefined ? ` policy PAYLOG_RETENTION=${e.policy.retention}${e.policy.asOf ? ` as of ${e.policy.asOf}` : ''}${e.policy.cutoff ? ` (cutoff ${e.policy.cutoff})` : ''}` : '';
    const reason = e.reason !== undefined && e.event !== 'retention_run' ? ` reason "${e.reason}"` : '';
    const keys = e.kmsKeyIds !== undefined ? ` KMS keys scheduled for deletion [${e.kmsKeyIds.join(', ')}]` : '';
    lines.push(`    - index ${e.index} ${e.event}${what ? ` ${what}` : ''} at ${e.time}${e.actor ? ` by ${e.actor}` : ''}${policy}${reason}${keys}: ${e.transactions} transaction${e.transactions === 1 ? '' : 's'} ${formatRanges(e.ranges)}`);
  }
  return lines;
}
