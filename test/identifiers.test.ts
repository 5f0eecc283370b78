/**
 * One rule, one place (issue 7 item 8): the identifier patterns and the PAN detector exist once
 * (src/validation/identifiers.ts) and validation, services, PKI, the verifier and the OpenAPI
 * document use that one; the encoding rules (src/validation/encoding.ts); constant-time MACs.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import * as ids from '../src/validation/identifiers.js';
import * as validation from '../src/validation/transaction.js';
import * as verifier from '../src/audit/index.js';
import { PRINCIPAL_NAME_PATTERN as PKI_NAME_PATTERN, parsePrincipalUri } from '../src/pki/identity.js';
import { encodeLeaf, type Leaf } from '../src/log/leaf.js';
import { macEqual } from '../src/crypto/fingerprint.js';
import { assertStorableRequestTarget, assertStorableStrings, decodeUtf8Strict, percentDecodeToBytes } from '../src/validation/encoding.js';
import { fixtures, startTestPaylog } from './helpers/paylog.js';

const SRC = new URL('../src/', import.meta.url).pathname;
function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}
const sources = sourceFiles().map((p) => ({ path: p.slice(SRC.length), text: readFileSync(p, 'utf8') }));

describe('one module for identifiers and the PAN detector', () => {
  it('validation, the verifier and the PKI use the very same functions and patterns', () => {
    expect(verifier.containsPanLikeNumber).toBe(ids.containsPanLikeNumber);
    expect(verifier.containsPanLikeIdentifier).toBe(ids.containsPanLikeIdentifier);
    expect(verifier.luhnValid).toBe(ids.luhnValid);
    expect(validation.containsPanLikeNumber).toBe(ids.containsPanLikeNumber);
    expect(validation.containsPanLikeIdentifier).toBe(ids.containsPanLikeIdentifier);
    expect(validation.TRANSACTION_ID_MAX).toBe(ids.TRANSACTION_ID_MAX);
    expect(PKI_NAME_PATTERN).toBe(ids.PRINCIPAL_NAME_PATTERN);
    expect(ids.PROCESSOR_NAME_PATTERN).toBe(ids.PRINCIPAL_NAME_PATTERN);
  });

  it('no source file writes its own copy of the patterns or the detector', () => {
    const copies = [
      /\[a-z0-9\]\[a-z0-9-\]\{0,62\}/, // principal / processor name
      /A-Za-z0-9\]\[A-Za-z0-9\._:-\]/, // transaction id
      /\\d\(\?:\[[ .\\-]+\]\?\\d\)/, // grouped digit run (PAN scan)
      /function luhnValid/,
    ];
    const found = sources
      .filter((s) => s.path !== 'validation/identifiers.ts' && s.path !== 'pki/ca.ts' /* DNS names */)
      .flatMap((s) => copies.filter((re) => re.test(s.text)).map((re) => `${s.path}: ${re.source}`));
    expect(found).toEqual([]);
  });

  it('the verifier applies validation\'s rule: NFKC folding and `.` as a grouping separator', () => {
    const leaf = (reference: string): Uint8Array =>
      encodeLeaf({
        v: 1,
        type: 'access',
        time: '2026-12-01T00:00:00.000Z',
        transactionId: 'ord-1',
        action: 'release',
        principal: { role: 'processor', name: 'acme', certificateFingerprint: `sha256:${'ab'.repeat(32)}` },
        purpose: 'authorize',
        reference,
        outcome: 'granted',
        sourceAddress: '127.0.0.1',
      } as Leaf);
    for (const c of fixtures.cards) {
      const dotted = c.pan.replace(/(\d{4})(?=\d)/g, '$1.');
      const fullWidth = [...c.pan].map((d) => String.fromCharCode(0xff10 + Number(d))).join('');
      for (const text of [dotted, fullWidth, `ref ${c.pan.replace(/(\d{4})(?=\d)/g, '$1 ')}`]) {
        expect(validation.containsPanLikeNumber(text), text).toBe(true);
        const r = verifier.checkLeaf(0, leaf(text));
        expect('failure' in r && r.failure.code, text).toBe('CARD_DATA_IN_LEAF');
      }
    }
    expect('leaf' in verifier.checkLeaf(0, leaf('INV-2026-000123'))).toBe(true);
  });

  it('the transaction-id rule: 1-64 characters, as validation, services and the contract say', () => {
    expect(ids.TRANSACTION_ID_MAX).toBe(64);
    for (const ok of ['a', 'A.b_c:d-e', 'x'.repeat(64), 'ord-2026-000123']) expect(ids.isTransactionId(ok), ok).toBe(true);
    for (const bad of ['', '-a', '.a', 'a b', 'x'.repeat(65), 'é', 'a\u0000b', 42, null]) expect(ids.isTransactionId(bad), String(bad)).toBe(false);
    expect(ids.isProcessorName('acme')).toBe(true);
    for (const bad of ['', 'Acme', '-acme', 'a'.repeat(64), 'ac_me']) expect(ids.isProcessorName(bad)).toBe(false);
    // A processor name is clear text everywhere (found by the hostile run: PUT /v1/admin/processors/ord-<PAN>).
    for (const c of fixtures.cards) expect(ids.isProcessorName(`ord-${c.pan}`), c.brand).toBe(false);
    expect(parsePrincipalUri(`urn:paylog:principal:processor:${'a'.repeat(63)}`)).toMatchObject({ name: 'a'.repeat(63) });
  });

  it('the OpenAPI document states the same patterns and limits', async () => {
    // The document is generated from the routes a running service registered.
    const t = await startTestPaylog();
    const doc = (await t.call(null, 'GET', '/openapi.json').finally(() => t.stop())).json;
    const txParam = doc.paths['/v1/transactions/{transactionId}'].get.parameters[0].schema;
    expect(txParam).toMatchObject({ maxLength: ids.TRANSACTION_ID_MAX, pattern: ids.TRANSACTION_ID_PATTERN.source });
    const inclusion = doc.paths['/v1/log/proof/inclusion'].get.parameters.find((p: any) => p.name === 'transactionId').schema;
    expect(inclusion).toEqual(txParam);
    expect(doc.paths['/v1/admin/processors/{name}'].put.parameters[0].schema.pattern).toBe(ids.PROCESSOR_NAME_PATTERN.source);
    const body = doc.components.schemas.TransactionRequest.properties;
    expect(body.transactionId).toMatchObject({ maxLength: ids.TRANSACTION_ID_MAX, pattern: ids.TRANSACTION_ID_PATTERN.source });
    expect(body.processor.pattern).toBe(ids.PROCESSOR_NAME_PATTERN.source);
    expect(doc.components.schemas.Error.properties.error.properties.code.enum).toContain('INVALID_ENCODING');
  });
});

describe('request MACs are compared in constant time', () => {
  it('macEqual', () => {
    const a = Buffer.alloc(32, 7);
    expect(macEqual(a, Buffer.alloc(32, 7))).toBe(true);
    expect(macEqual(a, Buffer.alloc(32, 8))).toBe(false);
    expect(macEqual(a, Buffer.alloc(31, 7))).toBe(false); // no throw on length mismatch
  });
  it('no MAC is compared with Buffer.equals anywhere in src/', () => {
    const found = sources.flatMap((s) => (/mac\w*\s*\.\s*equals\s*\(|\.equals\(\s*\w*mac\b/i.test(s.text) ? [s.path] : []));
    expect(found).toEqual([]);
  });
});

describe('encoding rules (src/validation/encoding.ts)', () => {
  it('percent-decoding: escapes to bytes, stray % literal', () => {
    expect([...percentDecodeToBytes('/a%00b%zz%4')]).toEqual([...Buffer.from('/a\u0000b%zz%4', 'latin1')]);
    expect(() => assertStorableRequestTarget('/v1/transactions/ord-1?x=%E2%82%AC')).not.toThrow(); // €
    for (const bad of ['/%00', '/a?b=%00', '/%C3%28', '/%ED%A0%80', '/%F8%88%80%80%80', '/%C0%AF']) {
      expect(() => assertStorableRequestTarget(bad), bad).toThrow(expect.objectContaining({ code: 'INVALID_ENCODING' }));
    }
  });
  it('strings: NUL and lone surrogates at any depth, keys too; pairs are fine', () => {
    expect(() => assertStorableStrings({ a: ['😀', { 'ké': 'Zoë' }] }, 'body')).not.toThrow();
    for (const bad of [{ a: 'x\u0000' }, { 'k\ud800': 1 }, [[['\udfff']]], '\ud83d']) {
      expect(() => assertStorableStrings(bad, 'body')).toThrow(expect.objectContaining({ code: 'INVALID_ENCODING' }));
    }
    // Iterative: a 100,000-deep structure is walked without a stack overflow.
    let deep: unknown = 'a\u0000';
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(() => assertStorableStrings(deep, 'body')).toThrow(expect.objectContaining({ code: 'INVALID_ENCODING' }));
  });
  it('strict UTF-8 decoding', () => {
    expect(decodeUtf8Strict(Buffer.from('Zoë 😀'), 'body')).toBe('Zoë 😀');
    expect(() => decodeUtf8Strict(Buffer.from([0x61, 0xff]), 'body')).toThrow(expect.objectContaining({ code: 'INVALID_ENCODING' }));
  });
});
