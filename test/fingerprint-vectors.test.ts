/**
 * Fingerprints and MACs are stored and compared across releases: their bytes MUST stay
 * HMAC-SHA-256(key, label ‖ 0x00 ‖ message) exactly (src/crypto/fingerprint.ts), however the
 * input is fed to the HMAC (issue 20 made it one update). Checked against an independent
 * computation and against fixed vectors.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint, fingerprintV2, probeServedMac, requestMac, servedRequestMac, unknownTransactionRef } from '../src/crypto/fingerprint.js';
import { PUBLIC_TEST_PAN } from '../src/validation/test-card.js';

const key = Buffer.alloc(32, 7);
const reference = (label: string, message: string) => createHmac('sha256', key).update(Buffer.from(label, 'ascii')).update(Buffer.from([0])).update(Buffer.from(message, 'utf8')).digest();
const card = { type: 'card', pan: PUBLIC_TEST_PAN, expMonth: 12, expYear: 2030, holderName: 'Zoë' } as never;

describe('labelled HMACs keep their bytes', () => {
  it('equal an independent HMAC over label ‖ 0x00 ‖ message (non-ASCII message included)', () => {
    expect(servedRequestMac(key, '{"a":"Zoë ✓"}')).toEqual(reference('paylog/request-mac/v2', '{"a":"Zoë ✓"}'));
    expect(probeServedMac(key, '{"brand":"visa"}')).toEqual(reference('paylog/probe/served/v1', '{"brand":"visa"}'));
    expect(requestMac(key, 'x')).toEqual(reference('paylog/request-mac/v1', 'x'));
    expect(fingerprint(key, card)).toBe(`fp_${reference('paylog/fingerprint/v1', `card:${PUBLIC_TEST_PAN}`).subarray(0, 16).toString('base64url')}`);
    expect(fingerprintV2(key, 'acme', card)).toBe(`fp2_${reference('paylog/fingerprint/v2', `acme\u0000card:${PUBLIC_TEST_PAN}`).subarray(0, 16).toString('base64url')}`);
    expect(unknownTransactionRef(key, 'tx-1')).toBe(`unknown:${reference('paylog/unknown-transaction-id/v1', 'tx-1').subarray(0, 16).toString('base64url')}`);
  });

  it('fixed vectors', () => {
    expect(servedRequestMac(key, '{}').toString('hex')).toMatchInlineSnapshot(`"59cf5ba1cd419821eeb341e247b80e1b03dbde90c084f083b71b31eb9772e283"`);
    expect(fingerprintV2(key, 'acme', card)).toMatchInlineSnapshot(`"fp2_7V2NC5mNWXCT-SpEnB_DvA"`);
  });
});
