/**
 * One single-flight cache of key material (the ESDK's caching materials manager, reduced to
 * what paylog needs): used by the epoch private keys (src/kms/epoch-keys.ts) and the
 * client-side encryption keys (src/cse/keys.ts).
 *
 * Contracts:
 * - Single flight: concurrent misses for one key share ONE call of the loader; a failed load is
 *   not cached (the next use loads again).
 * - An entry serves at most `maxUses` uses and for at most `ttlMs` from the moment its load
 *   resolved; then it is evicted (a timer evicts it at the TTL even when unused).
 * - Every loaded value leaves through `onEvict` EXACTLY once (TTL, exhaustion, `forget`,
 *   `forgetWhere`, `close`, or a value whose entry was forgotten or closed while it was loading), and
 *   `onEvict` MUST zero or destroy the material. The cache never copies a value.
 * - A value is handed to `fn` of {@link MaterialCache.use} synchronously after the usability
 *   check, so a synchronous `fn` cannot see it evicted; a value whose entry was evicted while
 *   its caller waited is never handed out (the use loads again, at most `MAX_ATTEMPTS` times).
 * - After `close()` every use rejects with `closedError()`; nothing is loaded.
 * - Knows nothing about KMS, databases or what the material is.
 */
import { PaylogError } from '../errors.js';

interface MaterialCacheOptions<V> {
  /** Lifetime of a loaded entry (ms, from its load). */
  ttlMs: number;
  /** Uses per loaded entry; default unlimited. */
  maxUses?: number;
  /** Called once for every value that leaves the cache: MUST zero or destroy it. */
  onEvict: (value: V, key: string) => void;
  /** Extra check before a cached value is used (e.g. not destroyed elsewhere). */
  isUsable?: (value: V) => boolean;
  /** A use answered from memory, or joining a load already in flight. */
  onHit?: () => void;
  /** A use that starts a load. */
  onMiss?: () => void;
  /** The error of a use after `close()`. */
  closedError: () => PaylogError;
}

/** Uses of one call that found their entry exhausted or evicted before giving up. */
const MAX_ATTEMPTS = 3;

interface Entry<V> {
  readonly promise: Promise<V>;
  value?: V;
  loaded: boolean;
  evicted: boolean;
  usesLeft: number;
  expiresAt: number;
  timer?: NodeJS.Timeout;
}

export class MaterialCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private closed = false;

  constructor(private readonly o: MaterialCacheOptions<V>) {}

  /**
   * Runs `fn` with the material of `key`, loading it with `load` on a miss (single flight).
   * Counts one use. Rejects with the loader's error, or KMS_UNAVAILABLE when the entry was
   * exhausted or evicted by others `MAX_ATTEMPTS` times in a row.
   */
  async use<T>(key: string, load: () => Promise<V>, fn: (value: V) => T): Promise<T> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (this.closed) throw this.o.closedError();
      let entry = this.entries.get(key);
      if (entry && entry.loaded && !this.fresh(entry)) {
        this.evictEntry(key, entry);
        entry = undefined;
      }
      if (entry) this.o.onHit?.();
      else entry = this.startLoad(key, load);
      const value = await entry.promise;
      if (entry.evicted || entry.usesLeft <= 0 || !this.fresh(entry)) continue;
      entry.usesLeft--;
      try {
        return fn(value);
      } finally {
        if (entry.usesLeft <= 0) this.evictEntry(key, entry);
      }
    }
    throw new PaylogError('KMS_UNAVAILABLE', 'key material could not be kept long enough to use');
  }

  /** The material of `key` (one use); for material that is not wiped by hand after use. */
  get(key: string, load: () => Promise<V>): Promise<V> {
    return this.use(key, load, (v) => v);
  }

  /** Evicts (and zeroes, through `onEvict`) the entry of `key`, loaded or loading. */
  forget(key: string): void {
    const entry = this.entries.get(key);
    if (entry) this.evictEntry(key, entry);
  }

  /** Evicts every entry, loaded or loading, whose key `which` selects. */
  forgetWhere(which: (key: string) => boolean): void {
    for (const [key, entry] of [...this.entries]) if (which(key)) this.evictEntry(key, entry);
  }

  /** Keys with loaded material now. */
  loadedKeys(): string[] {
    return [...this.entries].filter(([, e]) => e.loaded).map(([k]) => k);
  }

  /** How many loaded entries are cached now. */
  get size(): number {
    return this.loadedKeys().length;
  }

  /** Evicts everything; every later use rejects. */
  close(): void {
    this.closed = true;
    for (const [key, entry] of [...this.entries]) this.evictEntry(key, entry);
  }

  private fresh(e: Entry<V>): boolean {
    if (!e.loaded) return !e.evicted;
    return !e.evicted && e.usesLeft > 0 && e.expiresAt > Date.now() && (this.o.isUsable?.(e.value as V) ?? true);
  }

  private startLoad(key: string, load: () => Promise<V>): Entry<V> {
    this.o.onMiss?.();
    const entry: Entry<V> = {
      promise: undefined as unknown as Promise<V>,
      loaded: false,
      evicted: false,
      usesLeft: this.o.maxUses ?? Number.POSITIVE_INFINITY,
      expiresAt: 0,
    };
    (entry as { promise: Promise<V> }).promise = load().then(
      (value) => this.settle(key, entry, value),
      (e: unknown) => {
        if (this.entries.get(key) === entry) this.entries.delete(key); // failures are not cached
        throw e;
      },
    );
    this.entries.set(key, entry);
    return entry;
  }

  /** A load resolved: keep it with its TTL, or zero it at once if its entry left meanwhile. */
  private settle(key: string, entry: Entry<V>, value: V): V {
    entry.value = value;
    entry.loaded = true;
    if (entry.evicted || this.closed) {
      this.o.onEvict(value, key);
      if (this.closed) throw this.o.closedError();
      return value; // waiters see `evicted` and load again; the value is never handed out
    }
    entry.expiresAt = Date.now() + this.o.ttlMs;
    entry.timer = setTimeout(() => this.evictEntry(key, entry), this.o.ttlMs);
    entry.timer.unref();
    return value;
  }

  private evictEntry(key: string, entry: Entry<V>): void {
    if (entry.evicted) return;
    entry.evicted = true;
    if (entry.timer) clearTimeout(entry.timer);
    if (this.entries.get(key) === entry) this.entries.delete(key);
    if (entry.loaded) this.o.onEvict(entry.value as V, key);
  }
}
