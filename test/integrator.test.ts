/**
 * The cluster's one integrator (src/cluster/integrator.ts) fed by workers' remote appenders
 * (src/cluster/remote-appender.ts), on real PostgreSQL, over a channel that serialises every
 * message the way node:cluster's 'advanced' IPC does (v8 serializer): entries of several workers
 * share batches and form one dense log, each batch is reported once, a failing entry fails only
 * itself, and every wait is bounded (a primary that is gone or silent, a worker that is gone).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deserialize, serialize } from 'node:v8';
import { applyMigrations, openAppDatabase, type AppDatabase } from '../src/db/connection.js';
import { LogAppender, type AppendRequest } from '../src/log/appender.js';
import type { CommitInfo } from '../src/log/append/types.js';
import { APPEND_PRECONDITIONS, keyMaterialRequires } from '../src/services/append-preconditions.js';
import { ForwardLedger, MARK_SENT, markSentWith } from '../src/services/forward/ledger.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { hashLeaf } from '../src/log/merkle.js';
import { isMessage } from '../src/cluster/messages.js';
import { ClusterIntegrator, type WorkerChannel } from '../src/cluster/integrator.js';
import { RemoteAppender, type PrimaryChannel } from '../src/cluster/remote-appender.js';
import { newTestDatabase } from './helpers/paylog.js';

let db: AppDatabase;
let primary: LogAppender;
let integrator: ClusterIntegrator;
beforeAll(async () => {
  const url = await newTestDatabase();
  await applyMigrations(url);
  db = openAppDatabase(url);
  primary = new LogAppender(db, { preconditions: APPEND_PRECONDITIONS, companions: [MARK_SENT], onCommit: (info) => integrator.committed(info) });
  integrator = new ClusterIntegrator(primary);
});
afterAll(async () => {
  await primary?.close();
  await db?.close();
});

let n = 0;
function keyEvent(): AppendRequest {
  const time = new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n++)).toISOString();
  return { kind: 'key_event', leaf: encodeLeaf({ v: 1, type: 'key_event', time, event: 'shred', keyName: `k${n}` }), createdAt: new Date(time) };
}

const ipcCopy = <T>(m: T): T => deserialize(serialize(m)) as T;

/** A worker's channel to `integrator`, as node:cluster IPC: asynchronous, serialised both ways. */
function workerLink(opts: { silent?: boolean } = {}) {
  let connected = true;
  let handed!: () => void;
  const delivered = new Promise<void>((r) => (handed = r));
  const onMessage: Array<(m: unknown) => void> = [];
  const onDisconnect: Array<() => void> = [];
  const toWorker: WorkerChannel = {
    isConnected: () => connected,
    send: (m, done) => setImmediate(() => (connected ? (onMessage.forEach((f) => f(ipcCopy(m))), done(null)) : done(new Error('channel closed')))),
  };
  const channel: PrimaryChannel = {
    send: (m, done) => {
      // Serialised at once, as process.send does (a value it cannot clone throws here).
      const copy = ipcCopy(m);
      setImmediate(() => {
        if (!connected) return done(new Error('channel closed'));
        if (!opts.silent && isMessage(copy, 'append')) integrator.handle(toWorker, copy.id, copy.reqs);
        done(null);
        handed();
      });
    },
    onMessage: (f) => void onMessage.push(f),
    onDisconnect: (f) => void onDisconnect.push(f),
    connected: () => connected,
  };
  return {
    channel,
    /** Resolves once a message reached the primary. */
    delivered,
    /** The channel closes (the primary, or this worker, is gone). */
    cut: () => {
      connected = false;
      onDisconnect.forEach((f) => f());
    },
  };
}

async function logSize(): Promise<number> {
  return (await db.pool.query('SELECT count(*)::int AS c FROM log_entries')).rows[0].c as number;
}

describe('one integrator fed by every worker', () => {
  it("two workers' entries share batches and form one dense log; each batch is reported once, to one worker", async () => {
    const reports: CommitInfo[] = [];
    const workers = [workerLink(), workerLink()].map((l) => new RemoteAppender({ channel: l.channel, onCommit: (i) => reports.push(i) }));
    const before = await logSize();
    const outcomes = await Promise.all(Array.from({ length: 120 }, (_, i) => workers[i % 2]!.append(keyEvent())));
    const indexes = outcomes.map((o) => (o.status === 'appended' ? o.logIndex : -1)).sort((a, b) => a - b);
    expect(indexes).toEqual(Array.from({ length: 120 }, (_, i) => before + i));
    for (const o of outcomes) {
      if (o.status !== 'appended') throw new Error(o.status);
      expect(Buffer.isBuffer(o.leafHash) && o.leafHash.length === 32).toBe(true);
      expect(o.createdAt).toBeInstanceOf(Date);
    }
    expect(reports.reduce((s, r) => s + r.batchSize, 0)).toBe(120);
    expect(reports.length).toBeLessThan(120); // group commit across both workers' entries
    expect(Buffer.isBuffer(reports.at(-1)!.head.rootHash)).toBe(true);
    await Promise.all(workers.map((w) => w.close()));
  });

  it("a failing entry fails only itself, with the integrator's error code", async () => {
    const w = new RemoteAppender({ channel: workerLink().channel });
    const nullId: AppendRequest = {
      kind: 'access',
      leaf: encodeLeaf({ v: 1, type: 'key_event', time: '2026-01-01T00:00:00.000Z', event: 'shred' }),
      createdAt: new Date(),
      access: { transactionId: null as unknown as string }, // NOT NULL violation inside the database
    };
    const unregistered: AppendRequest = { ...keyEvent(), kind: 'access', access: { transactionId: 'tx' }, requires: { checks: [{ check: 'no_such_check', key: 'k' }], otherwise: keyEvent().leaf } };
    const settled = await Promise.allSettled([keyEvent(), nullId, keyEvent(), unregistered].map((r) => w.append(r)));
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    expect((settled[1] as PromiseRejectedResult).reason).toMatchObject({ name: 'PaylogError', code: 'LOG_UNAVAILABLE' });
    expect((settled[3] as PromiseRejectedResult).reason).toMatchObject({ name: 'PaylogError', code: 'INTERNAL' });
    await w.close();
  });

  it('a granted access entry (denied leaf made on demand, a companion write) crosses the channel beside other entries; its outcome says whether the write moved its row', async () => {
    const w = new RemoteAppender({ channel: workerLink().channel });
    expect(await new ForwardLedger(db).claim('tx-remote', 'k', Buffer.alloc(32, 1))).toEqual({ claimed: true });
    const deniedLeaf = keyEvent().leaf;
    // No data key for tx-remote: the check fails at commit and the denied leaf is appended instead.
    const { leaf, createdAt } = keyEvent();
    const shredded: AppendRequest = { leaf, createdAt, kind: 'access', access: { transactionId: 'tx-remote' }, requires: keyMaterialRequires({ transactionId: 'tx-remote' }, () => deniedLeaf) };
    const granted: AppendRequest = { leaf: keyEvent().leaf, createdAt, kind: 'access', access: { transactionId: 'tx-remote' }, companion: markSentWith('tx-remote', 'k') };
    const [a, b, c] = await Promise.all([keyEvent(), shredded, granted].map((r) => w.append(r)));
    expect(a!.status).toBe('appended');
    expect(b).toMatchObject({ status: 'denied', leafHash: hashLeaf(deniedLeaf) });
    expect(c).toMatchObject({ status: 'appended', companion: true });
    const row = (await db.pool.query("SELECT state, access_log_index FROM forward_requests WHERE transaction_id = 'tx-remote'")).rows[0];
    expect([row.state, Number(row.access_log_index)]).toEqual(['sent', c!.status === 'appended' ? c!.logIndex : -1]);
    await w.close();
  });

  it('a primary that is gone: unanswered entries are rejected at once, and so are new ones', async () => {
    const link = workerLink({ silent: true });
    const w = new RemoteAppender({ channel: link.channel });
    const pending = w.append(keyEvent());
    await link.delivered;
    link.cut();
    await expect(pending).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    await expect(w.append(keyEvent())).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    await w.close();
  });

  it('a primary that never answers: the entry is rejected after the wait, and close() does not hang', async () => {
    const w = new RemoteAppender({ channel: workerLink({ silent: true }).channel, waitMs: 200 });
    const pending = w.append(keyEvent());
    const closed = w.close();
    await expect(pending).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
    await closed;
    await expect(w.append(keyEvent())).rejects.toMatchObject({ code: 'LOG_UNAVAILABLE' });
  });

  it('a worker gone before its answer: its entries still commit, and the batch is reported with the next answer', async () => {
    const gone = workerLink();
    const reports: CommitInfo[] = [];
    const w1 = new RemoteAppender({ channel: gone.channel });
    const w2 = new RemoteAppender({ channel: workerLink().channel, onCommit: (i) => reports.push(i) });
    const before = await logSize();
    const lost = [w1.append(keyEvent()), w1.append(keyEvent())].map((p) => p.catch((e: unknown) => e));
    await gone.delivered; // the entries are with the integrator
    gone.cut();
    expect(await Promise.all(lost)).toEqual([expect.objectContaining({ code: 'LOG_UNAVAILABLE' }), expect.objectContaining({ code: 'LOG_UNAVAILABLE' })]);
    await primary.append(keyEvent()); // a batch after the gone worker's (queued after it)
    const o = await w2.append(keyEvent());
    expect(o.status).toBe('appended');
    expect(await logSize()).toBe(before + 4);
    expect(reports.reduce((s, r) => s + r.batchSize, 0)).toBe(4);
    await w2.close();
  });
});
