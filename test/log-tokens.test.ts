/**
 * The log-line and leaf searches the CVC tests rely on (test/helpers/log-tokens.ts): they must
 * find a CVC logged or stored as a value of its own, and must not mistake ids, fingerprints or
 * timings that happen to contain the same digits for one (that false alarm failed CI once).
 */
import { describe, expect, it } from 'vitest';
import { leavesWithToken, logLinesWithToken } from './helpers/log-tokens.js';
import { encodeCbor } from '../src/log/leaf/cbor.js';

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

describe('leavesWithToken', () => {
  const leaf = (extra: Record<string, any>) => encodeCbor({ v: 3, type: 'transaction', id: 'ord-6f96b823067c', md: { invoice: 'INV-77' }, ...extra });

  it('finds the secret as a text value, a map key, inside a text as a word, or in a byte string', () => {
    const leaves = [
      leaf({ md: { cvc: '8315' } }),
      leaf({ md: { '8315': 'x' } }),
      leaf({ note: 'cvc=8315;' }),
      leaf({ raw: Buffer.from('code 8315') }),
    ];
    expect(leavesWithToken(leaves, '8315')).toEqual([0, 1, 2, 3]);
    // The raw bytes of the first one hold the secret only right after its CBOR header 'd' (0x64).
    expect(Buffer.from(leaves[0]!).toString('latin1')).toContain('d8315');
  });

  it('ignores the digits inside a hex transaction id, a KMS key ARN or a longer number', () => {
    const leaves = [
      leaf({ id: 'ord-6f98315b067c' }),
      leaf({ id: 'demo-8315a9c0d4e2f761' }),
      leaf({ kmsKeyId: 'arn:aws:kms:us-east-1:111122223333:key/cb2fe629-8315-43b9-8188-cc9e19f58486' }),
      leaf({ amt: 83150, time: 1796672783150 }),
    ];
    expect(leavesWithToken(leaves, '8315')).toEqual([]);
    // What a plain byte search would have reported.
    expect(leaves.filter((l) => Buffer.from(l).includes('8315'))).toHaveLength(3);
  });
});
