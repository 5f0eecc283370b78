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
 * - `load()` re-reads and re-verifies the file only when it changed (issue 20: the signer loads it
 *   twice per publication, several times a second under load): the verdict is kept with the
 *   file's identity and change stamp (device, inode, size, mtime and ctime in nanoseconds) as
 *   `stat` gave them BEFORE the read, and reused while `stat` gives the same. Any write, rename
 *   over it, chmod or utimes changes the ctime, which user space cannot set; a change between
 *   that stat and the read only makes the next load read again.
 * - What it protects, and what not (SECURITY.md "Never a signed fork"): a rollback of the
 *   database alone. Whoever rolls back the file too (the embedded default keeps its PostgreSQL
 *   cluster in the same data directory) rolls back this memory; put the file on storage the
 *   database's administrators cannot roll back, or configure witnesses. One file per signing
 *   process: instances sharing a database each keep their own (and need witnesses to see each
 *   other's signatures).
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
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

/** A file's identity and change stamp (see the contract: `load()`). */
function stampOf(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
}

/** `stampOf` the file at `path`, or null when it does not exist. */
async function fileStamp(path: string): Promise<string | null> {
  try {
    return stampOf(await stat(path, { bigint: true }));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new PaylogError('INTEGRITY_FAILURE', `signer state file ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

export class SignerStateFile {
  /** The last verified content and the stamp the file had before it was read (see `load()`). */
  private verified: { stamp: string; checkpoint: SignedCheckpoint } | null = null;

  constructor(
    readonly path: string,
    private readonly opts: { origin: string; verifiers: readonly NoteVerifier[] },
  ) {}

  /** The last checkpoint this signer wrote, verified; null when there is no file yet. */
  async load(): Promise<SignedCheckpoint | null> {
    const stamp = await fileStamp(this.path);
    if (stamp === null) return null;
    if (this.verified?.stamp === stamp) return { ...this.verified.checkpoint, rootHash: Buffer.from(this.verified.checkpoint.rootHash) };
    let note: string;
    try {
      note = await readFile(this.path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new PaylogError('INTEGRITY_FAILURE', `signer state file ${this.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    try {
      const c = verifyCheckpoint(note, this.opts.verifiers, { origin: this.opts.origin });
      const checkpoint = { size: c.size, rootHash: c.rootHash, note };
      this.verified = { stamp, checkpoint: { ...checkpoint, rootHash: Buffer.from(c.rootHash) } };
      return checkpoint;
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
    // What `load()` will find, verified like anything it reads (a note that does not verify is
    // still written, as before, and the next load refuses it).
    let written: SignedCheckpoint | null = null;
    try {
      const v = verifyCheckpoint(c.note, this.opts.verifiers, { origin: this.opts.origin });
      written = { size: v.size, rootHash: Buffer.from(v.rootHash), note: c.note };
    } catch {
      written = null;
    }
    this.verified = null;
    const tmp = join(dir, `.${randomBytes(8).toString('hex')}.tmp`);
    try {
      const f = await open(tmp, 'wx', FILE_MODE);
      try {
        await f.writeFile(c.note, 'utf8');
        await f.sync();
        await rename(tmp, this.path);
        // Stamped through our own handle after the rename (which changes the ctime): the inode
        // we wrote, whatever has happened to the path since.
        const s = await f.stat({ bigint: true }).catch(() => null);
        if (written && s) this.verified = { stamp: stampOf(s), checkpoint: written };
      } finally {
        await f.close();
      }
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
