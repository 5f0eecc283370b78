/**
 * The log-line search the CVC tests rely on (test/helpers/log-tokens.ts): it must find a CVC
 * logged as a value of its own, and must not mistake ids, fingerprints or timings that happen to
 * contain the same digits for one (that false alarm failed CI once).
 */
import { describe, expect, it } from 'vitest';
import { logLinesWithToken } from './helpers/log-tokens.js';

describe('logLinesWithToken', () => {
  it('finds the secret as a JSON value, a form field or a word', () => {
    const lines = ['{"level":30,"cvc":"8315"}', 'body cvc=8315&x=1', 'code 8315 refused', '{"n":8315}'];
    expect(logLinesWithToken(lines, '8315')).toEqual(lines);
  });

  it('ignores the digits inside a UUID, a hex fingerprint, a longer number or a decimal', () => {
    const lines = [
      '{"reqId":"705ef737-8315-4871-9d04-a88ac998033c"}',
      '{"fp":"sha256:cd7d8315ab"}',
      '{"time":1796672783150}',
      '{"responseTime":6.8315}',
    ];
    expect(logLinesWithToken(lines, '8315')).toEqual([]);
  });
});
