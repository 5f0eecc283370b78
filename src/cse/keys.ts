/**
 * Client-side encryption (CSE) keys: the P-256 ECDH keys browsers encrypt card data to
 * (JWE `ECDH-ES` + `A256GCM`, RFC 7518 §4.6 / §5.3), published as a JWK Set (RFC 7517 §5).
 *
 * ## Keys, names and rotation
 * - One key per calendar period (UTC; `PAYLOG_CSE_KEY_PERIOD` = `month` default, `day`, `hour`).
 *   Its key id names the period: `paylog-cse-2026-12`, `paylog-cse-2026-12-01`,
 *   `paylog-cse-2026-12-01T10`. The JWK Set lists exactly the current period's key.
 * - A key decrypts from its period's start (less `CSE_KEY_CLOCK_SKEW_MS`, for instances whose
 *   clocks disagree at the boundary) until its period's end plus the overlap
 *   (`PAYLOG_CSE_KEY_OVERLAP_S`, default 24 h, never less than the JWE maximum age). Outside
 *   that window, or when it was never created, a key id is unknown (`CSE_KEY_UNKNOWN`).
 * - Deterministic names make creation race-free across instances: the first keyring insert
 *   wins and everyone opens that row (`loadOrCreateServiceKey`).
 *
 * ## Key material (never in plaintext outside KMS or this process's memory)
 * - Each key is a keyring row `cse/<kid>`: a 32-byte seed from KMS `GenerateDataKey`, stored
 *   only KMS-wrapped (encryption context `{"paylog:keyring": "cse/<kid>"}`).
 * - The private scalar is derived from the seed (`deriveP256Scalar`, FIPS 186-5 §A.2.1 with
 *   HKDF-SHA256 as the source of the extra bits), imported as a NON-EXTRACTABLE WebCrypto
 *   `CryptoKey`; the seed, the scalar and the PKCS#8 bytes are zeroed right after the import.
 *   The imported key lives inside OpenSSL and cannot be wiped from JavaScript: eviction drops
 *   the last reference and the garbage collector frees it.
 *
 * ## Cache (same pattern as the epoch data keys)
 * - Single flight: concurrent misses for one kid share one load (one KMS `Decrypt`).
 * - TTL `PAYLOG_CSE_KEY_CACHE_TTL_S` (default 300 s) from load; an expired entry is evicted by
 *   a timer and the next use loads it again. A failed load is not cached.
 * - `close()` evicts everything.
 */
import { createPrivateKey, createPublicKey, hkdfSync, webcrypto } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { AppDatabase } from '../db/connection.js';
import { keyring } from '../db/schema.js';
import type { PaylogKms } from '../kms/client.js';
import { loadOrCreateServiceKey } from '../keyring.js';
import { PaylogError } from '../errors.js';
import { Counter, type Registry } from 'prom-client';

export type CseKeyPeriod = 'month' | 'day' | 'hour';

/** JWE algorithms paylog accepts, and the only ones the JWK Set advertises. */
export const CSE_KEY_MANAGEMENT_ALGORITHM = 'ECDH-ES';
export const CSE_CONTENT_ENCRYPTION_ALGORITHM = 'A256GCM';
/** Keyring name prefix of CSE keys. */
export const CSE_KEYRING_PREFIX = 'cse/';
/** How early a key may be used before its period starts (instances' clocks disagree a little). */
export const CSE_KEY_CLOCK_SKEW_MS = 5 * 60 * 1000;
/** HKDF info label for the P-256 scalar (domain separation from every other use of the seed). */
const SCALAR_INFO = Buffer.from('paylog/cse/p256-scalar/v1', 'ascii');
/** FIPS 186-5 §A.2.1: len(n) + 64 bits of randomness for a negligibly biased scalar. */
const SCALAR_SOURCE_BYTES = 40;
/** Order of the P-256 base point (SEC 2 §2.4.2). */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
/** PKCS#8 PrivateKeyInfo prefix for id-ecPublicKey / prime256v1 with a bare ECPrivateKey (RFC 5915). */
const P256_PKCS8_PREFIX = Buffer.from('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420', 'hex');

const KID_RE = /^paylog-cse-(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}))?)?$/;

export interface CsePublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  use: 'enc';
  alg: typeof CSE_KEY_MANAGEMENT_ALGORITHM;
}

export interface CseKeySettings {
  period: CseKeyPeriod;
  overlapS: number;
  cacheTtlS: number;
}

interface LoadedKey {
  readonly kid: string;
  readonly privateKey: webcrypto.CryptoKey;
  readonly publicJwk: CsePublicJwk;
}

const pad = (n: number, w = 2) => String(n).padStart(w, '0');

/** The key id of the period containing `at` (UTC). */
export function kidForTime(at: Date, period: CseKeyPeriod): string {
  const base = `paylog-cse-${pad(at.getUTCFullYear(), 4)}-${pad(at.getUTCMonth() + 1)}`;
  if (period === 'month') return base;
  const day = `${base}-${pad(at.getUTCDate())}`;
  return period === 'day' ? day : `${day}T${pad(at.getUTCHours())}`;
}

/** The period a key id names, or null when it is not a well-formed paylog CSE key id. */
export function periodOfKid(kid: string): { start: number; end: number; period: CseKeyPeriod } | null {
  const m = KID_RE.exec(kid);
  if (m === null) return null;
  const [y, mo, d, h] = [Number(m[1]), Number(m[2]), m[3] === undefined ? undefined : Number(m[3]), m[4] === undefined ? undefined : Number(m[4])];
  let start: number;
  let end: number;
  let period: CseKeyPeriod;
  if (d === undefined) {
    [start, end, period] = [Date.UTC(y, mo - 1, 1), Date.UTC(y, mo, 1), 'month'];
  } else if (h === undefined) {
    [start, end, period] = [Date.UTC(y, mo - 1, d), Date.UTC(y, mo - 1, d + 1), 'day'];
  } else {
    [start, end, period] = [Date.UTC(y, mo - 1, d, h), Date.UTC(y, mo - 1, d, h + 1), 'hour'];
  }
  // Reject out-of-range fields (2026-13, 02-30, T24) that Date.UTC would roll over.
  return kidForTime(new Date(start), period) === kid ? { start, end, period } : null;
}

/** True while `kid` may decrypt at `now` (module doc: period start − skew .. end + overlap). */
export function kidAcceptedAt(kid: string, now: Date, overlapS: number): boolean {
  const p = periodOfKid(kid);
  if (p === null) return false;
  const t = now.getTime();
  return t >= p.start - CSE_KEY_CLOCK_SKEW_MS && t < p.end + overlapS * 1000;
}

/**
 * FIPS 186-5 §A.2.1 (ECDSA/ECDH key pair generation using extra random bits): c = 40 bytes from
 * HKDF-SHA256(seed), d = (c mod (n − 1)) + 1. Returns d as 32 big-endian bytes (caller zeroes).
 */
export function deriveP256Scalar(seed: Buffer): Buffer {
  const c = Buffer.from(hkdfSync('sha256', seed, Buffer.alloc(0), SCALAR_INFO, SCALAR_SOURCE_BYTES));
  const d = (BigInt(`0x${c.toString('hex')}`) % (P256_N - 1n)) + 1n;
  c.fill(0);
  return Buffer.from(d.toString(16).padStart(64, '0'), 'hex');
}

/** Seed → non-extractable ECDH private key + public JWK; every intermediate buffer is zeroed. */
export async function importCseKey(kid: string, seed: Buffer): Promise<LoadedKey> {
  const d = deriveP256Scalar(seed);
  const pkcs8 = Buffer.concat([P256_PKCS8_PREFIX, d]);
  d.fill(0);
  try {
    const jwk = createPublicKey(createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
    const privateKey = await webcrypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
    if (typeof jwk.x !== 'string' || typeof jwk.y !== 'string') throw new PaylogError('INTERNAL', 'CSE public key could not be computed');
    return {
      kid,
      privateKey,
      publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid, use: 'enc', alg: CSE_KEY_MANAGEMENT_ALGORITHM },
    };
  } finally {
    pkcs8.fill(0);
  }
}

export interface CseKeyStoreDeps {
  database: AppDatabase;
  kms: PaylogKms;
  /** KMS key that wraps the seeds (the service's data key). */
  kmsKeyId: string;
}

/** Counters for tests, metrics and the benchmark. */
export interface CseKeyStats {
  /** Keys loaded from the keyring (each is one KMS Decrypt; creation adds one GenerateDataKey). */
  loads: number;
  hits: number;
  evictions: number;
}

export class CseKeyStore {
  private readonly cache = new Map<string, { value: Promise<LoadedKey>; timer?: NodeJS.Timeout }>();
  readonly stats: CseKeyStats = { loads: 0, hits: 0, evictions: 0 };
  private closed = false;

  constructor(
    private readonly deps: CseKeyStoreDeps,
    readonly settings: CseKeySettings,
  ) {}

  /** The JWK Set browsers encrypt to: the current period's key (created on first use). */
  async jwks(now = new Date()): Promise<{ keys: CsePublicJwk[] }> {
    const current = await this.get(kidForTime(now, this.settings.period), { create: true });
    return { keys: [current.publicJwk] };
  }

  /**
   * The private key for `kid`, if `kid` is accepted at `now` and exists; else CSE_KEY_UNKNOWN.
   * Never creates a key except the current one (a blob cannot name a key nobody published).
   */
  async privateKeyFor(kid: unknown, now = new Date()): Promise<webcrypto.CryptoKey> {
    if (typeof kid !== 'string' || !kidAcceptedAt(kid, now, this.settings.overlapS)) throw unknownKey();
    return (await this.get(kid, { create: kid === kidForTime(now, this.settings.period) })).privateKey;
  }

  private get(kid: string, opts: { create: boolean }): Promise<LoadedKey> {
    if (this.closed) return Promise.reject(new PaylogError('INTERNAL', 'CSE key store is closed'));
    const hit = this.cache.get(kid);
    if (hit !== undefined) {
      this.stats.hits++;
      return hit.value;
    }
    const entry: { value: Promise<LoadedKey>; timer?: NodeJS.Timeout } = { value: this.load(kid, opts) };
    this.cache.set(kid, entry);
    entry.value.then(
      () => {
        if (this.cache.get(kid) !== entry) return;
        entry.timer = setTimeout(() => this.evict(kid, entry), this.settings.cacheTtlS * 1000);
        entry.timer.unref();
      },
      () => {
        if (this.cache.get(kid) === entry) this.cache.delete(kid); // failures are not cached
      },
    );
    return entry.value;
  }

  private async load(kid: string, opts: { create: boolean }): Promise<LoadedKey> {
    const name = `${CSE_KEYRING_PREFIX}${kid}`;
    if (!opts.create) {
      const rows = await this.deps.database.db.select({ name: keyring.name }).from(keyring).where(eq(keyring.name, name)).limit(1);
      if (rows.length === 0) throw unknownKey();
    }
    this.stats.loads++;
    const seed = await loadOrCreateServiceKey(this.deps.database, this.deps.kms, this.deps.kmsKeyId, name);
    try {
      return await importCseKey(kid, seed);
    } finally {
      seed.fill(0);
    }
  }

  private evict(kid: string, entry: { timer?: NodeJS.Timeout }): void {
    if (this.cache.get(kid) !== entry) return;
    if (entry.timer) clearTimeout(entry.timer);
    this.cache.delete(kid);
    this.stats.evictions++;
  }

  /** Evicts every cached key; later calls fail. */
  close(): void {
    this.closed = true;
    for (const [kid, entry] of [...this.cache]) this.evict(kid, entry);
  }
}

function unknownKey(): PaylogError {
  return new PaylogError('CSE_KEY_UNKNOWN', 'the JWE names a key id that paylog does not accept (unknown, retired or not yet valid); fetch /v1/cse/jwks.json again');
}

/**
 * `paylog_cse_key_loads_total` (each one KMS Decrypt of a CSE key seed; the first use of a key
 * adds one GenerateDataKey) and `paylog_cse_key_cache_hits_total`, read from `store.stats`.
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
  fromStats('paylog_cse_key_loads_total', 'Client-side encryption keys loaded from the keyring (one KMS Decrypt each)', () => store.stats.loads);
  fromStats('paylog_cse_key_cache_hits_total', 'Client-side encryption key lookups answered from memory', () => store.stats.hits);
}
