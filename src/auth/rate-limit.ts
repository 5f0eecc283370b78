/**
 * Per-principal token bucket (abuse limit on releases). In-memory per instance: with N
 * instances the effective limit is at most N× the setting, which the operator sizes for.
 */
import { PaylogError } from '../errors.js';

export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  /** `perMinute` requests per minute per key, with a burst of the same size. */
  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Takes one token for `key` or throws RATE_LIMITED with `retryAfterSeconds`. */
  take(key: string): void {
    const t = this.now();
    const rate = this.perMinute / 60_000; // tokens per ms
    const b = this.buckets.get(key) ?? { tokens: this.perMinute, at: t };
    b.tokens = Math.min(this.perMinute, b.tokens + (t - b.at) * rate);
    b.at = t;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      const retryAfterSeconds = Math.max(1, Math.ceil((1 - b.tokens) / rate / 1000));
      throw new PaylogError('RATE_LIMITED', 'too many release requests; retry later', { retryAfterSeconds });
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.evictFull(t);
  }

  private evictFull(t: number): void {
    for (const [k, b] of this.buckets) if (b.tokens + (t - b.at) * (this.perMinute / 60_000) >= this.perMinute) this.buckets.delete(k);
  }
}
