/**
 * C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 signatures (signature type 0x01).
 *
 * Signing is delegated to a {@link NoteSigner} (in production, KMS `ED25519_SHA_512` over the RAW
 * message); verification uses node:crypto. All failures to open a note throw
 * `PaylogError('INTEGRITY_FAILURE', ...)`; malformed signer/verifier configuration throws
 * `PaylogError('BAD_REQUEST', ...)`.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { PaylogError } from '../errors.js';

/** signed-note §Signature types: 0x01 = Ed25519. */
const SIG_TYPE_ED25519 = 0x01;
/** RFC 8032 sizes. */
export const ED25519_PUBLIC_KEY_SIZE = 32;
export const ED25519_SIGNATURE_SIZE = 64;
/** signed-note §Signatures: the key ID is a 32-bit big-endian value. */
export const KEY_ID_SIZE = 4;
/**
 * signed-note §Format: verifiers SHOULD cap the number of signatures and MUST accept at least 16.
 * Same cap as golang.org/x/mod/sumdb/note.
 */
export const MAX_SIGNATURE_LINES = 100;
/** Overall cap on the size of a note accepted by {@link openNote} (UTF-8 bytes). */
const MAX_NOTE_BYTES = 1024 * 1024;

/** signed-note §Format: em dash (U+2014) followed by a space starts every signature line. */
const SIG_LINE_PREFIX = '\u2014 ';

/** DER SPKI header for a raw Ed25519 public key (RFC 8410). */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Unicode white space as classified by Go's unicode.IsSpace (used by the reference implementation). */
const UNICODE_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;

/** Signs note texts; `sign` returns the 64-byte Ed25519 signature of exactly `message`. */
export interface NoteSigner {
  name: string;
  /** 32-byte raw Ed25519 public key. */
  publicKey: Buffer;
  sign(message: Buffer): Promise<Buffer>;
}

/** A trusted key: name plus 32-byte raw Ed25519 public key. */
export interface NoteVerifier {
  name: string;
  publicKey: Buffer;
}

interface OpenedNote {
  /** The note text, including its final newline. */
  text: string;
  /** Key names whose signatures verified, in signature-line order (a name repeats if two of its keys signed). */
  verifiedBy: string[];
  /** The verified keys as `<name>+<hex key ID>`, parallel to `verifiedBy`. */
  verifiedKeys: string[];
  /** Number of distinct signature lines from keys not in the verifier list (ignored per spec). */
  unknown: number;
}

function integrity(message: string, details?: Record<string, unknown>): PaylogError {
  return new PaylogError('INTEGRITY_FAILURE', message, details);
}

function badRequest(message: string, details?: Record<string, unknown>): PaylogError {
  return new PaylogError('BAD_REQUEST', message, details);
}

// signed-note §Format: key names are non-empty and contain no Unicode spaces and no '+'.
export function isValidKeyName(name: string): boolean {
  return typeof name === 'string' && name.length > 0 && isWellFormedUtf16(name) && !UNICODE_SPACE.test(name) && !name.includes('+');
}

/** True if `s` has no lone surrogates, i.e. encodes to valid UTF-8. */
function isWellFormedUtf16(s: string): boolean {
  return Buffer.from(s, 'utf8').toString('utf8') === s;
}

// signed-note §Format: valid UTF-8 with no ASCII control characters other than newline.
function hasOnlyAllowedCharacters(s: string): boolean {
  return isWellFormedUtf16(s) && !/[\u0000-\u0009\u000b-\u001f]/u.test(s);
}

/**
 * Strict RFC 4648 §4 base64: standard alphabet, mandatory padding, canonical (zero) pad bits.
 * Returns undefined for anything else.
 */
export function decodeBase64Strict(s: string): Buffer | undefined {
  if (typeof s !== 'string' || s.length % 4 !== 0) return undefined;
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s)) return undefined;
  const buf = Buffer.from(s, 'base64');
  return buf.toString('base64') === s ? buf : undefined;
}

function requirePublicKey(publicKey: Buffer): void {
  if (!Buffer.isBuffer(publicKey) || publicKey.length !== ED25519_PUBLIC_KEY_SIZE) {
    throw badRequest('Ed25519 public key must be 32 raw bytes');
  }
}

// signed-note §Ed25519 signatures: key ID = SHA-256(name || 0x0A || 0x01 || 32-byte key)[:4].
export function keyId(name: string, publicKey: Buffer): Buffer {
  requirePublicKey(publicKey);
  return createHash('sha256')
    .update(Buffer.from(name, 'utf8'))
    .update(Buffer.from([0x0a, SIG_TYPE_ED25519]))
    .update(publicKey)
    .digest()
    .subarray(0, KEY_ID_SIZE);
}

/** Verifier key string `<name>+<hex key ID>+<base64(0x01 || public key)>` (Go sumdb/note format). */
export function formatVerifierKey(name: string, publicKey: Buffer): string {
  if (!isValidKeyName(name)) throw badRequest('invalid signed-note key name');
  requirePublicKey(publicKey);
  const material = Buffer.concat([Buffer.from([SIG_TYPE_ED25519]), publicKey]).toString('base64');
  return `${name}+${keyId(name, publicKey).toString('hex')}+${material}`;
}

/**
 * Parses a verifier key string. Rejects (BAD_REQUEST) malformed names, key IDs that are not
 * 8 hex digits or do not match the key, non-canonical base64, signature types other than
 * Ed25519, and keys that are not 32 bytes or not valid Ed25519 points.
 */
export function parseVerifierKey(vkey: string): { name: string; keyId: Buffer; publicKey: Buffer } {
  if (typeof vkey !== 'string') throw badRequest('verifier key must be a string');
  const first = vkey.indexOf('+');
  const second = first < 0 ? -1 : vkey.indexOf('+', first + 1);
  if (first < 0 || second < 0) throw badRequest('malformed verifier key');
  const name = vkey.slice(0, first);
  const idHex = vkey.slice(first + 1, second);
  const material = decodeBase64Strict(vkey.slice(second + 1));
  if (!isValidKeyName(name) || !/^[0-9a-fA-F]{8}$/.test(idHex) || material === undefined) {
    throw badRequest('malformed verifier key');
  }
  if (material[0] !== SIG_TYPE_ED25519) throw badRequest('unsupported verifier key algorithm');
  const publicKey = Buffer.from(material.subarray(1));
  if (publicKey.length !== ED25519_PUBLIC_KEY_SIZE) throw badRequest('malformed verifier key');
  const id = Buffer.from(idHex, 'hex');
  if (!id.equals(keyId(name, publicKey))) throw badRequest('verifier key ID does not match key');
  toKeyObject(publicKey); // throws on keys node:crypto cannot import
  return { name, keyId: id, publicKey };
}

/**
 * Parsed Ed25519 public keys by their raw bytes: a checkpoint is signed and verified several
 * times a second with the same few keys, and OpenSSL's SPKI decoder is slow. Public values only;
 * bounded (cleared when full).
 */
const publicKeyObjects = new Map<string, KeyObject>();
const MAX_CACHED_PUBLIC_KEYS = 64;

function toKeyObject(publicKey: Buffer): KeyObject {
  const id = publicKey.toString('hex');
  const known = publicKeyObjects.get(id);
  if (known !== undefined) return known;
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' });
  } catch (cause) {
    throw new PaylogError('BAD_REQUEST', 'invalid Ed25519 public key', undefined, { cause });
  }
  if (publicKeyObjects.size >= MAX_CACHED_PUBLIC_KEYS) publicKeyObjects.clear();
  publicKeyObjects.set(id, key);
  return key;
}

// RFC 8032 §5.1.7 Ed25519 verification; false on any malformed input.
function verifyEd25519(key: KeyObject, message: Buffer, signature: Buffer): boolean {
  if (signature.length !== ED25519_SIGNATURE_SIZE) return false;
  try {
    return cryptoVerify(null, message, key, signature);
  } catch {
    return false;
  }
}

/**
 * signed-note §Format: returns `text + "\n" + one "— <name> base64(keyID || sig)\n" line per
 * signer`. `text` must end in a newline and be valid for a note. Each signature is checked
 * against the signer's public key before it is emitted, so a misbehaving KMS cannot produce a
 * note that verifiers would reject.
 */
export async function signNote(text: string, signers: readonly NoteSigner[]): Promise<string> {
  if (typeof text !== 'string' || !text.endsWith('\n')) throw badRequest('note text must end with a newline');
  if (!hasOnlyAllowedCharacters(text)) throw badRequest('note text contains forbidden characters');
  if (signers.length === 0) throw badRequest('a note needs at least one signer');
  if (signers.length > MAX_SIGNATURE_LINES) throw badRequest('too many signers', { max: MAX_SIGNATURE_LINES });
  const message = Buffer.from(text, 'utf8');
  const lines: string[] = [];
  for (const signer of signers) {
    if (!isValidKeyName(signer.name)) throw badRequest('invalid signed-note key name');
    requirePublicKey(signer.publicKey);
    const key = toKeyObject(signer.publicKey);
    const signature = await signer.sign(message);
    if (!Buffer.isBuffer(signature) || !verifyEd25519(key, message, signature)) {
      throw integrity('signer returned a signature that does not verify with its public key', { signer: signer.name });
    }
    const blob = Buffer.concat([keyId(signer.name, signer.publicKey), signature]).toString('base64');
    lines.push(`${SIG_LINE_PREFIX}${signer.name} ${blob}\n`);
  }
  return `${text}\n${lines.join('')}`;
}

interface KnownKey {
  name: string;
  idHex: string;
  key: KeyObject;
  publicKey: Buffer;
}

function indexVerifiers(verifiers: readonly NoteVerifier[]): Map<string, KnownKey> {
  const known = new Map<string, KnownKey>();
  for (const v of verifiers) {
    if (!isValidKeyName(v.name)) throw badRequest('invalid signed-note key name');
    requirePublicKey(v.publicKey);
    const idHex = keyId(v.name, v.publicKey).toString('hex');
    const mapKey = `${v.name}+${idHex}`;
    const existing = known.get(mapKey);
    if (existing !== undefined) {
      if (!existing.publicKey.equals(v.publicKey)) throw badRequest('ambiguous verifier keys', { key: mapKey });
      continue;
    }
    known.set(mapKey, { name: v.name, idHex, key: toKeyObject(v.publicKey), publicKey: v.publicKey });
  }
  return known;
}

/**
 * signed-note §Format, §Signatures: opens a signed note. The text is everything up to and
 * including the newline before the last blank line. Signatures from keys not in `verifiers`
 * (matched on name AND key ID) are counted in `unknown` and otherwise ignored; a signature from a
 * known key that fails verification rejects the whole note; at least one known key must verify.
 * Throws `PaylogError('INTEGRITY_FAILURE')` on any failure.
 */
export function openNote(note: string, verifiers: readonly NoteVerifier[]): OpenedNote {
  const known = indexVerifiers(verifiers);
  if (typeof note !== 'string') throw integrity('malformed note');
  if (Buffer.byteLength(note, 'utf8') > MAX_NOTE_BYTES) throw integrity('note too large', { max: MAX_NOTE_BYTES });
  if (!hasOnlyAllowedCharacters(note)) throw integrity('malformed note: invalid characters');

  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw integrity('malformed note: no signature block');
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (block.length === 0 || !block.endsWith('\n')) throw integrity('malformed note: bad signature block');

  const lines = block.slice(0, -1).split('\n');
  if (lines.length > MAX_SIGNATURE_LINES) throw integrity('too many signatures', { max: MAX_SIGNATURE_LINES });

  const message = Buffer.from(text, 'utf8');
  const verifiedBy: string[] = [];
  const verifiedKeys: string[] = [];
  const seenKnown = new Set<string>();
  const seenUnknown = new Set<string>();
  for (const line of lines) {
    const parsed = parseSignatureLine(line);
    const mapKey = `${parsed.name}+${parsed.idHex}`;
    const k = known.get(mapKey);
    if (k === undefined) {
      seenUnknown.add(line); // identical repeated lines count once
      continue;
    }
    if (seenKnown.has(mapKey)) continue; // repeated signature by one key: first one decides
    seenKnown.add(mapKey);
    if (!verifyEd25519(k.key, message, parsed.signature)) {
      throw integrity('note signature does not verify', { key: mapKey });
    }
    verifiedBy.push(k.name);
    verifiedKeys.push(mapKey);
  }
  if (verifiedBy.length === 0) throw integrity('note is not signed by any trusted key');
  return { text, verifiedBy, verifiedKeys, unknown: seenUnknown.size };
}

// signed-note §Signatures: "— <key name> base64(32-bit key ID || signature)".
function parseSignatureLine(line: string): { name: string; idHex: string; signature: Buffer } {
  if (!line.startsWith(SIG_LINE_PREFIX)) throw integrity('malformed note: bad signature line');
  const rest = line.slice(SIG_LINE_PREFIX.length);
  const space = rest.indexOf(' ');
  if (space < 0) throw integrity('malformed note: bad signature line');
  const name = rest.slice(0, space);
  const blob = decodeBase64Strict(rest.slice(space + 1));
  if (!isValidKeyName(name) || blob === undefined || blob.length < KEY_ID_SIZE + 1) {
    throw integrity('malformed note: bad signature line');
  }
  return {
    name,
    idHex: blob.subarray(0, KEY_ID_SIZE).toString('hex'),
    signature: Buffer.from(blob.subarray(KEY_ID_SIZE)),
  };
}
