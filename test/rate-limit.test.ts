/** Release rate limit (@fastify/rate-limit): per client certificate, refused before the service, not logged. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';

let t: TestPaylog;
beforeAll(async () => {
  t = await startTestPaylog({ env: { PAYLOG_RELEASE_RATE_PER_MINUTE: '2' } });
});
afterAll(async () => {
  await t?.stop();
});

describe('release rate limit', () => {
  it('counts per certificate, answers 429 with Retry-After and the limit headers, and logs no access entry', async () => {
    const acme = cardTransaction();
    const globex = cardTransaction({ processor: 'globex' });
    for (const b of [acme, globex]) expect((await t.call('checkout', 'POST', '/v1/transactions', b)).status).toBe(201);
    const release = (who: 'processor-acme' | 'processor-globex', id: string) =>
      t.call(who, 'POST', `/v1/transactions/${id}/release`, { purpose: 'capture' });
    const first = await release('processor-acme', acme.transactionId);
    expect(first.status).toBe(200);
    expect(first.headers['x-ratelimit-limit']).toBe('2');
    expect(first.headers['x-ratelimit-remaining']).toBe('1');
    expect((await release('processor-acme', acme.transactionId)).status).toBe(200);
    const limited = await release('processor-acme', acme.transactionId);
    expect(limited.status).toBe(429);
    expect(limited.json).toEqual({ error: { code: 'RATE_LIMITED', message: expect.any(String), details: { retryAfterSeconds: expect.any(Number) } } });
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited.headers['x-ratelimit-remaining']).toBe('0');
    // Another certificate has its own budget.
    expect((await release('processor-globex', globex.transactionId)).status).toBe(200);
    // The refused attempt never reached the service: two access entries, both granted.
    const accesses = await t.call('auditor', 'GET', `/v1/transactions/${acme.transactionId}/accesses`);
    expect(accesses.json.accesses.map((a: { outcome: string }) => a.outcome)).toEqual(['granted', 'granted']);
  });
});
