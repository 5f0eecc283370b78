/**
 * Test oracle for verify-log's shred report, written independently of src/audit/shred-report.ts:
 * given every leaf of the log (decoded, in index order) and which transactions are shredded,
 * the expected `[first, last]` ranges — a range holds only shredded transactions; other entry
 * kinds inside it do not split it.
 */
import pg from 'pg';
import { decodeLeaf } from '../../src/log/leaf.js';

export interface TxLeaf {
  index: number;
  id: string;
  epoch?: string;
  kms?: string;
  time: number;
}

/** Every transaction leaf of the log, in index order (read as the owner, behind the service). */
export async function transactionLeaves(databaseUrl: string): Promise<TxLeaf[]> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    const rows = (await c.query('SELECT idx, leaf FROM log_entries ORDER BY idx')).rows as { idx: string; leaf: Buffer }[];
    const out: TxLeaf[] = [];
    for (const r of rows) {
      const l = decodeLeaf(r.leaf) as any;
      if (l.type !== 'transaction') continue;
      if (l.v !== 1) out.push({ index: Number(r.idx), id: l.id, ...(l.env.ep ? { epoch: l.env.ep } : { kms: l.env.kms }), time: l.time });
      else out.push({ index: Number(r.idx), id: l.transactionId, ...(l.envelope.epochId ? { epoch: l.envelope.epochId } : { kms: l.envelope.kmsKeyId }), time: Date.parse(l.time) });
    }
    return out;
  } finally {
    await c.end();
  }
}

export function expectedRanges(txs: readonly TxLeaf[], shredded: (t: TxLeaf) => boolean): [number, number][] {
  const out: [number, number][] = [];
  let open = false;
  for (const t of txs) {
    if (!shredded(t)) {
      open = false;
      continue;
    }
    if (open) out[out.length - 1]![1] = t.index;
    else out.push([t.index, t.index]);
    open = true;
  }
  return out;
}
