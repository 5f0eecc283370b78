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
 * Memory: 40 bytes per transaction leaf (index, time, key reference, 128-bit SHA-256 prefix of
 * its id); the other verifier checks stay O(log n).
 */
import { hash } from 'node:crypto';
import type { Leaf } from '../log/leaf.js';
import { retentionCutoff } from '../log/retention-policy.js';

/** `[first, last]` log indices, inclusive. */
export type IndexRange = [number, number];

/** One shred event of the log, with the transactions it names. */
export interface ShredEvent {
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

const ID_HASH_BYTES = 16;

class GrowableF64 {
  a = new Float64Array(1024);
  n = 0;
  push(v: number): void {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    this.a[this.n++] = v;
  }
}

const idHash = (id: string): Buffer => (hash('sha256', id, 'buffer') as unknown as Buffer).subarray(0, ID_HASH_BYTES);

/** Ordinals (sorted) → ranges of log indices; a gap in ordinals (a live transaction between) splits a range. */
function rangesOf(ordinals: readonly number[], indexOf: (o: number) => number): IndexRange[] {
  const out: IndexRange[] = [];
  let prev = -2;
  for (const o of ordinals) {
    const idx = indexOf(o);
    if (o === prev + 1 && out.length > 0) out[out.length - 1]![1] = idx;
    else out.push([idx, idx]);
    prev = o;
  }
  return out;
}

interface PendingEvent {
  e: ShredEvent;
  /** Transaction leaves seen before the event. */
  before: number;
  rule: { epochRef: number } | { idHex: string } | { v1Before: number } | null;
}

/**
 * Collects transaction leaves and shred events while the verifier streams the log; {@link report}
 * resolves them once every leaf has been seen (an event may name transactions appended before it).
 */
export class ShredLedger {
  private readonly indices = new GrowableF64();
  private readonly times = new GrowableF64();
  /** Key reference code per transaction: +k = epoch refs[k], −k = KMS key refs[k] (k ≥ 1). */
  private readonly keyRefs = new GrowableF64();
  private idHashes = Buffer.alloc(1024 * ID_HASH_BYTES);
  private readonly refCodes = new Map<string, number>();
  private readonly pending: PendingEvent[] = [];

  /** The last reference looked up (consecutive transactions usually share their epoch). */
  private last: { kind: 'ep' | 'kms'; ref: string; code: number } | undefined;

  private refCode(kind: 'ep' | 'kms', ref: string): number {
    const last = this.last;
    if (last !== undefined && last.kind === kind && last.ref === ref) return last.code;
    const code = this.lookupRefCode(kind, ref);
    this.last = { kind, ref, code };
    return code;
  }

  private lookupRefCode(kind: 'ep' | 'kms', ref: string): number {
    const k = `${kind}:${ref}`;
    let c = this.refCodes.get(k);
    if (c === undefined) {
      c = this.refCodes.size + 1;
      this.refCodes.set(k, c);
    }
    return kind === 'ep' ? c : -c;
  }

  private addTransaction(index: number, id: string, timeMs: number, ref: { ep: string } | { kms: string }): void {
    const n = this.indices.n;
    if ((n + 1) * ID_HASH_BYTES > this.idHashes.length) {
      const b = Buffer.alloc(this.idHashes.length * 2);
      this.idHashes.copy(b);
      this.idHashes = b;
    }
    idHash(id).copy(this.idHashes, n * ID_HASH_BYTES);
    this.indices.push(index);
    this.times.push(timeMs);
    this.keyRefs.push('ep' in ref ? this.refCode('ep', ref.ep) : this.refCode('kms', ref.kms));
  }

  /** Feeds one verified leaf (in index order). */
  observe(index: number, leaf: Leaf): void {
    if (leaf.type === 'transaction') {
      if (leaf.v !== 1) this.addTransaction(index, leaf.id, leaf.time, leaf.env.ep !== undefined ? { ep: leaf.env.ep } : { kms: leaf.env.kms! });
      else {
        const env = leaf.envelope;
        this.addTransaction(index, leaf.transactionId, Date.parse(leaf.time), env.epochId !== undefined ? { ep: env.epochId } : { kms: env.kmsKeyId! });
      }
      return;
    }
    if (leaf.type !== 'key_event') return;
    const before = this.indices.n;
    if (leaf.v === 1) {
      if (leaf.event !== 'shred' || leaf.transactionId === undefined) return;
      const e: ShredEvent = { index, event: 'shred', time: leaf.time, transactionId: leaf.transactionId, transactions: 0, ranges: [] };
      this.pending.push({ e, before, rule: { idHex: idHash(leaf.transactionId).toString('hex') } });
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
    else if (leaf.event === 'transaction_shredded' && leaf.transactionId !== undefined) rule = { idHex: idHash(leaf.transactionId).toString('hex') };
    else if (leaf.event === 'retention_run' && cutoffMs !== undefined) rule = { v1Before: cutoffMs };
    this.pending.push({ e, before, rule });
  }

  /** The report over every leaf observed so far. */
  report(): ShredReport {
    const n = this.indices.n;
    const shredded = new Uint8Array(n);
    const byId = new Map<string, PendingEvent[]>();
    const byEpoch = new Map<number, PendingEvent[]>();
    const runs: { p: PendingEvent; before: number; cutoff: number }[] = [];
    const hits = new Map<PendingEvent, number[]>();
    for (const p of this.pending) {
      hits.set(p, []);
      const r = p.rule;
      if (r === null) continue;
      if ('idHex' in r) byId.set(r.idHex, [...(byId.get(r.idHex) ?? []), p]);
      else if ('epochRef' in r) byEpoch.set(r.epochRef, [...(byEpoch.get(r.epochRef) ?? []), p]);
      else runs.push({ p, before: p.before, cutoff: r.v1Before });
    }
    for (let o = 0; o < n; o++) {
      const ref = this.keyRefs.a[o]!;
      for (const p of byEpoch.get(ref) ?? []) hits.get(p)!.push(o);
      if (ref < 0) {
        // An envelope-v1 record: the first retention run (log order) appended after it whose cutoff it predates.
        const t = this.times.a[o]!;
        const run = runs.find((r) => o < r.before && t < r.cutoff);
        if (run !== undefined) hits.get(run.p)!.push(o);
      }
      if (byId.size > 0) {
        const named = byId.get(this.idHashes.subarray(o * ID_HASH_BYTES, (o + 1) * ID_HASH_BYTES).toString('hex'));
        for (const p of named ?? []) if (o < p.before) hits.get(p)!.push(o);
      }
    }
    const indexOf = (o: number) => this.indices.a[o]!;
    const events = this.pending.map((p) => {
      const os = hits.get(p)!;
      for (const o of os) shredded[o] = 1;
      return { ...p.e, transactions: os.length, ranges: rangesOf(os, indexOf) };
    });
    const all: number[] = [];
    for (let o = 0; o < n; o++) if (shredded[o] === 1) all.push(o);
    return { transactions: all.length, ranges: rangesOf(all, indexOf), events };
  }
}

/** `[[0,41],[57,57]]` */
export function formatRanges(ranges: readonly IndexRange[]): string {
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
