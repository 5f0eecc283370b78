/**
 * C2SP tlog-witness §add-checkpoint (https://c2sp.org/tlog-witness): the request body. Pure.
 *
 *     old <decimal size>\n
 *     <base64 consistency proof hash>\n      (0 to 63 lines; none when old size is 0)
 *     \n
 *     <signed checkpoint note>
 */
import { PaylogError } from '../../errors.js';
import { HASH_SIZE } from '../merkle.js';
import { decodeBase64Strict } from '../note.js';

/** tlog-witness §add-checkpoint: the client MUST NOT send more than 63 proof lines. */
const MAX_PROOF_LINES = 63;
/** tlog-witness §add-checkpoint: the 409 answer's content type (body: decimal size + newline). */
export const TLOG_SIZE_CONTENT_TYPE = 'text/x.tlog.size';
/** Largest request body a witness reads. */
export const MAX_ADD_CHECKPOINT_BYTES = 64 * 1024;

const DECIMAL = /^(0|[1-9][0-9]*)$/;

interface AddCheckpointRequest {
  oldSize: number;
  proof: Buffer[];
  /** The signed checkpoint note, verbatim. */
  checkpoint: string;
}

/** tlog-witness §add-checkpoint: formats a request body. */
export function formatAddCheckpoint(r: AddCheckpointRequest): string {
  if (!Number.isSafeInteger(r.oldSize) || r.oldSize < 0) throw new PaylogError('BAD_REQUEST', 'old size must be a non-negative safe integer');
  if (r.proof.length > MAX_PROOF_LINES) throw new PaylogError('BAD_REQUEST', 'consistency proof too long');
  return `old ${r.oldSize}\n${r.proof.map((h) => `${h.toString('base64')}\n`).join('')}\n${r.checkpoint}`;
}

/** tlog-witness §add-checkpoint: strict parse; BAD_REQUEST (the witness's 400) on anything malformed. */
export function parseAddCheckpoint(body: string): AddCheckpointRequest {
  const fail = (why: string) => new PaylogError('BAD_REQUEST', `malformed add-checkpoint request: ${why}`);
  const blank = body.indexOf('\n\n');
  if (blank < 0) throw fail('no empty line before the checkpoint');
  const head = body.slice(0, blank).split('\n');
  const checkpoint = body.slice(blank + 2);
  const oldLine = head[0] as string;
  if (!oldLine.startsWith('old ') || !DECIMAL.test(oldLine.slice(4))) throw fail('bad old size line');
  const oldSize = Number(oldLine.slice(4));
  if (!Number.isSafeInteger(oldSize)) throw fail('old size too large');
  const proofLines = head.slice(1);
  if (proofLines.length > MAX_PROOF_LINES) throw fail('more than 63 proof lines');
  const proof = proofLines.map((l) => {
    const h = decodeBase64Strict(l);
    if (h === undefined || h.length !== HASH_SIZE) throw fail('bad proof line');
    return h;
  });
  if (checkpoint.length === 0) throw fail('no checkpoint');
  return { oldSize, proof, checkpoint };
}
