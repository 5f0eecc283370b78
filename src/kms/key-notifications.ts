/**
 * Key notifications between paylog processes (workers and instances sharing one database):
 * PostgreSQL LISTEN/NOTIFY on {@link KEY_EVENTS_CHANNEL}.
 *
 * Contracts:
 * - A shred sends its notice with `pg_notify` INSIDE the transaction of its UPDATE
 *   (src/services/key-shred.ts `commitShred`): PostgreSQL delivers it only if, and only
 *   after, that transaction commits.
 * - Notices are hygiene, not the guarantee: they make every process zero a shredded epoch's
 *   cached private key promptly. What stops a release after a shred is the commit-time
 *   precondition of its access entry (src/services/append-preconditions.ts `keyMaterialRequires`). A notice can be
 *   missed (the listening connection was down); so after every (re)connection the listener
 *   calls `onSubscribed`, which re-checks what the process still caches.
 * - {@link KeyNoticeListener} runs on its own dedicated connection (the runtime pool is in
 *   node-postgres pipeline mode and hands its connections out; LISTEN is per session). Every
 *   wait is bounded (connect, LISTEN, heartbeat), a lost connection (database restart, network)
 *   is reopened with capped exponential back-off, and no connection error is ever unhandled.
 */
import pg from 'pg';
import { Gauge, type Registry } from 'prom-client';
import { z } from 'zod';

/** The NOTIFY channel of key events (stable: other instances of other versions listen on it). */
export const KEY_EVENTS_CHANNEL = 'paylog_key_events';
/** First and largest delay before reopening a lost listening connection. */
const LISTEN_RECONNECT_MIN_MS = 250;
const LISTEN_RECONNECT_MAX_MS = 10_000;
/** How often the listening connection is checked with a query (a half-open connection is noticed). */
const LISTEN_HEARTBEAT_MS = 30_000;
/** Bound of the listener's connect, LISTEN and heartbeat. */
const LISTEN_TIMEOUT_MS = 5_000;

const keyNoticeSchema = z.object({ event: z.literal('epoch_shredded'), epochId: z.string().min(1).max(200) });
/** One key notification: the epoch whose private key was destroyed. No key material, ever. */
export type KeyNotice = z.infer<typeof keyNoticeSchema>;

export function encodeKeyNotice(n: KeyNotice): string {
  return JSON.stringify({ event: n.event, epochId: n.epochId });
}

/** The notice in a payload, or null for anything else (other events, other versions, garbage). */
function parseKeyNotice(payload: string | undefined): KeyNotice | null {
  if (payload === undefined) return null;
  try {
    const r = keyNoticeSchema.safeParse(JSON.parse(payload));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

interface KeyNoticeListenerOptions {
  /** Database URL of the listening connection (the runtime login). */
  url: string;
  /** Role assumed at connection start (`-c role=`), or null to stay the login role. */
  role: string | null;
  /** Each notice received. MUST NOT throw (a throw is reported to `onError` and ignored). */
  onNotice: (n: KeyNotice) => void;
  /** After each (re)subscription: reconcile what may have been missed while not listening. */
  onSubscribed?: () => Promise<void>;
  /** A lost or failed connection (it is reopened); for logs. */
  onError?: (e: Error) => void;
  timeoutMs?: number;
  heartbeatMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
}

export class KeyNoticeListener {
  private client: pg.Client | null = null;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private backoff: number;
  private closed = false;
  private subscribed = false;

  constructor(private readonly o: KeyNoticeListenerOptions) {
    this.backoff = o.reconnectMinMs ?? LISTEN_RECONNECT_MIN_MS;
  }

  /** Starts listening in the background (never throws; failures are retried). */
  start(): void {
    if (!this.closed && !this.client && !this.retry) this.open();
  }

  /** True while the LISTEN is in effect. */
  get listening(): boolean {
    return this.subscribed;
  }

  /** Stops listening and closes the connection (bounded). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    const c = this.drop();
    if (c) await bounded(c.end(), this.timeoutMs);
  }

  private get timeoutMs(): number {
    return this.o.timeoutMs ?? LISTEN_TIMEOUT_MS;
  }

  private open(): void {
    this.retry = null;
    const t = this.timeoutMs;
    const client = new pg.Client({
      connectionString: this.o.url,
      connectionTimeoutMillis: t,
      query_timeout: t,
      keepAlive: true,
      ...(this.o.role ? { options: `-c role=${this.o.role}` } : {}),
    });
    this.client = client;
    client.on('error', (e) => this.lost(client, e));
    client.on('end', () => this.lost(client, new Error('the listening connection ended')));
    client.on('notification', (m) => {
      if (m.channel !== KEY_EVENTS_CHANNEL) return;
      const n = parseKeyNotice(m.payload);
      if (!n) return;
      try {
        this.o.onNotice(n);
      } catch (e) {
        this.o.onError?.(e as Error);
      }
    });
    void (async () => {
      await client.connect();
      await client.query(`LISTEN ${KEY_EVENTS_CHANNEL}`);
      if (this.client !== client) {
        await bounded(client.end(), t); // closed (or replaced) meanwhile
        return;
      }
      this.subscribed = true;
      this.backoff = this.o.reconnectMinMs ?? LISTEN_RECONNECT_MIN_MS;
      this.heartbeat = setInterval(() => {
        client.query('SELECT 1').catch((e: unknown) => this.lost(client, e as Error));
      }, this.o.heartbeatMs ?? LISTEN_HEARTBEAT_MS);
      this.heartbeat.unref();
      await this.o.onSubscribed?.().catch((e: unknown) => this.o.onError?.(e as Error));
    })().catch((e: unknown) => this.lost(client, e as Error));
  }

  /** Forgets the current connection (if it is `client`) and returns it, to be ended. */
  private drop(client: pg.Client | null = this.client): pg.Client | null {
    if (!client || client !== this.client) return null;
    this.client = null;
    this.subscribed = false;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    return client;
  }

  private lost(client: pg.Client, e: Error): void {
    const c = this.drop(client);
    if (!c) return; // an older connection, already replaced
    void bounded(c.end(), this.timeoutMs);
    if (this.closed) return;
    this.o.onError?.(e);
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.o.reconnectMaxMs ?? LISTEN_RECONNECT_MAX_MS);
    this.retry = setTimeout(() => this.open(), delay);
    this.retry.unref();
  }
}

/** Awaits `p` at most `ms` (its failure ignored): ending a dead connection must not hang. */
async function bounded(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

/** Per-process gauges: cached epoch private keys, and whether key notices are being received. */
export function registerEpochKeyGauges(registry: Registry, read: { cachedKeys: () => number; listening: () => boolean }): void {
  new Gauge({
    name: 'paylog_epoch_keys_cached',
    help: 'Unwrapped epoch private keys held in memory by this process (zeroed on expiry, exhaustion, and a shred notice)',
    registers: [registry],
    aggregator: 'sum', // across workers: keys held in memory by all of them
    collect() {
      this.set(read.cachedKeys());
    },
  });
  new Gauge({
    name: 'paylog_key_notices_listening',
    help: '1 while this process listens for shred notices on its dedicated database connection, 0 while it reconnects',
    registers: [registry],
    aggregator: 'min', // across workers: 0 while any of them is not listening
    collect() {
      this.set(read.listening() ? 1 : 0);
    },
  });
}
