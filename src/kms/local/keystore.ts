/**
 * DEV-ONLY key store behind the local KMS-compatible endpoint (`local/server.ts`).
 *
 * Contract:
 * - One JSON file, `<keyStoreDir>/keystore.json` (paylog passes `<PAYLOG_DATA_DIR>/kms`), holding
 *   raw key material UNENCRYPTED. It exists so that `npm start` works without AWS; it is NOT a
 *   production key store and says so in its top-level `devOnly` / `warning` fields.
 * - Written atomically: a temp file (mode 0600) in the same directory is written, fsynced and
 *   renamed over the old file; the directory is created with mode 0700.
 * - Writes are serialised; `persist()` resolves only once the current state is on disk, so the
 *   endpoint answers CreateKey/CreateAlias only after the key survives a restart.
 * - Symmetric keys: 32 random bytes (AES-256-GCM). Ed25519 keys: PKCS#8 DER private key and
 *   SPKI DER public key, base64 in the file.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { chmod, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const KEYSTORE_FILE_NAME = 'keystore.json';
const KEYSTORE_FORMAT_VERSION = 1;
const KEYSTORE_DEV_ONLY_WARNING =
  'DEV-ONLY paylog local KMS key store: key material is stored UNENCRYPTED. NOT FOR PRODUCTION. ' +
  'Production uses AWS KMS (set AWS_REGION / AWS_ENDPOINT_URL_KMS).';
const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

export type KeySpec = 'SYMMETRIC_DEFAULT' | 'ECC_NIST_EDWARDS25519';
export type KeyUsage = 'ENCRYPT_DECRYPT' | 'SIGN_VERIFY';
export type KeyState = 'Enabled' | 'Disabled' | 'PendingDeletion';

export interface StoredKey {
  /** UUID key id. */
  readonly keyId: string;
  /** Region the key was created in (from the caller's SigV4 credential scope). */
  readonly region: string;
  readonly keySpec: KeySpec;
  readonly keyUsage: KeyUsage;
  /** Epoch seconds. */
  readonly creationDate: number;
  description: string;
  state: KeyState;
  /** Epoch seconds; only while PendingDeletion. */
  deletionDate?: number;
  /** SYMMETRIC_DEFAULT: base64 of 32 bytes. */
  readonly symmetricKey?: string;
  /** ECC_NIST_EDWARDS25519: base64 PKCS#8 DER. */
  readonly privateKeyPkcs8?: string;
  /** ECC_NIST_EDWARDS25519: base64 SPKI DER. */
  readonly publicKeySpki?: string;
}

export interface StoredAlias {
  readonly region: string;
  /** Full alias name, `alias/...`. */
  readonly aliasName: string;
  targetKeyId: string;
  readonly creationDate: number;
  lastUpdatedDate: number;
}

interface KeyStoreFile {
  devOnly: true;
  warning: string;
  formatVersion: number;
  keys: StoredKey[];
  aliases: StoredAlias[];
}

/**
 * Contract: one key store file may be shared by several local endpoints (several paylog
 * instances on one data dir, as in the multi-instance test). Each endpoint MUST call
 * `refresh()` before an operation, so a key another endpoint created or changed is seen; a
 * write replaces the file with this endpoint's view, which is current as of that refresh.
 * Two endpoints changing keys in the same instant can still lose one change (dev only).
 */
export class KeyStore {
  private writeChain: Promise<void> = Promise.resolve();
  /** mtime and size of the file as this process last read or wrote it. */
  private seen = '';

  private constructor(
    readonly filePath: string,
    readonly keys: Map<string, StoredKey>,
    readonly aliases: StoredAlias[],
  ) {}

  /** Opens (or creates empty) the key store in `dir`. Throws on a corrupt or foreign file. */
  static async open(dir: string): Promise<KeyStore> {
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    const filePath = join(dir, KEYSTORE_FILE_NAME);
    let raw: string | undefined;
    try {
      raw = await readFile(filePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (raw === undefined) {
      const store = new KeyStore(filePath, new Map(), []);
      await store.persist();
      return store;
    }
    const parsed = parseKeyStoreFile(raw, filePath);
    // Tighten permissions of a file that was copied around with a looser mode.
    await chmod(filePath, FILE_MODE);
    const store = new KeyStore(filePath, new Map(parsed.keys.map((k) => [k.keyId, k])), parsed.aliases);
    store.seen = fileVersion(filePath);
    return store;
  }

  /** Re-reads the file when another process has replaced it since this one last read or wrote it. */
  refresh(): void {
    const now = fileVersion(this.filePath);
    if (now === this.seen || now === '') return;
    const parsed = parseKeyStoreFile(readFileSync(this.filePath, 'utf8'), this.filePath);
    this.keys.clear();
    for (const k of parsed.keys) this.keys.set(k.keyId, k);
    this.aliases.splice(0, this.aliases.length, ...parsed.aliases);
    this.seen = now;
  }

  /** Writes the current state atomically; resolves once it is durable. Writes are serialised. */
  persist(): Promise<void> {
    const snapshot: KeyStoreFile = {
      devOnly: true,
      warning: KEYSTORE_DEV_ONLY_WARNING,
      formatVersion: KEYSTORE_FORMAT_VERSION,
      keys: [...this.keys.values()],
      aliases: this.aliases,
    };
    const text = JSON.stringify(snapshot, null, 2) + '\n';
    const next = this.writeChain.then(async () => {
      await writeFileAtomic(this.filePath, text);
      this.seen = fileVersion(this.filePath);
    });
    // Keep the chain alive after a failed write; the caller still sees the failure.
    this.writeChain = next.catch(() => undefined);
    return next;
  }
}

/** `mtime:size:inode` of the file ('' when it does not exist). */
function fileVersion(filePath: string): string {
  try {
    const st = statSync(filePath);
    return `${st.mtimeMs}:${st.size}:${st.ino}`;
  } catch {
    return '';
  }
}

function parseKeyStoreFile(raw: string, filePath: string): KeyStoreFile {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new Error(`local KMS key store ${filePath} is not valid JSON`);
  }
  const f = parsed as Partial<KeyStoreFile> | null;
  if (
    f === null ||
    typeof f !== 'object' ||
    f.devOnly !== true ||
    f.formatVersion !== KEYSTORE_FORMAT_VERSION ||
    !Array.isArray(f.keys) ||
    !Array.isArray(f.aliases)
  ) {
    throw new Error(`local KMS key store ${filePath} has an unknown format`);
  }
  return f as KeyStoreFile;
}

/** write temp (0600) + fsync + rename + fsync(dir). */
async function writeFileAtomic(filePath: string, text: string): Promise<void> {
  const tmp = `${filePath}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'wx', FILE_MODE);
  try {
    await fh.writeFile(text, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, filePath);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  const dirFh = await open(join(filePath, '..'), 'r');
  try {
    await dirFh.sync();
  } catch {
    // fsync on a directory is not supported everywhere; the rename is still atomic.
  } finally {
    await dirFh.close();
  }
}
