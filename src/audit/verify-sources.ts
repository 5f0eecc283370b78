/**
 * The verifier drivers of `verify-log`: a live service (entries API, through ./log-client.ts)
 * and an offline NDJSON export (src/log/export-format.ts). Tiles: ./tile-verify.ts.
 *
 * Contract: hands every input to {@link verifyLog} (./run.ts) and trusts none of it; an answer
 * that arrives but is refused or malformed MUST become a failure in the report, never a throw.
 */
import type { NoteVerifier } from '../log/note.js';
import { ExportFormatError, openExport, type ExportHead } from '../log/export-format.js';
import { errorMessage } from './failures.js';
import { isAnsweredFailure, type LogClient } from './log-client.js';
import { failureReport, type VerifyReport } from './report.js';
import { verifyLog } from './run.js';
import type { VerifierState } from './state.js';
import type { WitnessPolicy } from './witness-policy.js';

export interface RemoteVerifyOptions {
  verifiers: readonly NoteVerifier[];
  state?: VerifierState;
  /** Witness cosignatures the checkpoint must carry (`--witness`). */
  witnesses?: WitnessPolicy;
  onProgress?: (verified: number, total: number) => void;
}

/**
 * verify-log against a live service: latest checkpoint, consistency proof from the saved state,
 * all entries paged, inclusion proofs to name the first bad entry. A transport failure while
 * fetching the checkpoint throws `LogClientError` (kind `transport`); later ones are reported as
 * `FETCH_FAILED`. An answer that arrives but is refused or malformed — from the checkpoint on —
 * is a failure in the report (`REQUEST_REFUSED`, `PROOF_REFUSED`, `BAD_RESPONSE`).
 */
export async function verifyRemoteLog(client: LogClient, opts: RemoteVerifyOptions): Promise<VerifyReport> {
  let checkpoint: string;
  try {
    checkpoint = await client.checkpoint();
  } catch (e) {
    if (!isAnsweredFailure(e)) throw e;
    return failureReport({ code: e.failureCode, message: `checkpoint unavailable: ${errorMessage(e)}` });
  }
  const size = checkpointSize(checkpoint);
  return await verifyLog({
    checkpoint,
    verifiers: opts.verifiers,
    entries: client.entries(0, size),
    ...(opts.state !== undefined ? { state: opts.state } : {}),
    consistencyProof: (from, to) => client.consistencyProof(from, to),
    inclusionProof: (index, treeSize) => client.inclusionProof(index, treeSize),
    readLeaves: (start, end) => client.entries(start, end),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
    ...(opts.witnesses !== undefined ? { witnesses: opts.witnesses } : {}),
  });
}

/** Tree size from an (unverified) checkpoint note, only to decide how much to fetch; 0 if unparsable. */
export function checkpointSize(note: string): number {
  const lines = note.split('\n');
  const n = Number(lines[1]);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

export interface FileVerifyOptions {
  /** Trusted keys (the CLI decides where they come from; see `scripts/verify-log.ts`). */
  verifiers: readonly NoteVerifier[];
  state?: VerifierState;
  witnesses?: WitnessPolicy;
  onProgress?: (verified: number, total: number) => void;
}

/**
 * verify-log --file: verifies an export offline. The last checkpoint line covers the entries;
 * earlier checkpoints and the saved state are checked as prefix roots while streaming (so a
 * rollback or fork is still caught without a consistency proof). A bad entry can be named when
 * it breaks the index sequence or the leaf format; a root mismatch from a modified leaf cannot
 * be narrowed offline (no signed per-entry data) and is reported without an index.
 * A malformed line is an `EXPORT_MALFORMED` failure in the report (for an entry line, naming the
 * index it should have held); only an unreadable file throws.
 */
export async function verifyExportFile(path: string, opts: FileVerifyOptions): Promise<VerifyReport> {
  let head: ExportHead;
  try {
    head = await openExport(path);
  } catch (e) {
    if (!(e instanceof ExportFormatError)) throw e;
    return failureReport({ code: e.failureCode, message: e.message });
  }
  const checkpoint = head.checkpoints[head.checkpoints.length - 1] as string;
  return await verifyLog({
    checkpoint,
    verifiers: opts.verifiers,
    entries: head.entries,
    origin: head.origin,
    extraCheckpoints: head.checkpoints.slice(0, -1),
    ...(opts.state !== undefined ? { state: opts.state } : {}),
    ...(opts.witnesses !== undefined ? { witnesses: opts.witnesses } : {}),
    ...(opts.onProgress !== undefined ? { onProgress: opts.onProgress } : {}),
  });
}

/** Reads only the keys of an export (for `--trust-server-key` with `--file`). */
export async function exportKeys(path: string): Promise<string[]> {
  const head = await openExport(path);
  head.close();
  return head.vkeys;
}
