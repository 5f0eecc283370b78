/**
 * CVC holder keys (issue 18 item 4; SECURITY.md "The card security code"): the key material a
 * held card security code is sealed to, and the reason a database copy can never open one.
 *
 * Every paylog process (each node:cluster worker, each instance) is a holder: it generates an
 * X25519 key pair IN MEMORY, publishes only the public half in `cvc_holder_keys` (with a MAC
 * under a key derived from the service MAC key, so a row planted by the runtime role is
 * ignored), and seals each submitted CVC to every live holder key (src/cvc/codes.ts), so any
 * process running at submission time can open it.
 *
 * Contracts:
 * - A private key MUST NOT leave process memory: never written to the database, a file, KMS or
 *   a log line. Nothing that reaches the database or KMS can therefore open a sealed CVC.
 * - A key is current for `rotateMs` (= the CVC TTL, at least MIN_ROTATE_MS): no CVC is sealed to
 *   it after its `not_after` (= creation + rotateMs + NOT_AFTER_SLACK_MS), and its private half
 *   is zeroed at the first sweep after `not_after + ttlMs` (every CVC sealed to it has expired by
 *   then). So a private key lives at most rotateMs + NOT_AFTER_SLACK_MS + ttlMs + one sweep
 *   interval (src/bootstrap/cvc.ts).
 * - A process started after a CVC was sealed holds none of its keys and cannot open it (it
 *   leaves it to the processes that can, or to the TTL).
 * - `close()` zeroes every private key and deletes this process's rows.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AppDatabase } from '../db/connection.js';
import { X25519PrivateKey, X25519PublicKey } from '../crypto/hpke.js';

/** Shortest rotation period (a test TTL of seconds must not make a key per second). */
const MIN_ROTATE_MS = 10_000;
/** A key's `not_after` is this much after its successor is due: a rotation late by a timer tick is no gap. */
const NOT_AFTER_SLACK_MS = 30_000;
/** How long the list of other processes' keys is reused (a new process is sealed to after at most this). */
const HOLDER_LIST_CACHE_MS = 5_000;
const ROW_MAC_LABEL = 'paylog/cvc-holder-rows/v1';
const KEY_ID_PREFIX = 'cvk_';

/** Derives the holder-row MAC key from the service MAC key (never the key itself). */
export function holderRowKey(serviceKey: Buffer): Buffer {
  return createHmac('sha256', serviceKey).update(ROW_MAC_LABEL).digest();
}

/** MAC of a holder row: key id, public key and not_after, length-prefixed. */
function holderRowMac(rowKey: Buffer, keyId: string, publicKey: Buffer, notAfter: Date): Buffer {
  const id = Buffer.from(keyId, 'utf8');
  const head = Buffer.alloc(4);
  head.writeUInt32BE(id.length);
  const t = Buffer.alloc(8);
  t.writeBigInt64BE(BigInt(notAfter.getTime()));
  return createHmac('sha256', rowKey).update(head).update(id).update(publicKey).update(t).digest();
}

/** A public key CVCs are sealed to. */
interface HolderPublicKey {
  keyId: string;
  publicKey: X25519PublicKey;
}

interface OwnKey {
  keyId: string;
  key: X25519PrivateKey;
  notAfter: Date;
}

interface HolderKeysOptions {
  database: AppDatabase;
  /** `holderRowKey(service MAC key)`. */
  rowKey: Buffer;
  ttlMs: number;
  clock: () => Date;
  /** A row whose MAC does not verify (planted): reported once per key id. */
  onUntrustedRow?: (keyId: string) => void;
}

export class CvcHolderKeys {
  private readonly own: OwnKey[] = [];
  private others: { at: number; keys: HolderPublicKey[] } | null = null;
  private readonly reported = new Set<string>();
  readonly rotateMs: number;

  constructor(private readonly o: HolderKeysOptions) {
    this.rotateMs = Math.max(MIN_ROTATE_MS, o.ttlMs);
  }

  /** Creates and publishes this process's first key (start-up). */
  async start(): Promise<void> {
    await this.rotate();
  }

  /**
   * One maintenance step (a timer calls it every rotateMs): publish a new current key, zero and
   * unpublish own keys whose last CVC has expired, delete expired rows of other processes.
   */
  async rotate(): Promise<void> {
    const now = this.o.clock();
    const keyId = KEY_ID_PREFIX + randomBytes(12).toString('hex');
    const key = X25519PrivateKey.generate();
    const notAfter = new Date(now.getTime() + this.rotateMs + NOT_AFTER_SLACK_MS);
    await this.o.database.pool.query({
      name: 'paylog_cvc_holder_publish',
      text: 'INSERT INTO cvc_holder_keys (key_id, public_key, not_after, mac) VALUES ($1, $2, $3, $4)',
      values: [keyId, key.publicKey, notAfter, holderRowMac(this.o.rowKey, keyId, key.publicKey, notAfter)],
    });
    this.own.push({ keyId, key, notAfter });
    this.others = null;
    await this.destroySpent();
  }

  /**
   * Zeroes own private keys whose last CVC has expired (`not_after + ttl` passed) and deletes
   * every such row (any process's). Called on rotation and on every sweep, so a key outlives
   * its last CVC by at most one sweep interval.
   */
  async destroySpent(): Promise<void> {
    const spentBefore = this.o.clock().getTime() - this.o.ttlMs;
    for (const k of this.own.filter((k) => k.notAfter.getTime() < spentBefore)) this.destroy(k);
    await this.o.database.pool.query({ name: 'paylog_cvc_holder_purge', text: 'DELETE FROM cvc_holder_keys WHERE not_after < $1', values: [new Date(spentBefore)] });
  }

  /** The private keys this process holds, by key id (to open a sealed CVC). */
  privateKeys(): Map<string, X25519PrivateKey> {
    return new Map(this.own.map((k) => [k.keyId, k.key]));
  }

  /** Every live holder key a CVC is sealed to now: this process's current key and every trusted live row. */
  async sealingKeys(): Promise<HolderPublicKey[]> {
    const now = this.o.clock();
    const mine = this.own.at(-1);
    if (!mine) throw new Error('CVC holder keys not started');
    if (!this.others || now.getTime() - this.others.at > HOLDER_LIST_CACHE_MS) {
      const r = await this.o.database.pool.query({
        name: 'paylog_cvc_holder_list',
        text: 'SELECT key_id, public_key, not_after, mac FROM cvc_holder_keys WHERE not_after > $1',
        values: [now],
      });
      const keys: HolderPublicKey[] = [];
      for (const row of r.rows as { key_id: string; public_key: Buffer; not_after: Date; mac: Buffer }[]) {
        if (!this.trusted(row)) continue;
        keys.push({ keyId: row.key_id, publicKey: new X25519PublicKey(row.public_key) });
      }
      this.others = { at: now.getTime(), keys };
    }
    const keys = this.others.keys.filter((k) => k.keyId !== mine.keyId);
    return [{ keyId: mine.keyId, publicKey: new X25519PublicKey(mine.key.publicKey) }, ...keys];
  }

  /** Zeroes every private key and unpublishes them (shutdown). */
  async close(): Promise<void> {
    const ids = this.own.map((k) => k.keyId);
    for (const k of [...this.own]) this.destroy(k);
    if (ids.length > 0) await this.o.database.pool.query('DELETE FROM cvc_holder_keys WHERE key_id = ANY($1::text[])', [ids]).catch(() => undefined);
  }

  private destroy(k: OwnKey): void {
    k.key.destroy();
    this.own.splice(this.own.indexOf(k), 1);
  }

  private trusted(row: { key_id: string; public_key: Buffer; not_after: Date; mac: Buffer }): boolean {
    const want = holderRowMac(this.o.rowKey, row.key_id, row.public_key, new Date(row.not_after));
    const ok = row.public_key.length === 32 && row.mac.length === want.length && timingSafeEqual(row.mac, want);
    if (!ok && !this.reported.has(row.key_id)) {
      this.reported.add(row.key_id);
      this.o.onUntrustedRow?.(row.key_id);
    }
    return ok;
  }
}
