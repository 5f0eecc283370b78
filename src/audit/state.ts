/**
 * The auditor state file (`--state`): the last checkpoint verified, saved only after a run that
 * verified, read back (and checked against the note it carries) before the next run.
 *
 * Contract: pure, no I/O (the CLI reads and writes the file). {@link parseState} MUST reject a
 * state whose fields do not match its own checkpoint note (BAD_REQUEST).
 */
import { PaylogError } from '../errors.js';
import { parseCheckpointBody } from '../log/checkpoint.js';

/** Version of the auditor state file written by {@link formatState}. */
export const STATE_VERSION = 1;

export interface VerifierState {
  version: number;
  origin: string;
  size: number;
  /** base64 root hash. */
  rootHash: string;
  /** The signed note exactly as verified. */
  note: string;
  /** Verifier keys (vkey strings) trusted when this state was written; pinned for later runs. */
  keys: string[];
  verifiedAt: string;
}


/** Serialises a state file (JSON, newline-terminated). */
export function formatState(state: VerifierState): string {
  return `${JSON.stringify(state, null, 2)}\n`;
}

/** Parses a state file and checks that its fields match the note it carries. Throws BAD_REQUEST. */
export function parseState(text: string): VerifierState {
  let raw: any;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new PaylogError('BAD_REQUEST', 'state file is not JSON');
  }
  if (
    raw === null ||
    typeof raw !== 'object' ||
    raw.version !== STATE_VERSION ||
    typeof raw.origin !== 'string' ||
    !Number.isSafeInteger(raw.size) ||
    typeof raw.rootHash !== 'string' ||
    typeof raw.note !== 'string' ||
    !Array.isArray(raw.keys) ||
    !raw.keys.every((k: unknown) => typeof k === 'string')
  ) {
    throw new PaylogError('BAD_REQUEST', 'state file is malformed');
  }
  const split = raw.note.lastIndexOf('\n\n');
  let body;
  try {
    body = parseCheckpointBody(raw.note.slice(0, split + 1));
  } catch {
    throw new PaylogError('BAD_REQUEST', 'state file note is malformed');
  }
  if (body.origin !== raw.origin || body.size !== raw.size || body.rootHash.toString('base64') !== raw.rootHash) {
    throw new PaylogError('BAD_REQUEST', 'state file fields do not match its checkpoint note');
  }
  return raw as VerifierState;
}
