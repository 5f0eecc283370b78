/**
 * Trusted checkpoint keys for the auditor: c2sp.org/signed-note §Verifier keys, given on the
 * command line as a vkey string or a file of vkey lines.
 *
 * Contract: MUST throw BAD_REQUEST for a malformed key or an empty/unreadable key file; never
 * fetches a key (trusting the server's key is the CLI's explicit choice).
 */
import { readFileSync } from 'node:fs';
import { PaylogError } from '../errors.js';
import { parseVerifierKey, type NoteVerifier } from '../log/note.js';

/** Parses a verifier key given as a vkey string or as a path to a file holding vkey lines. */
export function loadVerifierKeys(arg: string): string[] {
  const trimmed = arg.trim();
  if (/^[^\s+]+\+[0-9a-fA-F]{8}\+[A-Za-z0-9+/=]+$/.test(trimmed)) return [trimmed];
  let text: string;
  try {
    text = readFileSync(arg, 'utf8');
  } catch (cause) {
    throw new PaylogError('BAD_REQUEST', 'log key is neither a verifier key string nor a readable file', undefined, { cause });
  }
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('#'));
  if (keys.length === 0) throw new PaylogError('BAD_REQUEST', 'log key file holds no verifier key');
  return keys;
}

/** signed-note §Verifier keys: vkey strings → trusted verifiers (throws BAD_REQUEST if malformed). */
export function toNoteVerifiers(vkeys: readonly string[]): NoteVerifier[] {
  return vkeys.map((v) => {
    const { name, publicKey } = parseVerifierKey(v);
    return { name, publicKey };
  });
}
