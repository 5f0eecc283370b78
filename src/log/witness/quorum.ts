/**
 * The newest checkpoint that reached the witness quorum (C2SP tlog-witness / tlog-cosignature):
 * read from the append-only `witness_cosignatures` table and re-verified on every read.
 *
 * MUST: count a witness only when its cosignature line verifies under its configured key over a
 *       checkpoint signed by our log keys (a row inserted behind the service's back is ignored).
 * MUST: return the note with the valid cosignature lines appended.
 * MUST NOT: write anything.
 */
import { desc, inArray } from 'drizzle-orm';
import type { Db } from '../../db/connection.js';
import { witnessCosignatures } from '../../db/schema.js';
import { readCheckpoint } from '../checkpoint-publisher.js';
import type { NoteVerifier } from '../note.js';
import { verifyCosignatures } from './cosignature.js';
import type { WitnessEndpoint } from './endpoints.js';

/** Cosignature rows looked through for the newest quorum checkpoint. */
const QUORUM_SCAN_ROWS = 512;

/** Newest size with at least `quorum` verifying cosignatures, as a note with those lines; null if none. */
export async function newestQuorumCheckpoint(
  db: Db,
  opts: { witnesses: readonly WitnessEndpoint[]; quorum: number; logVerifiers: NoteVerifier[] },
): Promise<{ size: number; note: string } | null> {
  const rows = await db
    .select()
    .from(witnessCosignatures)
    .where(inArray(witnessCosignatures.witnessKey, opts.witnesses.map((w) => w.key)))
    .orderBy(desc(witnessCosignatures.checkpointSize), desc(witnessCosignatures.id))
    .limit(QUORUM_SCAN_ROWS);
  const bySize = new Map<number, typeof rows>();
  for (const r of rows) bySize.set(r.checkpointSize, [...(bySize.get(r.checkpointSize) ?? []), r]);
  for (const [size, group] of bySize) {
    if (new Set(group.map((g) => g.witnessKey)).size < opts.quorum) continue;
    const cp = await readCheckpoint(db, opts.logVerifiers, size);
    if (cp === null) continue;
    const lines = [...new Set(group.map((g) => g.signatureLine))];
    const { valid } = verifyCosignatures(`${cp.note}${lines.join('\n')}\n`, opts.witnesses.map((w) => w.cosigner));
    if (valid.length < opts.quorum) continue;
    return { size, note: `${cp.note}${valid.map((v) => `${v.line}\n`).join('')}` };
  }
  return null;
}
