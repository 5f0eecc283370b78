/**
 * Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed-note, Ed25519 signed in KMS).
 *
 * Contract:
 * - `publish()` signs the current tree head only after checking it against the latest stored
 *   checkpoint: the head's root must equal the root recomputed from stored nodes, and a
 *   consistency proof (RFC 9162 §2.1.4) from the checkpoint's tree to the head must verify.
 *   A tree that fails is never signed (INCONSISTENT_TREE).
 * - After each batch commit `schedule()` publishes within PUBLISH_MIN_INTERVAL_MS (coalesced:
 *   one publication in flight at a time); a timer re-checks every IDLE_REPUBLISH_MS so a
 *   failed publication (e.g. KMS briefly down) is retried while idle.
 * - `publish()` is single-flight: calls made while one publication runs share the next run
 *   (which starts after it and sees its checkpoint), so concurrent calls never sign and store
 *   the same tree head twice. (Within one process; instances sharing a database each publish.)
 * - Every checkpoint is stored; `?size=` serves earlier ones.
 * - Key rotation: every configured signing key signs every checkpoint (one signature line each),
 *   so there is never an unsigned gap; all verifier keys are published.
 */
import { and, desc, eq, lt, or } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Db } from '../db/connection.js';
import { checkpoints } from '../db/schema.js';
import { PaylogError } from '../errors.js';
import type { PaylogKms } from '../kms/client.js';
import { readNodes, readTreeHead } from './appender.js';
import { formatCheckpointBody, verifyCheckpoint } from './checkpoint.js';
import { EMPTY_ROOT, consistencyProof, consistencyProofNodes, rangeNodes, rootFromNodes, verifyConsistency } from './merkle.js';
import { formatVerifierKey, keyId, signNote, type NoteSigner, type NoteVerifier } from './note.js';

export const PUBLISH_MIN_INTERVAL_MS = 250;
export const IDLE_REPUBLISH_MS = 30_000;

export interface StoredCheckpoint {
  size: number;
  rootHash: Buffer;
  note: string;
}

export interface PublishedKey {
  vkey: string;
  keyId: string;
  pem: string;
  kmsKeyId: string;
}

/** One note signer per KMS key; the private key never leaves KMS. */
export async function kmsNoteSigners(
  kms: PaylogKms,
  origin: string,
  kmsKeyIds: string[],
): Promise<{ signers: NoteSigner[]; keys: PublishedKey[] }> {
  const signers: NoteSigner[] = [];
  const keys: PublishedKey[] = [];
  for (const id of kmsKeyIds) {
    const publicKey = await kms.getPublicKey(id);
    const spki = await kms.getPublicKeySpki(id);
    signers.push({ name: origin, publicKey, sign: (message: Buffer) => kms.sign(id, message) });
    keys.push({
      vkey: formatVerifierKey(origin, publicKey),
      keyId: keyId(origin, publicKey).toString('hex'),
      pem: `-----BEGIN PUBLIC KEY-----\n${spki.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PUBLIC KEY-----\n`,
      kmsKeyId: id,
    });
  }
  return { signers, keys };
}

/** Rows fetched per query while looking for one that verifies (a page size, never a limit on the search). */
export const CHECKPOINT_READ_PAGE = 64;
/** Row ids already found not to verify, remembered so each forged row costs one signature check per process. */
const MAX_REMEMBERED_FORGED = 100_000;
/** Per database handle (row ids are per database). */
const forgedRowsByDb = new WeakMap<object, Set<number>>();

/**
 * Latest stored checkpoint (or the one for `size`) whose note verifies under our own keys; its
 * size and root are taken from the signed note, not from the row's columns. Rows are read in
 * order (largest size first) page by page, and EVERY row is verified before the next is
 * considered: no number of forged rows (inserted behind the service's back) can push the
 * service's own checkpoints out of view. A row that fails is skipped and reported through
 * `onForged` (once per row per process).
 */
export async function readCheckpoint(
  db: Db,
  verifiers: NoteVerifier[],
  size?: number,
  onForged?: (row: { id: number; size: number }) => void,
): Promise<StoredCheckpoint | null> {
  let forgedRows = forgedRowsByDb.get(db);
  if (!forgedRows) forgedRowsByDb.set(db, (forgedRows = new Set()));
  let after: { size: number; id: number } | undefined;
  for (;;) {
    const conds = [
      ...(size !== undefined ? [eq(checkpoints.size, size)] : []),
      ...(after ? [or(lt(checkpoints.size, after.size), and(eq(checkpoints.size, after.size), lt(checkpoints.id, after.id)))!] : []),
    ];
    const rows = await db
      .select()
      .from(checkpoints)
      .where(conds.length > 0 ? and(...conds) : undefined)
      .orderBy(desc(checkpoints.size), desc(checkpoints.id))
      .limit(CHECKPOINT_READ_PAGE);
    for (const r of rows) {
      if (forgedRows.has(r.id)) continue;
      try {
        const c = verifyCheckpoint(r.note, verifiers);
        if (c.size === r.size && c.rootHash.equals(r.rootHash)) return { size: c.size, rootHash: c.rootHash, note: r.note };
      } catch {
        // fall through: not signed by us
      }
      if (forgedRows.size < MAX_REMEMBERED_FORGED) forgedRows.add(r.id);
      onForged?.({ id: r.id, size: r.size });
    }
    if (rows.length < CHECKPOINT_READ_PAGE) return null;
    const lastRow = rows[rows.length - 1]!;
    after = { size: lastRow.size, id: lastRow.id };
  }
}

/**
 * Checks that the stored tree of `size` with root `root` extends the checkpointed tree
 * (RFC 9162 §2.1.4.2) and that `root` is what the stored nodes say. Throws INCONSISTENT_TREE.
 */
export async function checkExtends(db: Db, prior: { size: number; rootHash: Buffer } | null, head: { size: number; rootHash: Buffer }): Promise<void> {
  const fail = (why: string) => new PaylogError('INCONSISTENT_TREE', `refusing to sign: ${why}`);
  if (prior && prior.size > head.size) throw fail(`tree size ${head.size} is smaller than signed size ${prior.size}`);
  const ids = [...rangeNodes(0, head.size), ...(prior ? consistencyProofNodes(prior.size, head.size) : [])];
  const nodes = await readNodes(db, ids);
  let recomputed: Buffer;
  try {
    recomputed = head.size === 0 ? EMPTY_ROOT : rootFromNodes(head.size, nodes);
  } catch {
    throw fail('stored Merkle nodes are incomplete');
  }
  if (!recomputed.equals(head.rootHash)) throw fail('stored tree head does not match stored nodes');
  if (prior && prior.size > 0) {
    let proof: Buffer[];
    try {
      proof = consistencyProof(prior.size, head.size, nodes);
    } catch {
      throw fail('stored Merkle nodes are incomplete');
    }
    if (!verifyConsistency(prior.size, head.size, proof, prior.rootHash, head.rootHash)) {
      throw fail(`tree of size ${head.size} is not consistent with the checkpoint of size ${prior.size}`);
    }
  }
}

export class CheckpointPublisher {
  private inFlight: Promise<StoredCheckpoint | null> | null = null;
  private pending = false;
  private lastPublishAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private delayed: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly verifiers: NoteVerifier[];
  /** The publication running now, and the one queued behind it (shared by its callers). */
  private publishing: Promise<StoredCheckpoint | null> | null = null;
  private queued: Promise<StoredCheckpoint | null> | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: {
      origin: string;
      signers: NoteSigner[];
      logger?: Logger;
      onPublished?: (c: StoredCheckpoint) => void;
      onRefused?: (e: PaylogError) => void;
      /** Tree-head MAC key (src/log/tree-head.ts): forged `tree_heads` rows are never signed. */
      headKey?: Buffer;
    },
  ) {
    this.verifiers = opts.signers.map((s) => ({ name: s.name, publicKey: s.publicKey }));
  }

  /**
   * Signs and stores a checkpoint for the current tree head if it is new (checked first).
   * Resolves with a checkpoint covering at least the head as of the call (see contract).
   */
  publish(): Promise<StoredCheckpoint | null> {
    if (!this.publishing) return this.startPublication();
    // A run in progress may have read an older head: queue one more run after it, shared.
    this.queued ??= this.publishing
      .catch(() => null)
      .then(() => {
        this.queued = null;
        return this.startPublication();
      });
    return this.queued;
  }

  private startPublication(): Promise<StoredCheckpoint | null> {
    const run = this.publishOnce().finally(() => {
      if (this.publishing === run) this.publishing = null;
    });
    this.publishing = run;
    return run;
  }

  private async publishOnce(): Promise<StoredCheckpoint | null> {
    const head = (await readTreeHead(this.db, this.opts.headKey)) ?? { size: 0, rootHash: EMPTY_ROOT };
    const prior = await readCheckpoint(this.db, this.verifiers, undefined, (row) =>
      this.opts.logger?.error({ checkpointRow: row.id, size: row.size }, 'stored checkpoint does not verify under our keys: ignored'),
    );
    if (prior && prior.size === head.size && prior.rootHash.equals(head.rootHash) && this.signedByAll(prior.note)) return prior;
    await checkExtends(this.db, prior, head);
    const note = await signNote(formatCheckpointBody({ origin: this.opts.origin, size: head.size, rootHash: head.rootHash }), this.opts.signers);
    await this.db.insert(checkpoints).values({ size: head.size, rootHash: head.rootHash, note });
    const c = { size: head.size, rootHash: head.rootHash, note };
    this.opts.onPublished?.(c);
    return c;
  }

  private signedByAll(note: string): boolean {
    const lines = note.split('\n');
    return this.opts.signers.every((s) => {
      const prefix = `— ${s.name} `;
      const kid = keyId(s.name, s.publicKey);
      return lines.some((l) => l.startsWith(prefix) && Buffer.from(l.slice(prefix.length), 'base64').subarray(0, 4).equals(kid));
    });
  }

  /** Requests a publication soon (coalesced; at most one in flight). */
  schedule(): void {
    if (this.closed) return;
    if (this.inFlight || this.delayed) {
      this.pending = true;
      return;
    }
    const wait = Math.max(0, this.lastPublishAt + PUBLISH_MIN_INTERVAL_MS - Date.now());
    this.delayed = setTimeout(() => {
      this.delayed = null;
      this.run();
    }, wait);
  }

  private run(): void {
    this.pending = false;
    this.lastPublishAt = Date.now();
    this.inFlight = this.publish()
      .catch((e: unknown) => {
        if (e instanceof PaylogError && e.code === 'INCONSISTENT_TREE') {
          this.opts.logger?.error({ code: e.code, reason: e.message }, 'checkpoint refused');
          this.opts.onRefused?.(e);
        } else {
          this.opts.logger?.warn({ err: { type: (e as Error)?.name, code: (e as PaylogError)?.code } }, 'checkpoint publication failed; will retry');
        }
        return null;
      })
      .finally(() => {
        this.inFlight = null;
        if (this.pending) this.schedule();
      });
  }

  /** Starts the idle re-check timer. */
  start(): void {
    this.timer = setInterval(() => this.schedule(), IDLE_REPUBLISH_MS);
    this.timer.unref();
    this.schedule();
  }

  /** Stops timers and waits for an in-flight publication. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.delayed) clearTimeout(this.delayed);
    this.delayed = null;
    await this.inFlight;
  }
}

