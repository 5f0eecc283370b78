/**
 * Offline inclusion proof of one log entry in the C2SP tlog-proof format
 * (https://c2sp.org/tlog-proof, `c2sp.org/tlog-proof@v1`):
 *
 *     c2sp.org/tlog-proof@v1
 *     extra <base64 of the exact leaf bytes>
 *     index <decimal index>
 *     <base64 audit path hash, leaf sibling first>   (zero or more lines)
 *     <empty line>
 *     <signed checkpoint, verbatim>
 *
 * paylog always carries the leaf bytes as the `extra` data: the spec says extra data is not
 * authenticated, and it is not trusted here either — the verifier recomputes the RFC 9162 leaf
 * hash from it, so the inclusion proof against the signed checkpoint is what authenticates it.
 * Files SHOULD use the extension `.tlog-proof`.
 */
import { PaylogError } from '../errors.js';
import { verifyCheckpoint } from '../log/checkpoint.js';
import { leafToJson, leafTransactionId } from '../log/leaf.js';
import { HASH_SIZE, hashLeaf, verifyInclusion } from '../log/merkle.js';
import { decodeBase64Strict, type NoteVerifier } from '../log/note.js';
import { checkLeaf } from './leaf-check.js';

/** tlog-proof §Format: first line. */
export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';
/** Recommended file extension (tlog-proof §Format). */
export const TLOG_PROOF_EXTENSION = '.tlog-proof';
/** tlog-proof §Format: decimal index, no leading zeroes. */
const DECIMAL = /^(0|[1-9][0-9]*)$/;

export interface ProofBundle {
  /** Exact leaf bytes (carried as `extra`). */
  leaf: Buffer;
  index: number;
  /** Audit path, leaf to root. */
  hashes: Buffer[];
  /** Signed checkpoint note, verbatim. */
  checkpoint: string;
}

function malformed(why: string): PaylogError {
  return new PaylogError('BAD_REQUEST', `malformed tlog-proof: ${why}`);
}

/** tlog-proof §Format: serialises a bundle. */
export function formatProofBundle(b: ProofBundle): string {
  if (!Number.isSafeInteger(b.index) || b.index < 0) throw malformed('index must be a non-negative safe integer');
  if (!b.hashes.every((h) => h.length === HASH_SIZE)) throw malformed('proof hashes must be 32 bytes');
  const lines = [TLOG_PROOF_HEADER, `extra ${b.leaf.toString('base64')}`, `index ${b.index}`, ...b.hashes.map((h) => h.toString('base64'))];
  return `${lines.join('\n')}\n\n${b.checkpoint}`;
}

/** tlog-proof §Format: strict parse (throws BAD_REQUEST). paylog bundles require the `extra` line. */
export function parseProofBundle(text: string): ProofBundle {
  if (typeof text !== 'string') throw malformed('not text');
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw malformed('no empty line before the checkpoint');
  const head = text.slice(0, blank).split('\n');
  const checkpoint = text.slice(blank + 2);
  if (head[0] !== TLOG_PROOF_HEADER) throw malformed('unknown header line');
  let i = 1;
  const extraLine = head[i];
  if (extraLine === undefined || !extraLine.startsWith('extra ')) throw malformed('paylog bundles carry the leaf as extra data');
  const leaf = decodeBase64Strict(extraLine.slice('extra '.length));
  if (leaf === undefined || leaf.length === 0) throw malformed('bad extra data');
  i += 1;
  const indexLine = head[i];
  if (indexLine === undefined || !indexLine.startsWith('index ') || !DECIMAL.test(indexLine.slice(6))) throw malformed('bad index line');
  const index = Number(indexLine.slice(6));
  if (!Number.isSafeInteger(index)) throw malformed('index too large');
  const hashes = head.slice(i + 1).map((l) => {
    const h = decodeBase64Strict(l);
    if (h === undefined || h.length !== HASH_SIZE) throw malformed('bad proof hash line');
    return h;
  });
  if (checkpoint.length === 0) throw malformed('no checkpoint');
  return { leaf, index, hashes, checkpoint };
}

export interface ProofVerification {
  ok: boolean;
  index?: number;
  treeSize?: number;
  origin?: string;
  verifiedKeys: string[];
  /** Leaf hash recomputed from the carried leaf bytes (base64). */
  leafHash?: string;
  /** Non-secret leaf fields (the leaf format never holds plaintext card data). */
  leaf?: Record<string, unknown>;
  failures: Array<{ code: string; message: string }>;
}

/**
 * Verifies a bundle offline: checkpoint signature (trusted keys, optional expected origin),
 * RFC 9162 §2.1.3.2 inclusion of SHA-256(0x00 || leaf) at `index`, leaf format v1 and the
 * no-card-data rule, and optionally that the leaf is about `transactionId`. Never throws for a
 * verification failure.
 */
export function verifyProofBundle(
  b: ProofBundle,
  verifiers: readonly NoteVerifier[],
  opts: { origin?: string; transactionId?: string } = {},
): ProofVerification {
  const out: ProofVerification = { ok: false, index: b.index, verifiedKeys: [], failures: [] };
  let cp;
  try {
    cp = verifyCheckpoint(b.checkpoint, verifiers, opts.origin !== undefined ? { origin: opts.origin } : {});
  } catch (e) {
    out.failures.push({ code: 'CHECKPOINT_INVALID', message: `checkpoint does not verify: ${(e as Error).message}` });
    return out;
  }
  out.treeSize = cp.size;
  out.origin = cp.origin;
  out.verifiedKeys = cp.verifiedKeys;
  const leafHash = hashLeaf(b.leaf);
  out.leafHash = leafHash.toString('base64');
  if (!verifyInclusion(leafHash, b.index, cp.size, b.hashes, cp.rootHash)) {
    out.failures.push({ code: 'INCLUSION_PROOF_INVALID', message: `leaf is not entry ${b.index} of the signed tree of size ${cp.size}` });
  }
  const checked = checkLeaf(b.index, b.leaf);
  if ('failure' in checked) out.failures.push(checked.failure);
  else {
    out.leaf = leafToJson(checked.leaf);
    if (opts.transactionId !== undefined && leafTransactionId(checked.leaf) !== opts.transactionId) {
      out.failures.push({ code: 'TRANSACTION_MISMATCH', message: 'the proven leaf is not about the expected transaction' });
    }
  }
  out.ok = out.failures.length === 0;
  return out;
}
