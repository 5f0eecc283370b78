/**
 * C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the note text of a signed tree head.
 *
 *     <origin>\n<decimal tree size>\n<base64 root hash>\n[<extension line>\n ...]
 *
 * Sizes are `number`s (safe integers, ≤ 2^53 − 1). Parsing is strict and throws
 * `PaylogError('INTEGRITY_FAILURE')`; formatting invalid input throws `PaylogError('BAD_REQUEST')`.
 */
import { PaylogError } from '../errors.js';
import { HASH_SIZE } from './merkle.js';
import { decodeBase64Strict, openNote, type NoteVerifier } from './note.js';

interface CheckpointBody {
  origin: string;
  size: number;
  rootHash: Buffer;
  /** Opaque, non-empty extension lines (NOT RECOMMENDED by the spec; empty for paylog). */
  extensions?: string[];
}

export interface VerifiedCheckpoint {
  origin: string;
  size: number;
  rootHash: Buffer;
  extensions: string[];
  /** Names of the trusted keys whose signatures verified (see `openNote`). */
  verifiedBy: string[];
  /** `<name>+<hex key ID>` of the verified keys, parallel to `verifiedBy`. */
  verifiedKeys: string[];
  /** The exact note text that was signed. */
  text: string;
}

/** tlog-checkpoint §Note text, line 2: ASCII decimal, no leading zeroes unless the size is 0. */
const DECIMAL = /^(0|[1-9][0-9]*)$/;

// tlog-checkpoint §Note text: a line is non-empty and contains no newline (nor other controls).
function isValidLine(line: unknown): line is string {
  return typeof line === 'string' && line.length > 0 && !/[\u0000-\u001f]/u.test(line);
}

/** tlog-checkpoint §Note text: formats the checkpoint body, ending in a newline. */
export function formatCheckpointBody(body: CheckpointBody): string {
  const { origin, size, rootHash, extensions = [] } = body;
  if (!isValidLine(origin)) throw new PaylogError('BAD_REQUEST', 'checkpoint origin must be a non-empty single line');
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new PaylogError('BAD_REQUEST', 'checkpoint size must be a non-negative safe integer');
  }
  if (!Buffer.isBuffer(rootHash) || rootHash.length !== HASH_SIZE) {
    throw new PaylogError('BAD_REQUEST', 'checkpoint root hash must be 32 bytes');
  }
  if (!extensions.every(isValidLine)) {
    throw new PaylogError('BAD_REQUEST', 'checkpoint extension lines must be non-empty single lines');
  }
  const lines = [origin, String(size), rootHash.toString('base64'), ...extensions];
  return lines.map((l) => `${l}\n`).join('');
}

/**
 * tlog-checkpoint §Note text: strict parse. Requires a final newline, at least three lines, a
 * non-empty origin, a decimal size without leading zeroes that fits a safe integer, a canonical
 * base64 32-byte root hash, and non-empty extension lines.
 */
export function parseCheckpointBody(text: string): Required<CheckpointBody> {
  const fail = (why: string): PaylogError => new PaylogError('INTEGRITY_FAILURE', `malformed checkpoint: ${why}`);
  if (typeof text !== 'string' || !text.endsWith('\n')) throw fail('text must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const [origin, sizeLine, rootLine, ...extensions] = lines;
  if (origin === undefined || sizeLine === undefined || rootLine === undefined) throw fail('fewer than three lines');
  if (!isValidLine(origin)) throw fail('bad origin line');
  if (!DECIMAL.test(sizeLine)) throw fail('bad tree size');
  const size = Number(sizeLine);
  if (!Number.isSafeInteger(size)) throw fail('tree size too large');
  const rootHash = decodeBase64Strict(rootLine);
  if (rootHash === undefined || rootHash.length !== HASH_SIZE) throw fail('bad root hash');
  if (!extensions.every(isValidLine)) throw fail('empty extension line');
  return { origin, size, rootHash, extensions };
}

/**
 * Opens a signed checkpoint with the trusted `verifiers` (C2SP signed-note) and parses its body.
 * With `options.origin`, also requires the checkpoint's origin to equal it.
 * Throws `PaylogError('INTEGRITY_FAILURE')` on any failure.
 */
export function verifyCheckpoint(
  note: string,
  verifiers: readonly NoteVerifier[],
  options: { origin?: string } = {},
): VerifiedCheckpoint {
  const opened = openNote(note, verifiers);
  const body = parseCheckpointBody(opened.text);
  if (options.origin !== undefined && body.origin !== options.origin) {
    throw new PaylogError('INTEGRITY_FAILURE', 'checkpoint origin does not match the expected log');
  }
  return { ...body, verifiedBy: opened.verifiedBy, verifiedKeys: opened.verifiedKeys, text: opened.text };
}

/**
 * The last note each verifier set verified, with its size and root (issue 20: the newest stored
 * checkpoint is read on every publication and most serves, and is nearly always the note
 * verified the time before). `verifyCheckpoint` is a pure function of (note, verifiers): a note
 * equal to the remembered one, under the same keys (compared by name and public key, not by
 * array identity alone), is the same verdict without a second Ed25519 verification.
 */
const lastVerifiedByVerifiers = new WeakMap<readonly NoteVerifier[], { keys: string; note: string; size: number; rootHash: Buffer }>();

/**
 * `verifyCheckpoint(note, verifiers)`'s size and root (a copy), remembered for the last note per
 * verifier set (see above). Throws like `verifyCheckpoint`; a failure is not remembered.
 */
export function verifyCheckpointRemembered(note: string, verifiers: readonly NoteVerifier[]): { size: number; rootHash: Buffer } {
  const keys = verifiers.map((v) => `${v.name} ${v.publicKey.toString('hex')}`).join('\n');
  const last = lastVerifiedByVerifiers.get(verifiers);
  if (last && last.note === note && last.keys === keys) return { size: last.size, rootHash: Buffer.from(last.rootHash) };
  const c = verifyCheckpoint(note, verifiers);
  lastVerifiedByVerifiers.set(verifiers, { keys, note, size: c.size, rootHash: Buffer.from(c.rootHash) });
  return { size: c.size, rootHash: c.rootHash };
}
