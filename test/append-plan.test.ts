/**
 * Batch planning (src/log/append/plan.ts) without a database: the state a batch reads under the
 * append lock is built by hand, and every decision — replays, conflicts, refusals, the denied
 * substitution for shredded key material, index assignment, the Merkle nodes and root — is
 * checked against src/log/merkle.ts computed independently over all leaves.
 */
import { describe, expect, it } from 'vitest';
import { batchKeys, firstFailure, planBatch, withReplayLeafHashes, type BatchState, type StoredTransaction } from '../src/log/append/plan.js';
import { checkSql, checkTable, type PreconditionCheck } from '../src/log/append/preconditions.js';
import type { AppendRequest, Precondition } from '../src/log/append/types.js';
import { EMPTY_ROOT, hashLeaf, nodeKey, rangeNodes, rootFromLeafHashes } from '../src/log/merkle.js';
import { APPEND_PRECONDITIONS, keyMaterialRequires, submissionRequires } from '../src/services/append-preconditions.js';

const CHECKS: PreconditionCheck[] = [
  { id: 'gate', reason: 'gate_closed', beforeReplay: true, failing: 'SELECT g FROM unnest({keys}) AS g' },
  { id: 'open', reason: 'not_open', held: 'SELECT 1', failing: 'SELECT x FROM {held}' },
  { id: 'fresh', reason: 'stale', failing: 'SELECT g FROM unnest({keys}) AS g' },
];
const TABLE = checkTable(CHECKS);
const T0 = new Date('2026-12-01T00:00:00Z');

const leafOf = (n: number) => Buffer.from(`prior leaf ${n}`);

/** The state of a log holding `size` leaves (`leafOf(0..size-1)`), as the driver would read it. */
function stateOf(size: number, extra: Partial<Omit<BatchState, 'head' | 'frontier'>> = {}): BatchState {
  const hashes = Array.from({ length: size }, (_, i) => hashLeaf(leafOf(i)));
  const frontier = rangeNodes(0, size).map(({ level, index }) => rootFromLeafHashes(hashes.slice(index << level, (index + 1) << level)));
  return {
    head: { size, rootHash: size === 0 ? EMPTY_ROOT : rootFromLeafHashes(hashes) },
    frontier,
    existing: extra.existing ?? new Map(),
    failed: extra.failed ?? new Map(),
  };
}

let seq = 0;
function tx(id: string, mac = 1, requires?: Precondition[]): Extract<AppendRequest, { kind: 'transaction' }> {
  return {
    kind: 'transaction',
    leaf: Buffer.from(`tx ${id} ${seq++}`),
    createdAt: T0,
    transaction: { transactionId: id, requestMac: Buffer.alloc(32, mac) },
    dataKey: { wrappedKey: Buffer.alloc(8), kmsKeyId: null, epochId: null },
    ...(requires ? { requires } : {}),
  };
}
const access = (id: string, checks?: Precondition[]): AppendRequest => ({
  kind: 'access',
  leaf: Buffer.from(`granted ${id}`),
  createdAt: T0,
  access: { transactionId: id },
  ...(checks ? { requires: { checks, otherwise: Buffer.from(`denied ${id}`) } } : {}),
});
const event = (n: number): AppendRequest => ({ kind: 'admin_event', leaf: Buffer.from(`event ${n}`), createdAt: T0 });

describe('planBatch: index assignment and Merkle state', () => {
  it.each([0, 1, 5, 8, 13])('appends densely after a head of %i leaves; new nodes and root agree with merkle.ts over every leaf', (size) => {
    const state = stateOf(size);
    const reqs = [tx(`a${size}`), event(1), access('a'), tx(`b${size}`), event(2)];
    const plan = planBatch(state, reqs, TABLE);
    expect(plan.accepted.map((a) => a.index)).toEqual([size, size + 1, size + 2, size + 3, size + 4]);
    expect(plan.outcomes.map((o) => o.status)).toEqual(Array(5).fill('appended'));
    const all = [...Array.from({ length: size }, (_, i) => hashLeaf(leafOf(i))), ...reqs.map((r) => hashLeaf(r.leaf))];
    expect(plan.head).toEqual({ size: size + 5, rootHash: rootFromLeafHashes(all) });
    plan.outcomes.forEach((o, i) => expect(o).toEqual({ status: 'appended', logIndex: size + i, leafHash: hashLeaf(reqs[i]!.leaf), createdAt: T0, treeSize: size + 5 }));
    // Every new node is the root of its leaf range, and every complete subtree touching a new leaf is there.
    for (const n of plan.newNodes) expect(n.hash).toEqual(rootFromLeafHashes(all.slice(n.index << n.level, (n.index + 1) << n.level)));
    const keys = new Set(plan.newNodes.map(nodeKey));
    for (const id of rangeNodes(0, size + 5)) if (((id.index + 1) << id.level) > size) expect(keys.has(nodeKey(id))).toBe(true);
  });

  it('an empty batch or an all-refused batch writes nothing and keeps the head', () => {
    const state = stateOf(3, { failed: new Map([['fresh', new Set(['k'])]]) });
    const plan = planBatch(state, [tx('x', 1, [{ check: 'fresh', key: 'k' }])], TABLE);
    expect(plan.accepted).toEqual([]);
    expect(plan.newNodes).toEqual([]);
    expect(plan.head).toBe(state.head);
    expect(planBatch(state, [], TABLE).outcomes).toEqual([]);
  });

  it('does not mutate the state it was given', () => {
    const existing = new Map<string, StoredTransaction>();
    const state = stateOf(2, { existing });
    planBatch(state, [tx('new-1'), tx('new-1')], TABLE);
    expect(existing.size).toBe(0);
  });
});

describe('planBatch: idempotency', () => {
  const stored: StoredTransaction = { mac: Buffer.alloc(32, 1), logIndex: 1 };

  it('a stored id with the same MAC is a replay (stored index and time), with another MAC a conflict; neither takes an index', () => {
    const state = stateOf(4, { existing: new Map([['old', stored]]) });
    const plan = planBatch(state, [tx('old', 1), tx('old', 2), tx('new')], TABLE);
    expect(plan.outcomes[0]).toEqual({ status: 'replayed', logIndex: 1, leafHash: Buffer.alloc(0) });
    expect(plan.outcomes[1]).toEqual({ status: 'conflict', logIndex: 1 });
    expect(plan.outcomes[2]).toMatchObject({ status: 'appended', logIndex: 4, treeSize: 5 });
    expect(plan.replayIndexes).toEqual([1]);
    const filled = withReplayLeafHashes(plan, new Map([[nodeKey({ level: 0, index: 1 }), hashLeaf(leafOf(1))]]));
    expect(filled[0]).toEqual({ status: 'replayed', logIndex: 1, leafHash: hashLeaf(leafOf(1)) });
  });

  it('a twin earlier in the same batch: replay (its leaf hash from the batch) or conflict', () => {
    const first = tx('twin', 7);
    const plan = planBatch(stateOf(0), [first, tx('twin', 7), tx('twin', 8)], TABLE);
    expect(plan.accepted).toHaveLength(1);
    expect(plan.outcomes[2]).toEqual({ status: 'conflict', logIndex: 0 });
    const filled = withReplayLeafHashes(plan, new Map());
    expect(filled[1]).toEqual({ status: 'replayed', logIndex: 0, leafHash: hashLeaf(first.leaf) });
  });

  it('a replay whose stored leaf hash is missing fails (INTERNAL), never answered without it', () => {
    const plan = planBatch(stateOf(4, { existing: new Map([['old', stored]]) }), [tx('old', 1)], TABLE);
    expect(() => withReplayLeafHashes(plan, new Map())).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});

describe('planBatch: refusals', () => {
  const stored: StoredTransaction = { mac: Buffer.alloc(32, 1), logIndex: 0 };
  const failed = new Map([
    ['gate', new Set(['shut'])],
    ['open', new Set(['closed'])],
    ['fresh', new Set(['old-key'])],
  ]);

  it('a beforeReplay check refuses even an identical replay; the others only entries that would append', () => {
    const state = stateOf(1, { existing: new Map([['seen', stored]]), failed });
    const plan = planBatch(
      state,
      [
        tx('seen', 1, [{ check: 'gate', key: 'shut' }]),
        tx('seen', 1, [{ check: 'open', key: 'closed' }]),
        tx('seen', 2, [{ check: 'fresh', key: 'old-key' }]),
        tx('new', 1, [{ check: 'open', key: 'closed' }, { check: 'fresh', key: 'old-key' }]),
        tx('new', 1, [{ check: 'fresh', key: 'old-key' }, { check: 'open', key: 'closed' }]),
        tx('new', 1, [{ check: 'open', key: 'fine' }, { check: 'gate', key: 'shut' }]),
        tx('ok', 1, [{ check: 'gate', key: 'fine' }, { check: 'open', key: 'fine' }]),
      ],
      TABLE,
    );
    expect(plan.outcomes.map((o) => ('reason' in o ? o.reason : o.status))).toEqual(['gate_closed', 'replayed', 'conflict', 'not_open', 'stale', 'gate_closed', 'appended']);
    expect(plan.outcomes[6]).toMatchObject({ logIndex: 1, treeSize: 2 });
  });

  it('a refused entry does not reserve its transaction id: a later entry of the same id in the batch is decided afresh', () => {
    const state = stateOf(0, { failed });
    const plan = planBatch(state, [tx('same', 1, [{ check: 'fresh', key: 'old-key' }]), tx('same', 1, [{ check: 'fresh', key: 'new-key' }])], TABLE);
    expect(plan.outcomes.map((o) => o.status)).toEqual(['refused', 'appended']);
  });

  it('an unregistered check fails closed', () => {
    expect(firstFailure([{ check: 'nobody', key: 'x' }], { failed: new Map() }, TABLE, 'all')).toBe('unknown_precondition');
  });
});

describe('planBatch: denied access (shredded key material)', () => {
  it('an access entry whose precondition fails is appended as its otherwise leaf, in place, and resolves denied', () => {
    const state = stateOf(3, { failed: new Map([['fresh', new Set(['gone'])]]) });
    const reqs = [access('t1', [{ check: 'fresh', key: 'gone' }]), access('t2', [{ check: 'fresh', key: 'here' }]), access('t3')];
    const plan = planBatch(state, reqs, TABLE);
    expect(plan.accepted.map((a) => a.req.leaf.toString())).toEqual(['denied t1', 'granted t2', 'granted t3']);
    expect(plan.outcomes[0]).toEqual({ status: 'denied', reason: 'stale', logIndex: 3, leafHash: hashLeaf(Buffer.from('denied t1')), createdAt: T0, treeSize: 6 });
    expect(plan.outcomes[1]).toMatchObject({ status: 'appended', logIndex: 4 });
    const all = [0, 1, 2].map((i) => hashLeaf(leafOf(i))).concat(plan.accepted.map((a) => hashLeaf(a.req.leaf)));
    expect(plan.head.rootHash).toEqual(rootFromLeafHashes(all));
  });
});

describe('the payment preconditions (src/services/append-preconditions.ts) as the plan sees them', () => {
  const table = checkTable(APPEND_PRECONDITIONS);
  const principal = { certificateFingerprint: 'sha256:aa', serialHex: '5e1' };
  const failedBy = (entries: Array<[number, string]>) =>
    new Map(APPEND_PRECONDITIONS.map((c, i) => [c.id, new Set(entries.filter(([j]) => j === i).map(([, k]) => k))]));
  const stored: StoredTransaction = { mac: Buffer.alloc(32, 1), logIndex: 0 };

  it('a revoked submitter (by fingerprint or by serial) is refused first, replays included; then replays; then processor before epoch', () => {
    const reqs = [
      tx('seen', 1, submissionRequires({ principal, processor: 'p-off' })),
      tx('seen', 1, submissionRequires({ principal: { ...principal, certificateFingerprint: 'sha256:bb' }, processor: 'p-off', epochId: 'e-old' })),
      tx('n1', 1, submissionRequires({ principal: { certificateFingerprint: 'sha256:bb', serialHex: '5e2' }, processor: 'p-off', epochId: 'e-old' })),
      tx('n2', 1, submissionRequires({ processor: 'p-on', epochId: 'e-old' })),
      tx('n3', 1, submissionRequires({ principal: { certificateFingerprint: 'sha256:cc', serialHex: '5e3' }, processor: 'p-on', epochId: 'e-new' })),
    ];
    // 0: fingerprint, 1: serial, 2: processor, 3: epoch encrypts
    const state = stateOf(1, { existing: new Map([['seen', stored]]), failed: failedBy([[0, 'sha256:aa'], [1, '5e1'], [2, 'p-off'], [3, 'e-old']]) });
    const plan = planBatch(state, reqs, table);
    expect(plan.outcomes.map((o) => ('reason' in o ? o.reason : o.status))).toEqual(['principal_revoked', 'principal_revoked', 'processor_inactive', 'epoch_unusable', 'appended']);
  });

  it('a granted release: epoch shredded is reported before data key shredded', () => {
    const state = stateOf(0, { failed: failedBy([[4, 'e1'], [5, 't1'], [5, 't2']]) });
    const reqs: AppendRequest[] = [
      { kind: 'access', leaf: Buffer.from('g1'), createdAt: T0, access: { transactionId: 't1' }, requires: keyMaterialRequires({ transactionId: 't1', epochId: 'e1' }, Buffer.from('d1')) },
      { kind: 'access', leaf: Buffer.from('g2'), createdAt: T0, access: { transactionId: 't2' }, requires: keyMaterialRequires({ transactionId: 't2' }, Buffer.from('d2')) },
      { kind: 'access', leaf: Buffer.from('g3'), createdAt: T0, access: { transactionId: 't3' }, requires: keyMaterialRequires({ transactionId: 't3', epochId: 'e2' }, Buffer.from('d3')) },
    ];
    const plan = planBatch(state, reqs, table);
    expect(plan.outcomes.map((o) => ('reason' in o ? o.reason : o.status))).toEqual(['epoch_shredded', 'data_key_shredded', 'appended']);
    expect(plan.accepted.map((a) => a.req.leaf.toString())).toEqual(['d1', 'd2', 'g3']);
  });
});

describe('batch-state inputs and the check registry', () => {
  it('batchKeys: the batch transaction ids and, per check, its distinct keys', () => {
    const keys = batchKeys([
      tx('a', 1, [{ check: 'gate', key: 'k1' }, { check: 'fresh', key: 'k2' }]),
      tx('b', 1, [{ check: 'gate', key: 'k1' }]),
      access('a', [{ check: 'fresh', key: 'k3' }]),
      event(0),
    ]);
    expect(keys.transactionIds).toEqual(['a', 'b']);
    expect(Object.fromEntries(keys.byCheck)).toEqual({ gate: ['k1'], fresh: ['k2', 'k3'] });
  });

  it('checkTable refuses a malformed id, a duplicate, and held rows the check never reads (never locked)', () => {
    expect(() => checkTable([{ id: 'Bad-Id', reason: 'r', failing: 'SELECT 1' }])).toThrow(/not \[a-z\]/);
    expect(() => checkTable([CHECKS[0]!, CHECKS[0]!])).toThrow(/twice/);
    expect(() => checkTable([{ id: 'x', reason: 'r', held: 'SELECT 1 FOR SHARE', failing: 'SELECT 1' }])).toThrow(/never reads/);
    expect(() => checkTable([{ id: 'x', reason: 'r', failing: 'SELECT * FROM {held}' }])).toThrow(/without one/);
  });

  it('checkSql binds check i to parameter firstParam + i and names its CTE after the check', () => {
    const { ctes, arms } = checkSql(CHECKS, 2);
    expect(ctes).toEqual(['open_held AS (\n  SELECT 1\n)']);
    expect(arms[0]).toContain("SELECT 'c0', f.id");
    expect(arms[0]).toContain('unnest($2::text[])');
    expect(arms[1]).toContain('FROM open_held');
    expect(arms[2]).toContain('unnest($4::text[])');
  });
});
