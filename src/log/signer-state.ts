/**
 * The signer's memory of the last checkpoint it signed, kept outside the database
 * (PAYLOG_SIGNER_STATE, default `<PAYLOG_DATA_DIR>/signer/last-checkpoint`).
 *
 * The database is not trusted to remember what was signed: a superuser (or a restored backup)
 * can delete every row above an older genuine tree head, `checkpoints` included, and append a
 * different history there. The file holds the signed note itself, so it needs no MAC: it is
 * self-authenticating under the service's own checkpoint keys.
 *
 * Contract:
 * - `load()` returns null when the file does not exist. A file that exists and does not open as
 *   a checkpoint of this log under the service's verifier keys is a hard error
 *   (INTEGRITY_FAILURE), never ignored: deleting or replacing the file must not quietly reset
 *   the signer's memory to "nothing signed".
 * - `save(c)` resolves only after the note is durable: written to a temporary file in the same
 *   directory, fsynced, renamed over the file, and the directory fsynced. The signer calls it
 *   AFTER signing and BEFORE the checkpoint is stored or served (src/log/checkpoint-publisher.ts).
 * - `save` never moves the file backwards: a checkpoint smaller than the one on disk is not
 *   written (the caller has already proven it consistent with the larger one).
 * - What it protects, and what not (SECURITY.md "Never a signed fork"): a rollback of the
 *   database alone. Whoever rolls back the file too (the embedded default keeps its PostgreSQL
 *   cluster in the same data directory) rolls back this memory; put the file on storage the
 *   database's administrators cannot roll back, or configure witnesses. One file per signing
 *   process: instances sharing a database each keep their own (and need witnesses to see each
 *   other's signatures).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PaylogError } from '../errors.js';
import { verifyCheckpoint } from './checkpoint.js';
import type { NoteVerifier } from './note.js';

/** The default location under PAYLOG_DATA_DIR. */
export const SIGNER_STATE_RELATIVE_PATH = join('signer', 'last-checkpoint');
/** Directory and file modes: readable by the service user only. */
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

interface SignedCheckpoint {
  size: number;
  rootHash: Buffer;
  note: string;
}

export class SignerStateFile {
  constructor(
    readonly path: string,
    private readonly opts: { origin: string; verifiers: readonly NoteVerifier[] },
  ) {}

  /** The last checkpoint this signer wrote, verified; null when there is no file yet. */
  async load(): Promise<SignedCheckpoint | null> {
    let note: string;
    try {
      note = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new PaylogError('INTEGRITY_FAILURE', `signer state file ${this.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    try {
      const c = verifyCheckpoint(note, this.opts.verifiers, { origin: this.opts.origin });
      return { size: c.size, rootHash: c.rootHash, note };
    } catch {
      throw new PaylogError(
        'INTEGRITY_FAILURE',
        `signer state file ${this.path} is not a checkpoint of ${this.opts.origin} signed by this service's keys; refusing to sign (restore the file, see docs/operations.md "Restoring from a backup")`,
      );
    }
  }

  /** Durably replaces the file with `c.note` (see contract); never writes a smaller checkpoint. */
  async save(c: SignedCheckpoint): Promise<void> {
    const current = await this.load();
    if (current !== null && current.size > c.size) return;
    if (current !== null && current.size === c.size && current.note === c.note) return;
    const dir = dirname(this.path);
    await mkdir(dir, { recursive: true, mode: DIR_MODE });
    const tmp = join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
    try {
      const f = await open(tmp, 'wx', FILE_MODE);
      try {
        await f.writeFile(c.note, 'utf8');
        await f.sync();
      } finally {
        await f.close();
      }
      await rename(tmp, this.path);
    } catch (e) {
      await rm(tmp, { force: true }).catch(() => {});
      throw e;
    }
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
