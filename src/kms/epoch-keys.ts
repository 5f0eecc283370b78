/**
 * Key epochs: the middle layer of the key hierarchy (envelope v2).
 *
 *   KMS key of one key period  (SYMMETRIC_DEFAULT, alias/paylog-epoch-<granularity>-<label>,
 *                               after a rewrap also ...-<label>-r<round>: keys of THAT period only)
 *    └─ epoch private key (X25519), stored only as a KMS Encrypt blob in key_epochs
 *        └─ per-transaction data key, wrapped locally with HPKE to the epoch PUBLIC key
 *
 * An epoch is one processor × one period (PAYLOG_KEY_EPOCH: month | day | hour, UTC) × one
 * generation (a rotation starts generation n+1 in the same period).
 *
 * Contracts:
 * - Submit path ({@link EpochKeyring.currentEpoch}): returns the epoch PUBLIC key only. An epoch
 *   encrypts only while `periodStart <= now < periodEnd` and it is not retired; a retired epoch
 *   (period ended, or rotated) never encrypts again. A missing epoch is created under a
 *   cross-process advisory lock, and its `epoch_created` key event is committed to the log
 *   BEFORE the epoch row exists (so before any record can be sealed under it). Creation
 *   (src/kms/epoch-create.ts) is the only moment a private key exists on the submit path:
 *   generated, wrapped by KMS Encrypt, zeroed.
 * - Release path ({@link EpochKeyring.withPrivateKey}): the private key is unwrapped by KMS
 *   Decrypt, kept in a material object for at most `cacheTtlMs` and `cacheMaxUses` uses, then
 *   zeroed (eviction, exhaustion, shred or close). Misses are single-flight per epoch: any number
 *   of concurrent first uses make exactly one KMS call. A cached key is used WITHOUT re-reading
 *   its epoch's state: what keeps a shredded epoch's data from being released is the release's
 *   commit-time precondition (src/services/append-preconditions.ts `keyMaterialRequires`; no plaintext leaves
 *   unless the granted access entry committed while the epoch was not shredded). Every process
 *   zeroes the key on the shred's notice (src/kms/key-notifications.ts), and a process whose
 *   release was denied for it forgets it at once.
 * - Key-wrap windows ({@link EpochKeyring.withWindowContext}): the HPKE receiver context of a
 *   window (src/crypto/hpke-receiver.ts; it opens the data keys of that window's records only) is
 *   derived from the cached private key once and cached beside it, under the same rules: at most
 *   min(`cacheTtlMs`, WINDOW_CONTEXT_TTL_MS) and `cacheMaxUses` uses, zeroed on eviction, and
 *   evicted with its epoch's private key (`evict`, `forget`, the shred's notice, `close`).
 * - A period whose KMS key is pending deletion (shredded) answers DATA_SHREDDED.
 * - Authenticated rows only (issue 17): the runtime role can INSERT `key_epochs` and
 *   `key_periods` rows and UPDATE `retired_at`. An epoch row is used (to seal, or to unwrap)
 *   only when it is trusted (src/kms/epoch-rows.ts: its MAC verifies, or migration 0009 listed
 *   it); every candidate row is checked before one is chosen, and an untrusted row is skipped,
 *   reported once per process through `onUntrustedRow` and never retired, logged or sealed to.
 *   A period's KMS key is the key its alias names, never a `key_periods.kms_key_id` that
 *   differs from it (such a row is reported and creation refused: INTERNAL, an operator must look).
 *   Retirement (`retired_at`) needs no MAC: an epoch retired behind the service's back only
 *   makes the service create a new epoch itself (and record it in the log), and the current
 *   epoch is the newest trusted generation of its period, so an older generation "un-retired"
 *   behind its back never encrypts again.
 */
import { PaylogError, isPaylogError } from '../errors.js';
import type { AppDatabase } from '../db/connection.js';
import { X25519PrivateKey, X25519PublicKey } from '../crypto/hpke.js';
import type { HpkeReceiverContext } from '../crypto/hpke-receiver.js';
import type { KmsBackend } from './backend.js';
import type { KeyEvent } from '../services/key-events.js';
import { MaterialCache } from '../keys/material-cache.js';
import { periodOf, type KeyPeriod } from '../keys/periods.js';
import { TRUST_COLUMNS, epochRowTrusted } from './epoch-rows.js';
import { epochKmsContext, periodKeyAlias, type EpochGranularity, type EpochRow, type TrustedEpochRow } from './epoch-names.js';
import { SELECT_PERIOD, createEpoch, type EpochCreationContext } from './epoch-create.js';

// Names, encryption contexts and row shapes of epochs (pure): src/kms/epoch-names.ts.
export * from './epoch-names.js';

interface EpochKeyringOptions {
  database: AppDatabase;
  kms: KmsBackend;
  granularity: EpochGranularity;
  cacheTtlMs: number;
  cacheMaxUses: number;
  /** Commits a key event to the log (src/services/key-events.ts); resolves after commit. */
  recordKeyEvent: (e: KeyEvent) => Promise<number>;
  /** Epoch-row MAC key (`epochRowKey(service key)`, src/kms/epoch-rows.ts). */
  rowKey: Buffer;
  /** A row that failed authentication (forged or damaged): called once per row per process. */
  onUntrustedRow?: (row: { table: 'key_epochs' | 'key_periods'; id: string }) => void;
  onCacheHit?: () => void;
  onCacheMiss?: () => void;
}

interface PublicEntry {
  epochId: string;
  publicKey: X25519PublicKey;
  periodStart: number;
  periodEnd: number;
}

const SELECT_ONE = `SELECT e.*, ${TRUST_COLUMNS} FROM key_epochs e WHERE e.epoch_id = $1`;
/** Longest life of a cached key-wrap window receiver context (ms; never beyond the private key's TTL). */
const WINDOW_CONTEXT_TTL_MS = 60_000;
/** Untrusted rows remembered per process (each is reported once); bounded. */
const MAX_REMEMBERED_UNTRUSTED = 100_000;

export class EpochKeyring {
  private readonly publicKeys = new Map<string, PublicEntry>();
  /** processor → the epoch this process last saw encrypting for it (a hint: see knownCurrent). */
  private readonly currentByProcessor = new Map<string, PublicEntry>();
  private readonly loadingPublic = new Map<string, Promise<PublicEntry | null>>();
  /** Unwrapped private keys (src/keys/material-cache.ts): zeroed when they leave it. */
  private readonly privateKeys: MaterialCache<X25519PrivateKey>;
  /** `epochId \n window id` → the window's receiver context (zeroed when it leaves). */
  private readonly windowContexts: MaterialCache<HpkeReceiverContext>;
  private closed = false;
  private readonly untrusted = new Set<string>();

  constructor(private readonly o: EpochKeyringOptions) {
    this.privateKeys = new MaterialCache<X25519PrivateKey>({
      ttlMs: o.cacheTtlMs,
      maxUses: o.cacheMaxUses,
      onEvict: (key) => key.destroy(),
      isUsable: (key) => !key.isDestroyed,
      ...(o.onCacheHit ? { onHit: o.onCacheHit } : {}),
      ...(o.onCacheMiss ? { onMiss: o.onCacheMiss } : {}),
      closedError: () => new PaylogError('LOG_UNAVAILABLE', 'shutting down'),
    });
    this.windowContexts = new MaterialCache<HpkeReceiverContext>({
      ttlMs: Math.min(o.cacheTtlMs, WINDOW_CONTEXT_TTL_MS),
      maxUses: o.cacheMaxUses,
      onEvict: (ctx) => ctx.destroy(),
      isUsable: (ctx) => !ctx.isDestroyed,
      closedError: () => new PaylogError('LOG_UNAVAILABLE', 'shutting down'),
    });
  }

  /** Whether the service created this row (or migration 0009 listed it); reports it once if not. */
  private trusted(row: TrustedEpochRow): boolean {
    if (epochRowTrusted(this.o.rowKey, row)) return true;
    this.reportUntrusted('key_epochs', row.epoch_id);
    return false;
  }

  private reportUntrusted(table: 'key_epochs' | 'key_periods', id: string): void {
    const k = `${table}:${id}`;
    if (this.untrusted.has(k)) return;
    if (this.untrusted.size < MAX_REMEMBERED_UNTRUSTED) this.untrusted.add(k);
    this.o.onUntrustedRow?.({ table, id });
  }

  /** The newest trusted row among `rows` (every row checked, untrusted ones reported). */
  private newestTrusted(rows: TrustedEpochRow[]): TrustedEpochRow | undefined {
    let chosen: TrustedEpochRow | undefined;
    for (const r of rows) if (this.trusted(r) && chosen === undefined) chosen = r;
    return chosen;
  }

  /**
   * The rows (read with `TRUST_COLUMNS`, src/kms/epoch-rows.ts) the service may use; every other
   * row is reported once through `onUntrustedRow` and left out (key lifecycle batches: a planted
   * row must neither stop them nor be rewrapped under a paylog key).
   */
  trustedOnly<T extends TrustedEpochRow>(rows: T[]): T[] {
    return rows.filter((r) => this.trusted(r));
  }

  /**
   * Whether a `key_periods` row names the KMS key its period's alias names (DescribeKey, no
   * creation). The runtime role can INSERT key_periods rows, so a row is acted on (e.g. its key
   * scheduled for deletion by retention) only when this holds; otherwise it is reported once.
   */
  async isPeriodKeyRow(row: { granularity: string; period_start: Date; kms_key_id: string }): Promise<boolean> {
    const period = periodOf(new Date(row.period_start), row.granularity as EpochGranularity);
    const arn = await this.o.kms.keyArn(periodKeyAlias(period)).catch((e: unknown) => {
      if (isPaylogError(e) && e.details?.kmsError === 'NotFoundException') return undefined;
      throw e;
    });
    if (arn !== undefined && arn === row.kms_key_id && period.start.getTime() === new Date(row.period_start).getTime()) return true;
    this.reportUntrusted('key_periods', `${period.granularity}/${period.label}`);
    return false;
  }

  /** The current epoch among one period's rows (SELECT_PERIOD): the newest trusted one, if it still encrypts. */
  private currentOf(rows: TrustedEpochRow[]): TrustedEpochRow | undefined {
    const newest = this.newestTrusted(rows);
    return newest && newest.retired_at === null && newest.shredded_at === null ? newest : undefined;
  }

  get granularity(): EpochGranularity {
    return this.o.granularity;
  }

  /**
   * The epoch that encrypts for `processor` at `now`. `currentId` is the database's answer for
   * the current epoch id (read in the submission's pre-check round trip; null = none yet, and
   * undefined = not read). Never returns a retired epoch or one whose period does not cover now.
   */
  async currentEpoch(processor: string, now: Date, currentId?: string | null): Promise<{ epochId: string; publicKey: X25519PublicKey }> {
    const e = await this.resolveCurrent(processor, now, currentId);
    if (e.periodStart <= now.getTime() && now.getTime() < e.periodEnd) this.currentByProcessor.set(processor, e);
    return e;
  }

  /**
   * The epoch this process last saw encrypting for `processor`, if its period covers `now` —
   * with no database read. It is a HINT: another process may have rotated or retired it since,
   * so a record sealed under it MUST be appended with the epoch as a commit-time precondition
   * (src/services/append-preconditions.ts `submissionRequires`), and on refusal the caller calls {@link forgetCurrent}.
   */
  knownCurrent(processor: string, now: Date): { epochId: string; publicKey: X25519PublicKey } | null {
    const e = this.currentByProcessor.get(processor);
    const t = now.getTime();
    return e && e.periodStart <= t && t < e.periodEnd ? e : null;
  }

  /** Drops the hint of {@link knownCurrent} for `processor`. */
  forgetCurrent(processor: string): void {
    this.currentByProcessor.delete(processor);
  }

  private async resolveCurrent(processor: string, now: Date, currentId?: string | null): Promise<PublicEntry> {
    const t = now.getTime();
    if (currentId) {
      const cached = this.publicKeys.get(currentId);
      if (cached && cached.periodStart <= t && t < cached.periodEnd) return cached;
      // null: the row the database calls current is not one the service created (planted):
      // fall through to creation, which picks the newest trusted row under the lock.
      const loaded = await this.singleFlight(this.loadingPublic, `id:${currentId}`, () => this.loadPublic(currentId));
      if (loaded && loaded.periodStart <= t && t < loaded.periodEnd) return loaded;
    }
    const period = periodOf(now, this.o.granularity);
    if (currentId === undefined) {
      const row = this.currentOf((await this.o.database.pool.query(SELECT_PERIOD, [processor, period.granularity, period.start])).rows as TrustedEpochRow[]);
      if (row) return this.rememberPublic(row);
    }
    const created = await this.singleFlight(this.loadingPublic, `new:${processor}:${period.label}`, () => this.create(processor, period, now, { rotate: false }));
    if (!created) throw new PaylogError('INTERNAL', 'key epoch could not be created');
    return created;
  }

  /**
   * Starts a new generation for `processor` in the current period now (rotation): the current
   * epoch is retired (decrypt-only) and a fresh key pair takes over. Each step is a key event.
   */
  async rotate(processor: string, now: Date, actor: KeyEvent['actor'], reason?: string): Promise<{ epochId: string }> {
    const e = await this.create(processor, periodOf(now, this.o.granularity), now, { rotate: true, actor, ...(reason ? { reason } : {}) });
    return { epochId: e.epochId };
  }

  /**
   * Runs `fn` with the epoch's private key (unwrapped by KMS on a cache miss, single-flight).
   * `fn` is synchronous so the key cannot be evicted while in use. DATA_SHREDDED when the epoch
   * or its key period has been shredded.
   */
  async withPrivateKey<T>(epochId: string, fn: (key: X25519PrivateKey) => T): Promise<T> {
    return await this.privateKeys.use(epochId, () => this.unwrapPrivate(epochId), fn);
  }

  /**
   * Runs `fn` with the receiver context of key-wrap window `windowId` of the epoch (derived by
   * `setup` from the private key on a miss, single-flight; src/crypto/envelope-v2.ts
   * `keyWrapWindowOf`). `fn` is synchronous, as for `withPrivateKey`.
   */
  async withWindowContext<T>(epochId: string, windowId: string, setup: (key: X25519PrivateKey) => HpkeReceiverContext, fn: (ctx: HpkeReceiverContext) => T): Promise<T> {
    return await this.windowContexts.use(`${epochId}\n${windowId}`, () => this.withPrivateKey(epochId, setup), fn);
  }

  /** Drops (and zeroes) any cached private key of `epochId` and its windows' receiver contexts. */
  evict(epochId: string): void {
    this.privateKeys.forget(epochId);
    this.windowContexts.forgetWhere((k) => k.startsWith(`${epochId}\n`));
  }

  /**
   * Forgets everything cached about `epochId` (after a shred or rewrap; on a key notification;
   * when a release's access entry was denied because the epoch is shredded).
   */
  forget(epochId: string): void {
    this.evict(epochId);
    this.publicKeys.delete(epochId);
    for (const [processor, e] of this.currentByProcessor) if (e.epochId === epochId) this.currentByProcessor.delete(processor);
  }

  /**
   * Forgets every epoch this process caches anything of that has been shredded since (after
   * key notifications may have been missed: src/kms/key-notifications.ts). Resolves with the
   * epochs forgotten.
   */
  async forgetShredded(): Promise<string[]> {
    const ids = [...new Set([...this.privateKeys.loadedKeys(), ...this.windowContexts.loadedKeys().map((k) => k.split('\n')[0]!), ...this.publicKeys.keys(), ...[...this.currentByProcessor.values()].map((e) => e.epochId)])];
    if (ids.length === 0) return [];
    const r = await this.o.database.pool.query('SELECT epoch_id FROM key_epochs WHERE epoch_id = ANY($1::text[]) AND (shredded_at IS NOT NULL OR wrapped_private_key IS NULL)', [ids]);
    const gone = (r.rows as { epoch_id: string }[]).map((x) => x.epoch_id);
    for (const id of gone) this.forget(id);
    return gone;
  }

  /** How many unwrapped private keys are cached now (status). */
  get cachedPrivateKeys(): number {
    return this.privateKeys.size;
  }

  /** Zeroes every cached private key; later calls fail. */
  close(): void {
    this.closed = true;
    this.privateKeys.close();
    this.windowContexts.close();
  }

  // ------------------------------------------------------------------ internals

  private async singleFlight<V>(map: Map<string, Promise<V>>, key: string, load: () => Promise<V>): Promise<V> {
    const pending = map.get(key);
    if (pending) return await pending;
    const p = load().finally(() => map.delete(key));
    map.set(key, p);
    return await p;
  }

  private rememberPublic(row: EpochRow): PublicEntry {
    const entry: PublicEntry = {
      epochId: row.epoch_id,
      publicKey: new X25519PublicKey(Buffer.from(row.public_key)),
      periodStart: new Date(row.period_start).getTime(),
      periodEnd: new Date(row.period_end).getTime(),
    };
    if (row.retired_at === null && row.shredded_at === null) this.publicKeys.set(row.epoch_id, entry);
    return entry;
  }

  /**
   * The epoch `epochId` as the current one of its period: null when its row is not trusted (a
   * planted row) or it is not its period's current epoch (see SELECT_PERIOD).
   */
  private async loadPublic(epochId: string): Promise<PublicEntry | null> {
    const row = (await this.o.database.pool.query(SELECT_ONE, [epochId])).rows[0] as TrustedEpochRow | undefined;
    if (!row) throw new PaylogError('INTERNAL', 'key epoch not found');
    if (!this.trusted(row)) return null;
    const current = this.currentOf((await this.o.database.pool.query(SELECT_PERIOD, [row.processor, row.granularity, row.period_start])).rows as TrustedEpochRow[]);
    if (current?.epoch_id !== row.epoch_id) return null;
    return this.rememberPublic(row);
  }

  /** What epoch creation (src/kms/epoch-create.ts) needs of this keyring. */
  private get creation(): EpochCreationContext {
    return {
      database: this.o.database,
      kms: this.o.kms,
      recordKeyEvent: this.o.recordKeyEvent,
      rowKey: this.o.rowKey,
      trusted: (row) => this.trusted(row),
      reportUntrustedPeriod: (id) => this.reportUntrusted('key_periods', id),
      currentOf: (rows) => this.currentOf(rows),
      onRetired: (processor, epochId) => {
        this.publicKeys.delete(epochId);
        this.forgetCurrent(processor);
      },
    };
  }

  /** Creates the next epoch of `processor` in `period` (src/kms/epoch-create.ts `createEpoch`) and remembers its public key. */
  private async create(
    processor: string,
    period: KeyPeriod,
    now: Date,
    opts: { rotate: boolean; actor?: KeyEvent['actor']; reason?: string },
  ): Promise<PublicEntry> {
    if (this.closed) throw new PaylogError('LOG_UNAVAILABLE', 'shutting down');
    return this.rememberPublic(await createEpoch(this.creation, processor, period, now, opts));
  }

  private async unwrapPrivate(epochId: string): Promise<X25519PrivateKey> {
    const row = (await this.o.database.pool.query(SELECT_ONE, [epochId])).rows[0] as TrustedEpochRow | undefined;
    if (!row) throw new PaylogError('INTEGRITY_FAILURE', 'the key epoch of this record does not exist');
    if (!this.trusted(row)) throw new PaylogError('INTEGRITY_FAILURE', 'the key epoch row of this record was not created by paylog');
    if (row.shredded_at !== null || row.wrapped_private_key === null || row.kms_key_id === null) {
      throw new PaylogError('DATA_SHREDDED', 'the key epoch of this record has been shredded');
    }
    const publicKey = Buffer.from(row.public_key);
    let raw: Buffer;
    try {
      raw = await this.o.kms.decryptDataKey(row.wrapped_private_key, epochKmsContext(epochId, publicKey), row.kms_key_id);
    } catch (e) {
      // KMS refuses a key pending deletion exactly like this: the period has been shredded
      // (also when this database was restored from a backup taken before the shred).
      if (isPaylogError(e) && (e.details?.kmsError === 'KMSInvalidStateException' || e.details?.kmsError === 'NotFoundException')) {
        const state = await this.o.kms.keyState(row.kms_key_id).catch(() => 'unknown');
        if (state === 'PendingDeletion' || e.details?.kmsError === 'NotFoundException') {
          throw new PaylogError('DATA_SHREDDED', 'the key period of this record has been shredded', undefined, { cause: e });
        }
      }
      throw e;
    }
    const key = new X25519PrivateKey(raw);
    if (!key.publicKey.equals(publicKey)) {
      key.destroy();
      throw new PaylogError('INTEGRITY_FAILURE', 'the unwrapped epoch key does not match its public key');
    }
    return key;
  }
}
