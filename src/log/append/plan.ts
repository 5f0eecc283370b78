/**
 * Batch planning: from the state read under the append lock and the batch's requests, every
 * decision a batch makes — which entries are refused, replays, conflicts or denied, and the
 * indexes, leaf hashes, Merkle nodes and tree head it writes.
 *
 * Contract:
 * - Every function here is PURE: no I/O, no clock, and it MUST NOT mutate its inputs (the state
 *   read under the lock is the driver's; tests build it by hand).
 * - Order of decisions for a transaction entry: preconditions registered `beforeReplay` (a
 *   revoked submitter learns nothing, not even that its replay matched), then idempotency (a
 *   transaction id already stored, or earlier in the batch: `replayed` when its request MAC
 *   matches, `conflict` otherwise — an identical replay stays a replay whatever else changed),
 *   then the remaining preconditions (`refused`, the first failing one's reason).
 * - An access entry whose precondition fails is appended as its `requires.otherwise` leaf, in
 *   the same place, and resolves `denied`: the attempt is logged exactly once.
 * - Appended entries take dense indexes after the head, in request order; the new nodes and
 *   root follow from the frontier and the new leaf hashes (RFC 9162 §2.1.4, src/log/merkle.ts).
 */
import { PaylogError } from '../../errors.js';
import { timingSafeEqual } from 'node:crypto';
import { appendLeaves, hashLeaf, nodeKey, type NodeId } from '../merkle.js';
import type { CheckTable } from './preconditions.js';
import type { CompanionCall, CompanionWrite } from './companions.js';
import type { AppendOutcome, AppendRequest, Precondition, TreeHead } from './types.js';

/** A transaction id already stored (or appended earlier in the batch). */
export interface StoredTransaction {
  mac: Buffer;
  logIndex: number;
}

/** What a batch reads under the append lock before it decides anything. */
export interface BatchState {
  head: TreeHead;
  /** The head's frontier, in rangeNodes(0, size) order. */
  frontier: Buffer[];
  /** The batch's transaction ids that are already stored. */
  existing: ReadonlyMap<string, StoredTransaction>;
  /** Check id → the keys (of this batch) for which it fails. */
  failed: ReadonlyMap<string, ReadonlySet<string>>;
}

/** What the batch-state read must be asked: the batch's transaction ids and, per check, its distinct keys. */
interface BatchKeys {
  transactionIds: string[];
  byCheck: Map<string, string[]>;
}

export interface AcceptedEntry {
  /** Position of the request in the batch. */
  i: number;
  /** The request as appended (an access entry's `otherwise` leaf when it was denied). */
  req: AppendRequest;
  index: number;
  leafHash: Buffer;
  denied?: string;
}

interface BatchPlan {
  /** One per request; a replay's `leafHash` is filled by `withReplayLeafHashes`. */
  outcomes: AppendOutcome[];
  accepted: AcceptedEntry[];
  newNodes: Array<NodeId & { hash: Buffer }>;
  /** The head after the batch (the read head when nothing is appended). */
  head: TreeHead;
  /** Log indexes of the replays (their stored leaf hashes are read before COMMIT). */
  replayIndexes: number[];
}

function preconditionsOf(req: AppendRequest): Precondition[] {
  if (req.kind === 'transaction') return req.requires ?? [];
  if (req.kind === 'access') return req.requires?.checks ?? [];
  return [];
}

/** Step 1: the keys the batch-state read is asked about (distinct, in first-seen order). */
export function batchKeys(reqs: readonly AppendRequest[]): BatchKeys {
  const transactionIds: string[] = [];
  const byCheck = new Map<string, Set<string>>();
  for (const req of reqs) {
    if (req.kind === 'transaction') transactionIds.push(req.transaction.transactionId);
    for (const p of preconditionsOf(req)) {
      let keys = byCheck.get(p.check);
      if (!keys) byCheck.set(p.check, (keys = new Set()));
      keys.add(p.key);
    }
  }
  return { transactionIds, byCheck: new Map([...byCheck].map(([k, v]) => [k, [...v]])) };
}

/**
 * The reason of the first failing precondition among `requires` in the given stage (null: all
 * hold). An unregistered check fails closed (the driver rejects such entries before planning).
 */
export function firstFailure(
  requires: readonly Precondition[],
  state: Pick<BatchState, 'failed'>,
  checks: CheckTable,
  stage: 'beforeReplay' | 'afterReplay' | 'all',
): string | null {
  for (const p of requires) {
    const check = checks.get(p.check);
    if (!check) return 'unknown_precondition';
    if (stage === 'beforeReplay' && !check.beforeReplay) continue;
    if (stage === 'afterReplay' && check.beforeReplay) continue;
    if (state.failed.get(p.check)?.has(p.key)) return check.reason;
  }
  return null;
}

/** Idempotency: a stored (or earlier in the batch) transaction id is a replay when its MAC matches. */
function replayOf(prior: StoredTransaction, requestMac: Buffer): AppendOutcome {
  // Constant time (as every MAC comparison here): the log imports no payment-domain module.
  return prior.mac.length === requestMac.length && timingSafeEqual(prior.mac, requestMac)
    ? { status: 'replayed', logIndex: prior.logIndex, leafHash: Buffer.alloc(0) }
    : { status: 'conflict', logIndex: prior.logIndex };
}

/** Step 2: decides every entry of a batch from the state read under the lock (module contract). */
export function planBatch(state: BatchState, reqs: readonly AppendRequest[], checks: CheckTable): BatchPlan {
  const { head, frontier } = state;
  const existing = new Map(state.existing);
  const outcomes = new Array<AppendOutcome>(reqs.length);
  const accepted: AcceptedEntry[] = [];
  const replayIndexes: number[] = [];
  for (let i = 0; i < reqs.length; i++) {
    const req = reqs[i]!;
    const index = head.size + accepted.length;
    if (req.kind === 'transaction') {
      const requires = req.requires ?? [];
      const early = firstFailure(requires, state, checks, 'beforeReplay');
      if (early) {
        outcomes[i] = { status: 'refused', reason: early };
        continue;
      }
      const prior = existing.get(req.transaction.transactionId);
      if (prior) {
        outcomes[i] = replayOf(prior, req.transaction.requestMac);
        if (outcomes[i]!.status === 'replayed') replayIndexes.push(prior.logIndex);
        continue;
      }
      const refusal = firstFailure(requires, state, checks, 'afterReplay');
      if (refusal) {
        outcomes[i] = { status: 'refused', reason: refusal };
        continue;
      }
      existing.set(req.transaction.transactionId, { mac: req.transaction.requestMac, logIndex: index });
    }
    if (req.kind === 'access' && req.requires) {
      const denied = firstFailure(req.requires.checks, state, checks, 'all');
      if (denied) {
        const o = req.requires.otherwise;
        const leaf = typeof o === 'function' ? o() : o;
        accepted.push({ i, req: { ...req, leaf }, index, leafHash: hashLeaf(leaf), denied });
        continue;
      }
    }
    accepted.push({ i, req, index, leafHash: hashLeaf(req.leaf) });
  }
  if (accepted.length === 0) return { outcomes, accepted, newNodes: [], head, replayIndexes };
  const { newNodes, root } = appendLeaves(head.size, frontier, accepted.map((a) => a.leafHash));
  const newHead = { size: head.size + accepted.length, rootHash: root };
  for (const a of accepted) {
    const at = { logIndex: a.index, leafHash: a.leafHash, createdAt: a.req.createdAt, treeSize: newHead.size };
    outcomes[a.i] = a.denied !== undefined ? { status: 'denied', reason: a.denied, ...at } : { status: 'appended', ...at };
  }
  return { outcomes, accepted, newNodes, head: newHead, replayIndexes };
}

/**
 * Step 3: replays report the stored leaf hash of the original entry (or of its twin earlier in
 * the batch). MUST NOT answer a replay without it: a missing level-0 node means the stored tree
 * is damaged, and this throws (before COMMIT, so the driver retries entry by entry and only
 * this replay fails).
 */
export function withReplayLeafHashes(plan: BatchPlan, leafNodes: ReadonlyMap<string, Buffer>): AppendOutcome[] {
  return plan.outcomes.map((o) => {
    if (o.status !== 'replayed') return o;
    const fresh = plan.accepted.find((a) => a.index === o.logIndex);
    const stored = fresh?.leafHash ?? leafNodes.get(nodeKey({ level: 0, index: o.logIndex }));
    if (!stored) throw new PaylogError('INTERNAL', 'the stored leaf hash of a replayed entry is missing');
    return { ...o, leafHash: stored };
  });
}


/**
 * Step 4 (before the insert): the companion writes of the entries appended as asked (an access
 * entry appended as its `otherwise` leaf makes none), grouped by write, in registry order.
 */
export function companionCalls(plan: Pick<BatchPlan, 'accepted'>, writes: ReadonlyMap<string, CompanionWrite>): CompanionCall[] {
  const calls = new Map<string, CompanionCall>();
  for (const a of plan.accepted) {
    if (a.req.kind !== 'access' || !a.req.companion || a.denied !== undefined) continue;
    const write = writes.get(a.req.companion.write);
    if (!write) throw new PaylogError('INTERNAL', `companion write ${a.req.companion.write} is not registered`);
    let call = calls.get(write.id);
    if (!call) calls.set(write.id, (call = { write, indexes: [], args: [] }));
    call.indexes.push(a.index);
    call.args.push(a.req.companion.args);
  }
  return [...writes.keys()].filter((id) => calls.has(id)).map((id) => calls.get(id)!);
}

/** Step 5 (after the insert): each entry that asked for a companion write learns whether it changed a row. */
export function withCompanionResults(outcomes: AppendOutcome[], reqs: readonly AppendRequest[], moved: ReadonlySet<number>): AppendOutcome[] {
  return outcomes.map((o, i) => {
    const req = reqs[i]!;
    if (o.status !== 'appended' || req.kind !== 'access' || !req.companion) return o;
    return { ...o, companion: moved.has(o.logIndex) };
  });
}
