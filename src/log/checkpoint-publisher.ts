/**
 * Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed-note, Ed25519 signed in KMS).
 *
 * Contract:
 * - `publish()` signs the current tree head only after checking it against the last checkpoint
 *   this signer signed (its state file, src/log/signer-state.ts, which the database cannot roll
 *   back) AND the latest stored checkpoint that verifies: the head's root must equal the root
 *   recomputed from stored nodes, and a consistency proof (RFC 9162 §2.1.4) from each
 *   checkpoint's tree to the head must verify. A tree that fails is never signed
 *   (INCONSISTENT_TREE with details {reason: behind | inconsistent | witness | state_file,
 *   signedSize, headSize}); `refusal()` reports it until a publication succeeds again.
 * - Order after signing: witnesses are asked (a conflict refuses: never stored, never served),
 *   then the state file is written durably, then the checkpoint row is stored and announced.
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
import type { KmsBackend } from '../kms/backend.js';
import { readNodes, readTreeHead } from './store.js';
import { formatCheckpointBody, verifyCheckpointRemembered } from './checkpoint.js';
import { EMPTY_ROOT, consistencyProof, consistencyProofNodes, rangeNodes, rootFromNodes, verifyConsistency } from './merkle.js';
import { formatVerifierKey, keyId, signNote, type NoteSigner, type NoteVerifier } from './note.js';
import type { SignerStateFile } from './signer-state.js';

const PUBLISH_MIN_INTERVAL_MS = 250;
const IDLE_REPUBLISH_MS = 30_000;

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
  kms: KmsBackend,
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
const CHECKPOINT_READ_PAGE = 64;
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
        const c = verifyCheckpointRemembered(r.note, verifiers);
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

/** Why a checkpoint was refused (the `reason` label of paylog_checkpoint_refused_total). */
type RefusalReason = 'behind' | 'inconsistent' | 'witness' | 'state_file';

/** Details of an INCONSISTENT_TREE refusal (PaylogError.details; served in /readyz). */
export interface Refusal {
  reason: RefusalReason;
  /** The checkpoint the head was checked against (or the witness's size for `witness`). */
  signedSize: number;
  headSize: number;
  message: string;
}

export function refusal(reason: RefusalReason, signedSize: number, headSize: number, why: string): PaylogError {
  return new PaylogError('INCONSISTENT_TREE', `refusing to sign: ${why}`, { reason, signedSize, headSize });
}

/** The refusal an INCONSISTENT_TREE error carries, if it is one. */
export function refusalOf(e: unknown): Refusal | null {
  if (!(e instanceof PaylogError) || e.code !== 'INCONSISTENT_TREE') return null;
  const d = e.details ?? {};
  const reason = d.reason === 'behind' || d.reason === 'witness' || d.reason === 'state_file' ? d.reason : 'inconsistent';
  return { reason, signedSize: Number(d.signedSize ?? 0), headSize: Number(d.headSize ?? 0), message: e.message };
}

/**
 * Checks that the stored tree of `size` with root `root` extends the checkpointed tree
 * (RFC 9162 §2.1.4.2) and that `root` is what the stored nodes say. Throws INCONSISTENT_TREE
 * with details {reason: 'behind' | 'inconsistent', signedSize, headSize}.
 */
export async function checkExtends(db: Db, prior: { size: number; rootHash: Buffer } | null, head: { size: number; rootHash: Buffer }): Promise<void> {
  const signedSize = prior?.size ?? 0;
  const fail = (why: string) => refusal('inconsistent', signedSize, head.size, why);
  if (prior && prior.size > head.size) throw refusal('behind', prior.size, head.size, `tree size ${head.size} is smaller than signed size ${prior.size}`);
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

/**
 * Witnesses asked before a checkpoint is stored (src/log/witness/submitter.ts). `vet` MUST
 * throw INCONSISTENT_TREE (reason `witness`) when a witness answers that the checkpoint
 * conflicts with what it has cosigned, and MUST NOT throw because a witness is unreachable or
 * slow (witnessing is reported, not required). `recorded` runs after the checkpoint is stored.
 */
export interface CheckpointWitnesses {
  vet(c: StoredCheckpoint): Promise<{ recorded(): Promise<void> }>;
}

/** At most one "checkpoint refused" error line per this interval while the reason stays the same. */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

const sameTree = (a: { size: number; rootHash: Buffer }, b: { size: number; rootHash: Buffer }) => a.size === b.size && a.rootHash.equals(b.rootHash);

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
  /** The largest checkpoint this process signed (or loaded from the state file). */
  private lastSigned: StoredCheckpoint | null = null;
  private refused: (Refusal & { since: string }) | null = null;
  private lastRefusalLog: { reason: RefusalReason; at: number } | null = null;

  constructor(
    private readonly db: Db,
    private readonly opts: {
      origin: string;
      signers: NoteSigner[];
      logger?: Logger;
      onPublished?: (c: StoredCheckpoint) => void;
      /** Each refused publication (metric). */
      onRefused?: (r: Refusal) => void;
      /** Signing turned refused, or accepted again (readiness of the other workers). */
      onRefusalChanged?: (r: (Refusal & { since: string }) | null) => void;
      /** Tree-head MAC key (src/log/tree-head.ts): forged `tree_heads` rows are never signed. */
      headKey?: Buffer;
      /** The signer's memory outside the database (src/log/signer-state.ts). */
      state?: SignerStateFile;
      /** Witnesses asked before a checkpoint is stored (PAYLOG_WITNESSES). */
      witnesses?: CheckpointWitnesses;
    },
  ) {
    this.verifiers = opts.signers.map((s) => ({ name: s.name, publicKey: s.publicKey }));
  }

  /** Signing is refused right now (the last publication was refused, none has succeeded since). */
  refusal(): (Refusal & { since: string }) | null {
    return this.refused;
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
    const run = this.publishOnce().then(
      (c) => {
        if (this.refused) {
          this.opts.logger?.info({ size: c?.size }, 'checkpoint signing resumed: the stored tree extends the last signed checkpoint again');
          this.refused = null;
          this.lastRefusalLog = null;
          this.opts.onRefusalChanged?.(null);
        }
        return c;
      },
      (e: unknown) => {
        const r = refusalOf(e);
        if (r) this.noteRefusal(r);
        throw e;
      },
    ).finally(() => {
      if (this.publishing === run) this.publishing = null;
    });
    this.publishing = run;
    return run;
  }

  private noteRefusal(r: Refusal): void {
    const changed = this.refused?.reason !== r.reason || this.refused.signedSize !== r.signedSize;
    this.refused = { ...r, since: this.refused?.reason === r.reason ? this.refused.since : new Date().toISOString() };
    this.opts.onRefused?.(r);
    if (changed) this.opts.onRefusalChanged?.(this.refused);
    const now = Date.now();
    if (this.lastRefusalLog?.reason === r.reason && now - this.lastRefusalLog.at < REFUSAL_LOG_INTERVAL_MS) return;
    this.lastRefusalLog = { reason: r.reason, at: now };
    this.opts.logger?.error({ code: 'INCONSISTENT_TREE', reason: r.reason, signedSize: r.signedSize, headSize: r.headSize, message: r.message }, 'checkpoint refused: the stored tree does not extend the last signed checkpoint');
  }

  /** The newest checkpoint this signer has signed: its own memory or the state file, the larger. */
  private async remembered(): Promise<StoredCheckpoint | null> {
    let fromFile: StoredCheckpoint | null = null;
    try {
      fromFile = this.opts.state ? await this.opts.state.load() : null;
    } catch (e) {
      // A state file that no longer verifies is a refusal, not a reason to forget what was signed.
      throw refusal('state_file', this.lastSigned?.size ?? 0, 0, (e as Error).message);
    }
    if (fromFile && (!this.lastSigned || fromFile.size > this.lastSigned.size)) this.lastSigned = fromFile;
    return this.lastSigned;
  }

  private async publishOnce(): Promise<StoredCheckpoint | null> {
    // The signer's own memory first, then the database's newest checkpoint, then the head: a
    // checkpoint (ours or another instance's) is never newer than a head read after it.
    const remembered = await this.remembered();
    const prior = await readCheckpoint(this.db, this.verifiers, undefined, (row) =>
      this.opts.logger?.error({ checkpointRow: row.id, size: row.size }, 'stored checkpoint does not verify under our keys: ignored'),
    );
    const head = (await readTreeHead(this.db, this.opts.headKey)) ?? { size: 0, rootHash: EMPTY_ROOT };
    // 1. The head MUST extend what this signer signed (the database cannot roll that back).
    if (remembered && !sameTree(remembered, head)) await checkExtends(this.db, remembered, head);
    // 2. Nothing new: the stored checkpoint already covers the head.
    if (prior && sameTree(prior, head) && this.signedByAll(prior.note)) return prior;
    // 3. The head MUST extend the newest verified checkpoint in the database (another instance's).
    if (!(prior && remembered && sameTree(prior, remembered))) await checkExtends(this.db, prior, head);
    const note = await signNote(formatCheckpointBody({ origin: this.opts.origin, size: head.size, rootHash: head.rootHash }), this.opts.signers);
    const c = { size: head.size, rootHash: head.rootHash, note };
    // 4. Witnesses that saw a different history refuse it: then it is never stored or served.
    const witnessed = this.opts.witnesses ? await this.opts.witnesses.vet(c) : null;
    // 5. Remembered durably before anyone can see it.
    await this.opts.state?.save(c);
    if (!this.lastSigned || c.size >= this.lastSigned.size) this.lastSigned = c;
    await this.db.insert(checkpoints).values({ size: head.size, rootHash: head.rootHash, note });
    this.opts.onPublished?.(c);
    if (witnessed) await witnessed.recorded();
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
        // Refusals are logged (rate-limited) and counted where they happen (noteRefusal).
        if (!refusalOf(e)) this.opts.logger?.warn({ err: { type: (e as Error)?.name, code: (e as PaylogError)?.code } }, 'checkpoint publication failed; will retry');
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

