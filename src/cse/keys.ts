/**
 * Client-side encryption (CSE) keys: the P-256 ECDH keys browsers encrypt card data to
 * (JWE `ECDH-ES` + `A256GCM`, RFC 7518 §4.6 / §5.3), published as a JWK Set (RFC 7517 §5).
 *
 * ## Keys, names and rotation (the names: src/cse/key-names.ts)
 * - One key per calendar period (UTC; `PAYLOG_CSE_KEY_PERIOD` = `month` default, `day`, `hour`;
 *   the period arithmetic is src/keys/periods.ts, shared with the epoch keys). Its key id names the period:
 *   `paylog-cse-2026-12`, `paylog-cse-2026-12-01`, `paylog-cse-2026-12-01T10`. The JWK Set lists
 *   exactly the current period's key.
 * - A key decrypts from its period's start (less `CSE_KEY_CLOCK_SKEW_MS`, for instances whose
 *   clocks disagree at the boundary) until its period's end plus the overlap
 *   (`PAYLOG_CSE_KEY_OVERLAP_S`, default 24 h, never less than the JWE maximum age). Outside
 *   that window, when it was never created, or once destroyed, a key id is unknown
 *   (`CSE_KEY_UNKNOWN`).
 *
 * ## Key material (never in plaintext outside KMS or this process's memory)
 * - Each key has its OWN KMS key: `alias/<kid>` (e.g. `alias/paylog-cse-2026-12`, SYMMETRIC_DEFAULT,
 *   created on first use like the epoch period keys). Its 32-byte seed comes from KMS
 *   `GenerateDataKey` under that key, with the encryption context {@link cseSeedContext} naming
 *   the kid, and is stored only wrapped, in the `cse_keys` row of the kid.
 * - Creation: under a cross-process advisory lock per kid, the seed is generated, a
 *   `cse_key_created` key event (kid, KMS key, period, SHA-256 of the wrapped seed and of the
 *   public key) is committed to the log, and only then the row is inserted.
 * - A row MUST be authenticated before use: the runtime role may INSERT into `cse_keys` (and
 *   `keyring`), so a row is used only if its `kms_key_id` is the ARN paylog resolves for the
 *   kid's alias in its own KMS, and KMS `Decrypt` is called with THAT key id and the kid's
 *   context (so KMS itself refuses a blob of any other key or kid). A row naming another KMS key
 *   is refused with INTEGRITY_FAILURE; it is never unwrapped.
 * - Destruction (src/cse/retention.ts, run by retention): once the period plus overlap has
 *   passed, `cse_key_destroyed` is committed, the kid's KMS key is scheduled for deletion (which
 *   makes every copy of the wrapped seed, backups included, unusable at once), and the wrapped
 *   seed is removed from the row. A destroyed key, or one whose KMS key is pending deletion or
 *   gone, is `CSE_KEY_UNKNOWN`.
 * - Keys created before per-period keys (keyring rows `cse/<kid>`, wrapped under the service's
 *   data key) still open while their window lasts, only through KMS `Decrypt` with the data key
 *   id (a row under any other key is ignored). They cannot be destroyed in backups.
 * - The private scalar is derived from the seed (src/cse/p256-key.ts `deriveP256Scalar`, FIPS 186-5 §A.2.1 with
 *   HKDF-SHA256 as the source of the extra bits), imported as a NON-EXTRACTABLE WebCrypto
 *   `CryptoKey`; the seed, the scalar and the PKCS#8 bytes are zeroed right after the import.
 *   The imported key lives inside OpenSSL and cannot be wiped from JavaScript: eviction drops
 *   the last reference and the garbage collector frees it.
 *
 * ## Cache (src/keys/material-cache.ts, shared with the epoch private keys)
 * - Single flight: concurrent misses for one kid share one load (one KMS `Decrypt`).
 * - TTL `PAYLOG_CSE_KEY_CACHE_TTL_S` (default 300 s) from load; an expired entry is evicted by
 *   a timer and the next use loads it again. A failed load is not cached. No use limit.
 * - `forget(kid)` evicts one key (destruction); `close()` evicts everything.
 */
import { createHash, type webcrypto } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AppDatabase } from '../db/connection.js';
import { cseKeys, keyring } from '../db/schema.js';
import type { KmsBackend } from '../kms/backend.js';
import { PaylogError, isPaylogError } from '../errors.js';
import { MaterialCache } from '../keys/material-cache.js';
import { SYSTEM_ACTOR, type KeyEvent } from '../services/key-events.js';
import { Counter, type Registry } from 'prom-client';
import { cseSeedContext, kidAcceptedAt, kidForTime, periodOfKid, resolveCseKmsKey, type CseKeyPeriod } from './key-names.js';
import { importCseKey, publicPoint, type CsePublicJwk, type LoadedKey } from './p256-key.js';

/** Keyring name prefix of CSE keys created before per-period KMS keys (read-only, legacy). */
const CSE_KEYRING_PREFIX = 'cse/';
/** Advisory lock class for CSE key creation ("pycs"), second key = hashtext(kid). */
const CSE_LOCK_CLASS = 0x70796373;

interface CseKeySettings {
  period: CseKeyPeriod;
  overlapS: number;
  cacheTtlS: number;
}

interface CseKeyStoreDeps {
  database: AppDatabase;
  kms: KmsBackend;
  /** Commits a key event to the log (src/services/key-events.ts); resolves after commit. */
  recordKeyEvent: (e: KeyEvent) => Promise<number>;
  /**
   * The service's data key: ONLY to open keys created before per-period KMS keys (keyring rows
   * `cse/<kid>`); KMS Decrypt is called with this id, so a row under any other key is ignored.
   */
  legacyKmsKeyId?: string;
  /** Injectable clock (tests); default the system clock. */
  clock?: () => Date;
}

/** Counters for tests, metrics and the benchmark. */
interface CseKeyStats {
  /** Keys loaded (each is one KMS Decrypt, or one GenerateDataKey when it is created). */
  loads: number;
  hits: number;
  evictions: number;
}

/** A `cse_keys` row as the database returns it (any of it may have been planted). */
interface CseKeyRow {
  kid: string;
  kmsKeyId: string;
  wrappedSeed: Buffer | null;
  destroyedAt: Date | null;
}

export class CseKeyStore {
  readonly stats: CseKeyStats = { loads: 0, hits: 0, evictions: 0 };
  /**
   * Loaded keys (src/keys/material-cache.ts). A non-extractable CryptoKey cannot be wiped from
   * JavaScript: eviction drops the last reference (module doc).
   */
  private readonly cache: MaterialCache<LoadedKey>;

  constructor(
    private readonly deps: CseKeyStoreDeps,
    readonly settings: CseKeySettings,
  ) {
    this.cache = new MaterialCache<LoadedKey>({
      ttlMs: settings.cacheTtlS * 1000,
      onEvict: () => void this.stats.evictions++,
      onHit: () => void this.stats.hits++,
      closedError: () => new PaylogError('INTERNAL', 'CSE key store is closed'),
    });
  }

  private now(): Date {
    return this.deps.clock?.() ?? new Date();
  }

  /** The JWK Set browsers encrypt to: the current period's key (created on first use). */
  async jwks(now = this.now()): Promise<{ keys: CsePublicJwk[] }> {
    const current = await this.get(kidForTime(now, this.settings.period), { create: true });
    return { keys: [current.publicJwk] };
  }

  /**
   * The private key for `kid`, if `kid` is accepted at `now` and exists; else CSE_KEY_UNKNOWN.
   * Never creates a key except the current one (a blob cannot name a key nobody published).
   */
  async privateKeyFor(kid: unknown, now = this.now()): Promise<webcrypto.CryptoKey> {
    if (typeof kid !== 'string' || !kidAcceptedAt(kid, now, this.settings.overlapS)) throw unknownKey();
    return (await this.get(kid, { create: kid === kidForTime(now, this.settings.period) })).privateKey;
  }

  private get(kid: string, opts: { create: boolean }): Promise<LoadedKey> {
    return this.cache.get(kid, () => this.load(kid, opts));
  }

  /** The kid's row, then a legacy keyring row, then (current kid only) a new key. */
  private async load(kid: string, opts: { create: boolean }): Promise<LoadedKey> {
    const row = await this.readRow(kid);
    if (row) return await this.openRow(row, opts);
    const legacy = await this.openLegacy(kid);
    if (legacy) return legacy;
    if (!opts.create) throw unknownKey();
    return await this.create(kid);
  }

  private async readRow(kid: string, db: Pick<AppDatabase, 'db'> = this.deps.database): Promise<CseKeyRow | undefined> {
    return (
      await db.db
        .select({ kid: cseKeys.kid, kmsKeyId: cseKeys.kmsKeyId, wrappedSeed: cseKeys.wrappedSeed, destroyedAt: cseKeys.destroyedAt })
        .from(cseKeys)
        .where(eq(cseKeys.kid, kid))
        .limit(1)
    )[0];
  }

  /**
   * Authenticates the row (module doc), then unwraps its seed under the kid's own KMS key. For
   * the current kid (`create`) the kid's KMS key is created if missing, so a planted row is
   * reported as such (INTEGRITY_FAILURE) rather than as an unknown key.
   */
  private async openRow(row: CseKeyRow, opts: { create: boolean }): Promise<LoadedKey> {
    if (row.wrappedSeed === null || row.destroyedAt !== null) throw unknownKey();
    const expected = await resolveCseKmsKey(this.deps.kms, row.kid, opts.create);
    if (expected === null) throw unknownKey(); // no such KMS key (never created, or deleted by KMS)
    if (row.kmsKeyId !== expected) {
      throw new PaylogError('INTEGRITY_FAILURE', 'the stored client-side encryption key is not wrapped under its own KMS key; it was not created by paylog and is not used');
    }
    this.stats.loads++;
    let seed: Buffer;
    try {
      seed = await this.deps.kms.decryptDataKey(row.wrappedSeed, cseSeedContext(row.kid), expected);
    } catch (e) {
      if (await this.isDestroyedKmsKey(e, expected)) throw unknownKey();
      throw e;
    }
    try {
      return await importCseKey(row.kid, seed);
    } finally {
      seed.fill(0);
    }
  }

  /** KMS refuses a key pending deletion (or deleted): the CSE key has been destroyed. */
  private async isDestroyedKmsKey(e: unknown, keyId: string): Promise<boolean> {
    if (!isPaylogError(e)) return false;
    if (e.details?.kmsError === 'NotFoundException') return true;
    if (e.details?.kmsError !== 'KMSInvalidStateException') return false;
    return (await this.deps.kms.keyState(keyId).catch(() => undefined)) === 'PendingDeletion';
  }

  /** A key created before per-period KMS keys: only if KMS opens it under the data key. */
  private async openLegacy(kid: string): Promise<LoadedKey | null> {
    if (this.deps.legacyKmsKeyId === undefined) return null;
    const name = `${CSE_KEYRING_PREFIX}${kid}`;
    const row = (await this.deps.database.db.select().from(keyring).where(eq(keyring.name, name)).limit(1))[0];
    if (!row) return null;
    this.stats.loads++;
    let seed: Buffer;
    try {
      seed = await this.deps.kms.decryptDataKey(row.wrappedKey, { 'paylog:keyring': name }, this.deps.legacyKmsKeyId);
    } catch (e) {
      // Not wrapped under the data key with this name's context: not paylog's, ignored.
      if (isPaylogError(e) && e.code === 'INTEGRITY_FAILURE') return null;
      throw e;
    }
    try {
      return await importCseKey(kid, seed);
    } finally {
      seed.fill(0);
    }
  }

  /**
   * Creates the key of `kid` under a cross-process advisory lock: seed from KMS GenerateDataKey
   * under the kid's own KMS key, `cse_key_created` committed, then the row inserted. Another
   * process that created it meanwhile wins (its row is opened instead).
   */
  private async create(kid: string): Promise<LoadedKey> {
    const period = periodOfKid(kid);
    if (period === null) throw unknownKey();
    const client = await this.deps.database.pool.connect();
    let broken = false;
    try {
      await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [CSE_LOCK_CLASS, kid]);
      try {
        const existing = await this.readRow(kid);
        if (existing) return await this.openRow(existing, { create: true });
        const kmsKeyId = await resolveCseKmsKey(this.deps.kms, kid, true);
        if (kmsKeyId === null) throw new PaylogError('INTERNAL', 'CSE KMS key could not be created');
        this.stats.loads++;
        const fresh = await this.deps.kms.generateDataKey(kmsKeyId, cseSeedContext(kid));
        let key: LoadedKey;
        try {
          key = await importCseKey(kid, fresh.plaintext);
        } finally {
          fresh.plaintext.fill(0);
        }
        await this.deps.recordKeyEvent({
          event: 'cse_key_created',
          time: this.now(),
          actor: SYSTEM_ACTOR,
          keyName: kid,
          kmsKeyId,
          periodStart: new Date(period.start),
          periodEnd: new Date(period.end),
          wrappedKey: fresh.wrappedKey,
          publicKeySha256: createHash('sha256').update(publicPoint(key.publicJwk)).digest(),
        });
        await this.deps.database.db.insert(cseKeys).values({
          kid,
          periodStart: new Date(period.start),
          periodEnd: new Date(period.end),
          kmsKeyId,
          wrappedSeed: fresh.wrappedKey,
        });
        return key;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [CSE_LOCK_CLASS, kid]).catch(() => {
          broken = true;
        });
      }
    } finally {
      client.release(broken);
    }
  }

  /** Drops the cached key of `kid` (after its destruction). */
  forget(kid: string): void {
    this.cache.forget(kid);
  }

  /** Evicts every cached key; later calls fail. */
  close(): void {
    this.cache.close();
  }
}

function unknownKey(): PaylogError {
  return new PaylogError('CSE_KEY_UNKNOWN', 'the JWE names a key id that paylog does not accept (unknown, retired, destroyed or not yet valid); fetch /v1/cse/jwks.json again');
}

/**
 * `paylog_cse_key_loads_total` (each one KMS Decrypt of a CSE key seed, or, when the key is
 * created, one GenerateDataKey under its new KMS key) and `paylog_cse_key_cache_hits_total`, read from `store.stats`.
 */
export function registerCseKeyMetrics(registry: Registry, store: CseKeyStore): void {
  const fromStats = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  fromStats('paylog_cse_key_loads_total', 'Client-side encryption keys loaded (one KMS Decrypt each, or one GenerateDataKey at creation)', () => store.stats.loads);
  fromStats('paylog_cse_key_cache_hits_total', 'Client-side encryption key lookups answered from memory', () => store.stats.hits);
}
