/**
 * C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), Ed25519 type: witness
 * cosignatures on a checkpoint. Pure apart from node:crypto.
 *
 * - §Format: key ID = SHA-256(<name> || "\n" || 0x04 || 32-byte public key)[:4]; the signature
 *   line is `— <name> base64(key ID || timestamped_signature)` where timestamped_signature is a
 *   big-endian u64 POSIX timestamp (≤ 2^63 − 1) followed by the 64-byte Ed25519 signature.
 * - §Ed25519 signed message: "cosignature/v1\n" || "time <decimal timestamp>\n" || the whole
 *   checkpoint note text (with its final newline, without signature lines).
 * - vkeys (signed-note §Verifier keys) use signature type 0x04.
 */
import { createHash, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { PaylogError } from '../../errors.js';
import { decodeBase64Strict, ED25519_PUBLIC_KEY_SIZE, ED25519_SIGNATURE_SIZE, isValidKeyName, KEY_ID_SIZE } from '../note.js';

/** tlog-cosignature §Format: the vkey / key-ID signature type of Ed25519 cosignatures. */
const SIG_TYPE_COSIGNATURE_ED25519 = 0x04;
/** tlog-cosignature §Ed25519 signed message: the header line. */
const COSIGNATURE_HEADER = 'cosignature/v1';
/** Bytes after the key ID: u64 timestamp + Ed25519 signature. */
const TIMESTAMPED_SIGNATURE_SIZE = 8 + ED25519_SIGNATURE_SIZE;
/** tlog-cosignature §Format: timestamp MUST NOT exceed 2^63 − 1. */
const MAX_TIMESTAMP = (1n << 63n) - 1n;
/** Cosignatures dated further than this in the future are rejected (the spec allows rejecting any). */
const MAX_FUTURE_SKEW_SECONDS = 300;

const SIG_LINE_PREFIX = '\u2014 ';
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

export interface Cosigner {
  name: string;
  /** 32-byte raw Ed25519 public key. */
  publicKey: Buffer;
}

function bad(message: string): PaylogError {
  return new PaylogError('BAD_REQUEST', message);
}

// tlog-cosignature §Format: SHA-256(<name> || "\n" || 0x04 || public key)[:4].
export function cosignatureKeyId(name: string, publicKey: Buffer): Buffer {
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) throw bad('Ed25519 public key must be 32 bytes');
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.from([0x0a, SIG_TYPE_COSIGNATURE_ED25519]))
    .update(publicKey)
    .digest()
    .subarray(0, KEY_ID_SIZE);
}

/** signed-note §Verifier keys with type 0x04: `<name>+<hex key ID>+base64(0x04 || public key)`. */
export function formatCosignerVkey(c: Cosigner): string {
  if (!isValidKeyName(c.name)) throw bad('invalid cosigner name');
  const material = Buffer.concat([Buffer.from([SIG_TYPE_COSIGNATURE_ED25519]), c.publicKey]).toString('base64');
  return `${c.name}+${cosignatureKeyId(c.name, c.publicKey).toString('hex')}+${material}`;
}

/** Parses a type-0x04 vkey; BAD_REQUEST for anything else (including a log's type-0x01 key). */
export function parseCosignerVkey(vkey: string): Cosigner {
  // `<name>+<hex id>+<base64>`: names hold no '+', the base64 may.
  const first = typeof vkey === 'string' ? vkey.indexOf('+') : -1;
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (second < 0) throw bad('malformed witness verifier key');
  const [name, idHex, b64] = [vkey.slice(0, first), vkey.slice(first + 1, second), vkey.slice(second + 1)];
  const material = decodeBase64Strict(b64);
  if (!isValidKeyName(name) || !/^[0-9a-f]{8}$/i.test(idHex) || material === undefined) throw bad('malformed witness verifier key');
  if (material[0] !== SIG_TYPE_COSIGNATURE_ED25519) throw bad('witness verifier key is not an Ed25519 cosignature key (type 0x04)');
  const publicKey = Buffer.from(material.subarray(1));
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) throw bad('malformed witness verifier key');
  if (!cosignatureKeyId(name, publicKey).equals(Buffer.from(idHex, 'hex'))) throw bad('witness verifier key ID does not match key');
  toKeyObject(publicKey);
  return { name, publicKey };
}

function toKeyObject(publicKey: Buffer): KeyObject {
  try {
    return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new PaylogError('BAD_REQUEST', 'invalid Ed25519 public key', undefined, { cause });
  }
}

/** tlog-cosignature §Ed25519 signed message. `checkpointText` ends with its final newline. */
function cosignedMessage(checkpointText: string, timestamp: bigint): Buffer {
  if (timestamp < 0n || timestamp > MAX_TIMESTAMP) throw bad('cosignature timestamp out of range');
  return Buffer.from(`${COSIGNATURE_HEADER}\ntime ${timestamp.toString(10)}\n${checkpointText}`, 'utf8');
}

/** Produces one cosignature line (`— <name> <base64>\n`) with a private key held in this process. */
export function signCosignature(c: Cosigner & { privateKey: KeyObject }, checkpointText: string, timestamp: bigint): string {
  const signature = cryptoSign(null, cosignedMessage(checkpointText, timestamp), c.privateKey);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(timestamp);
  const blob = Buffer.concat([cosignatureKeyId(c.name, c.publicKey), ts, signature]).toString('base64');
  return `${SIG_LINE_PREFIX}${c.name} ${blob}\n`;
}

/** signed-note §Format: splits a note into its text (through the final newline) and signature lines. */
export function splitNote(note: string): { text: string; lines: string[] } {
  const split = note.lastIndexOf('\n\n');
  if (split < 0 || !note.endsWith('\n')) throw new PaylogError('INTEGRITY_FAILURE', 'malformed note');
  return { text: note.slice(0, split + 1), lines: note.slice(split + 2, -1).split('\n').filter((l) => l.length > 0) };
}

interface VerifiedCosignature {
  name: string;
  /** `<name>+<hex key ID>`. */
  key: string;
  /** POSIX seconds. */
  timestamp: number;
  /** The exact signature line (without newline). */
  line: string;
}

/**
 * Cosignatures on `note` by the given cosigners that verify (tlog-cosignature §Format: lines
 * whose name and key ID match no configured cosigner are ignored). A matching line whose
 * signature does not verify, or whose timestamp is more than MAX_FUTURE_SKEW_SECONDS ahead of
 * `nowSeconds`, is returned in `invalid`. One result per cosigner key (the newest valid one).
 */
export function verifyCosignatures(
  note: string,
  cosigners: readonly Cosigner[],
  nowSeconds: number = Math.floor(Date.now() / 1000),
): { valid: VerifiedCosignature[]; invalid: string[] } {
  const { text, lines } = splitNote(note);
  const known = new Map<string, { c: Cosigner; key: KeyObject }>();
  for (const c of cosigners) known.set(`${c.name}+${cosignatureKeyId(c.name, c.publicKey).toString('hex')}`, { c, key: toKeyObject(c.publicKey) });
  const best = new Map<string, VerifiedCosignature>();
  const invalid: string[] = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_LINE_PREFIX)) continue;
    const rest = line.slice(SIG_LINE_PREFIX.length);
    const space = rest.indexOf(' ');
    if (space < 0) continue;
    const name = rest.slice(0, space);
    const blob = decodeBase64Strict(rest.slice(space + 1));
    if (blob === undefined || blob.length < KEY_ID_SIZE) continue;
    const mapKey = `${name}+${blob.subarray(0, KEY_ID_SIZE).toString('hex')}`;
    const k = known.get(mapKey);
    if (k === undefined) continue; // unknown key, or the log's own type-0x01 signature
    if (blob.length !== KEY_ID_SIZE + TIMESTAMPED_SIGNATURE_SIZE) {
      invalid.push(mapKey);
      continue;
    }
    const ts = blob.readBigUInt64BE(KEY_ID_SIZE);
    const sig = blob.subarray(KEY_ID_SIZE + 8);
    let ok = false;
    try {
      ok = ts <= MAX_TIMESTAMP && cryptoVerify(null, cosignedMessage(text, ts), k.key, sig);
    } catch {
      ok = false;
    }
    if (!ok || ts > BigInt(nowSeconds + MAX_FUTURE_SKEW_SECONDS)) {
      invalid.push(mapKey);
      continue;
    }
    const prev = best.get(mapKey);
    if (prev === undefined || prev.timestamp < Number(ts)) best.set(mapKey, { name, key: mapKey, timestamp: Number(ts), line });
  }
  return { valid: [...best.values()], invalid };
}
