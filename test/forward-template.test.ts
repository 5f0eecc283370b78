/**
 * Pure unit tests of the forward template parser/encoder (src/forward/template.ts), the answer
 * masker (src/forward/mask.ts) and the egress address ranges (src/net/forward-egress.ts).
 */
import { gzipSync, brotliCompressSync, deflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { encodeFor, fillTemplate, parseTemplate, templateKindOf } from '../src/forward/template.js';
import { decodeContent, maskText } from '../src/forward/mask.js';
import { isPrivateAddress } from '../src/net/forward-egress.js';
import { containsPanLikeNumber } from '../src/validation/identifiers.js';

const HOSTILE = 'a"b\\c</x>&amp;{{card.number}}\'\n\u2028=&+%';

describe('template kinds and positions', () => {
  it('content types choose the kind; unknown types have none', () => {
    expect(templateKindOf('application/json; charset=utf-8')).toBe('json');
    expect(templateKindOf('application/vnd.api+json')).toBe('json');
    expect(templateKindOf('application/x-www-form-urlencoded')).toBe('form');
    expect(templateKindOf('text/xml')).toBe('xml');
    expect(templateKindOf('application/soap+xml')).toBe('xml');
    expect(templateKindOf('text/plain')).toBeUndefined();
    expect(templateKindOf(undefined)).toBeUndefined();
  });

  it('JSON: a placeholder in a string is string-escaped; a bare one is a JSON value (numbers for amounts and expiry)', () => {
    const t = parseTemplate('{"a":"x{{card.holderName}}y","n":{{card.holderName}},"v":{{amount.value}},"m":{{card.expiryMonth}}}', 'json');
    const { body } = fillTemplate(t, { 'card.holderName': HOSTILE, 'amount.value': '12345', 'card.expiryMonth': '05' });
    expect(JSON.parse(body)).toEqual({ a: `x${HOSTILE}y`, n: HOSTILE, v: 12345, m: 5 });
  });

  it('form: every value is one percent-encoded field value', () => {
    const t = parseTemplate('name={{card.holderName}}&v={{amount.value}}', 'form');
    const { body } = fillTemplate(t, { 'card.holderName': HOSTILE, 'amount.value': '1' });
    const p = new URLSearchParams(body);
    expect([...p.keys()]).toEqual(['name', 'v']);
    expect(p.get('name')).toBe(HOSTILE);
  });

  it('XML: text and attribute values escaped; placeholders in tag names, comments, CDATA and PIs refused; DTDs and entities refused', () => {
    const t = parseTemplate('<a k="{{card.holderName}}" j=\'{{card.holderName}}\'>{{card.holderName}}</a>', 'xml');
    const { body } = fillTemplate(t, { 'card.holderName': 'a"b\'c<d>&e' });
    expect(body).toBe('<a k="a&quot;b&apos;c&lt;d&gt;&amp;e" j=\'a&quot;b&apos;c&lt;d&gt;&amp;e\'>a&quot;b&apos;c&lt;d&gt;&amp;e</a>');
    for (const bad of ['<{{card.number}}/>', '<a {{card.number}}="1"/>', '<!-- {{card.number}} --><a/>', '<a><![CDATA[{{card.number}}]]></a>', '<?pi {{card.number}}?><a/>', '<!DOCTYPE a><a>{{card.number}}</a>', '<a>&custom;{{card.number}}</a>']) {
      expect(() => parseTemplate(bad, 'xml'), bad).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    }
    expect(() => fillTemplate(parseTemplate('<a>{{card.holderName}}</a>', 'xml'), { 'card.holderName': 'a\u0001' })).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    expect(() => parseTemplate('<a>&amp;&#38;&#x26;{{card.number}}</a>', 'xml')).not.toThrow();
  });

  it('refused: unknown placeholders, a stray {{, invalid JSON structure, a card number in the literal text, a placeholder without a value', () => {
    expect(() => parseTemplate('{"a":"{{card.pan}}"}', 'json')).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    expect(() => parseTemplate('{"a":"{{"}', 'json')).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    expect(() => parseTemplate('{"a":{{card.number}}{{card.number}}}', 'json')).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    expect(() => parseTemplate('{"a":"4111 1111 1111 1111"}', 'json')).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
    expect(() => fillTemplate(parseTemplate('{"a":"{{iban.iban}}"}', 'json'), {})).toThrow(expect.objectContaining({ code: 'TEMPLATE_INVALID' }));
  });

  it('values are inserted whole: a value containing {{ is never expanded again', () => {
    const t = parseTemplate('{"a":"{{card.holderName}}","b":"{{card.number}}"}', 'json');
    const { body } = fillTemplate(t, { 'card.holderName': '{{card.number}}', 'card.number': '4111111111111111' });
    expect(JSON.parse(body)).toEqual({ a: '{{card.number}}', b: '4111111111111111' });
    expect(encodeFor('json-bare', 'card.number', '4111111111111111')).toBe('"4111111111111111"');
  });
});

describe('answer masking', () => {
  it('PAN-like values keep their last four, in any spelling; exact values are masked whole; the result holds no PAN', () => {
    const text = '{"a":"4111111111111111","b":"4111 1111 1111 1111","c":"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031","d":"４１１１１１１１１１１１１１１１","cvc":"123","iban":"DE89 3704 0044 0532 0130 00","x":"1234"}';
    const r = maskText(text, ['123', 'DE89370400440532013000']);
    expect(containsPanLikeNumber(r.text)).toBe(false);
    expect(r.text).not.toContain('"123"');
    expect(r.text).not.toContain('DE89');
    expect(r.text).toContain('"x":"1234"');
    expect(r.text).toContain('************1111');
    expect(r.masked).toBe(6);
  });

  it('gzip, deflate and br bodies are decompressed (bounded); an unknown coding is refused', () => {
    const body = Buffer.from('{"pan":"4111111111111111"}');
    for (const [coding, bytes] of [['gzip', gzipSync(body)], ['deflate', deflateSync(body)], ['br', brotliCompressSync(body)]] as const) {
      expect(decodeContent(bytes, coding, 1024).equals(body)).toBe(true);
    }
    expect(() => decodeContent(gzipSync(Buffer.alloc(10_000)), 'gzip', 1024)).toThrow(expect.objectContaining({ code: 'DESTINATION_RESPONSE_UNREADABLE' }));
    expect(() => decodeContent(body, 'compress', 1024)).toThrow(expect.objectContaining({ code: 'DESTINATION_RESPONSE_UNREADABLE' }));
  });
});

describe('egress address ranges', () => {
  it('private, loopback, link-local, CGNAT, IPv4-mapped and NAT64 addresses are private; public ones are not', () => {
    for (const a of ['10.1.2.3', '127.0.0.1', '169.254.169.254', '172.16.0.1', '192.168.1.1', '100.64.0.1', '100.127.255.255', '0.0.0.0', '::1', '::', 'fe80::1', 'fd00::1', '::ffff:8.8.8.8', '::ffff:127.0.0.1', '64:ff9b::808:808', 'not-an-address']) {
      expect(isPrivateAddress(a), a).toBe(true);
    }
    for (const a of ['8.8.8.8', '100.128.0.1', '2606:4700:4700::1111', '1.1.1.1']) expect(isPrivateAddress(a), a).toBe(false);
  });
});
