/**
 * The per-request logger (src/api/request-logger.ts): a line at an enabled level is exactly the
 * line pino's own child with the request id writes (bindings, serializers, redaction), and a
 * line at a disabled level builds no child at all.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { FastifyBaseLogger } from 'fastify';
import { createLogger } from '../src/logging.js';
import { requestLoggerFactory } from '../src/api/request-logger.js';

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger(level, dest), lines };
}
const withoutTime = (l: Record<string, unknown>) => Object.fromEntries(Object.entries(l).filter(([k]) => k !== 'time'));

describe('request logger', () => {
  it('writes what pino\'s child writes, redaction and error serializer included', async () => {
    const a = capture('info');
    const b = capture('info');
    const lazy = requestLoggerFactory(a.logger as unknown as FastifyBaseLogger, { reqId: 'r-1' }, {});
    const child = b.logger.child({ reqId: 'r-1' });
    for (const log of [lazy, child] as Array<{ info: (...x: unknown[]) => void; warn: (...x: unknown[]) => void; error: (...x: unknown[]) => void }>) {
      log.info({ method: 'POST', route: '/v1/transactions' }, 'incoming request');
      log.warn({ paymentMethod: { pan: '4111111111111111' }, body: { cvc: '123' } }, 'should be redacted');
      log.error({ err: new TypeError('boom') }, 'failed');
      log.info('plain message');
    }
    await new Promise((r) => setImmediate(r));
    expect(a.lines.map(withoutTime)).toEqual(b.lines.map(withoutTime));
    expect(a.lines).toHaveLength(4);
    expect(JSON.stringify(a.lines)).not.toContain('4111111111111111');
    expect(a.lines.every((l) => l.reqId === 'r-1')).toBe(true);
  });

  it('a disabled level writes nothing and makes no child', () => {
    const a = capture('warn');
    let children = 0;
    const parent = a.logger;
    const realChild = parent.child.bind(parent);
    parent.child = ((...x: Parameters<typeof parent.child>) => {
      children++;
      return realChild(...x);
    }) as typeof parent.child;
    const lazy = requestLoggerFactory(parent as unknown as FastifyBaseLogger, { reqId: 'r-2' }, {});
    lazy.info({ a: 1 }, 'incoming request');
    lazy.debug('x');
    expect(children).toBe(0);
    expect(a.lines).toHaveLength(0);
    lazy.warn('now');
    expect(children).toBe(1);
  });
});
