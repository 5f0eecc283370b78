/**
 * Issue 21: the API reference shows realistic examples, not ones Swagger UI invents. Walks the
 * served /openapi.json: every parameter, request body and response (but binary ones) has an
 * example; every example validates against its own schema (Ajv, JSON Schema 2020-12, as the
 * document declares); request examples also pass the services' own validation; card numbers
 * appear in answers only where the contract serves plaintext (the release); each error response
 * lists real codes of its own status, each with an example of that code; tags come in the order
 * a user meets them; the info says "Try it out" needs a client certificate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { ERROR_CODES } from '../src/errors.js';
import { HTTP_STATUS } from '../src/api/errors.js';
import { TAGS } from '../src/api/openapi.js';
import { openApiDocument, documentedRoutes } from '../src/api/openapi-document.js';
import type { RouteSpec } from '../src/api/route-spec.js';
import { READINESS_CACHE_MS } from '../src/readiness.js';
import { containsPanLikeNumber } from '../src/validation/identifiers.js';
import { validateTransactionRequest } from '../src/validation/transaction.js';
import { takeCardSecurityCode } from '../src/validation/card-security-code.js';
import { idempotencyKeyOf, parseForwardRequest } from '../src/services/forward/request.js';
import { parseTemplate } from '../src/forward/template.js';
import { decodeLeaf, leafTransactionId } from '../src/log/leaf.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;
const DOC_ID = 'https://paylog.invalid/openapi.json';
/** Bodies that are bytes, not text: no example is meaningful (tiles, the page's CSS/JS/PNG). */
const BINARY = 'application/octet-stream';
/** The one answer that is the plaintext payment method by contract (SECURITY.md: release). */
const PLAINTEXT_ANSWERS = new Set(['releasePaymentMethod']);

let t: TestPaylog;
let doc: any;
let ajv: Ajv2020;
beforeAll(async () => {
  t = await startTestPaylog();
  doc = (await t.call(null, 'GET', '/openapi.json')).json;
  ajv = addFormats(new Ajv2020({ strict: false, validateSchema: false, allErrors: true }));
  // zod's z.base64() is `format: base64` (not an Ajv format): checked as RFC 4648 base64.
  ajv.addFormat('base64', /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/);
  ajv.addSchema(structuredClone(doc), DOC_ID);
});
afterAll(async () => {
  await t?.stop();
});

const pointer = (segments: ReadonlyArray<string | number>) =>
  segments.map((s) => `/${encodeURIComponent(String(s).replaceAll('~', '~0').replaceAll('/', '~1'))}`).join('');

/** Validates `value` against the schema at `segments` of the document; returns Ajv's errors. */
function check(segments: ReadonlyArray<string | number>, value: unknown): unknown[] {
  const validate = ajv.getSchema(`${DOC_ID}#${pointer(segments)}`) ?? ajv.compile({ $ref: `${DOC_ID}#${pointer(segments)}` });
  return validate(value) ? [] : (validate.errors ?? ['invalid']);
}

interface Found {
  where: string;
  operationId: string;
  kind: 'parameter' | 'request' | 'response';
  status?: string;
  schemaAt: Array<string | number>;
  value: unknown;
}

/** Every example of every operation, with the location of the schema it illustrates. */
function examples(): { found: Found[]; missing: string[] } {
  const found: Found[] = [];
  const missing: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const at = ['paths', path, method];
      const where = `${method.toUpperCase()} ${path}`;
      (op.parameters ?? []).forEach((p: any, i: number) => {
        if (p.example === undefined) missing.push(`${where} parameter ${p.name}`);
        else found.push({ where: `${where} parameter ${p.name}`, operationId: op.operationId, kind: 'parameter', schemaAt: [...at, 'parameters', i, 'schema'], value: p.example });
      });
      for (const [ct, media] of Object.entries((op.requestBody?.content ?? {}) as Record<string, any>)) {
        const named = Object.entries(media.examples ?? {});
        if (named.length === 0) missing.push(`${where} request body`);
        for (const [name, ex] of named) {
          found.push({ where: `${where} request ${name}`, operationId: op.operationId, kind: 'request', schemaAt: [...at, 'requestBody', 'content', ct, 'schema'], value: (ex as any).value });
        }
      }
      for (const [status, res] of Object.entries(op.responses as Record<string, any>)) {
        for (const [ct, media] of Object.entries((res.content ?? {}) as Record<string, any>)) {
          const named = Object.entries(media.examples ?? {});
          if (named.length === 0 && ct !== BINARY) missing.push(`${where} ${status} ${ct}`);
          for (const [name, ex] of named) {
            found.push({
              where: `${where} ${status} ${name}`,
              operationId: op.operationId,
              kind: 'response',
              status,
              schemaAt: [...at, 'responses', status, 'content', ct, 'schema'],
              value: (ex as any).value,
            });
          }
        }
      }
    }
  }
  return { found, missing };
}

describe('OpenAPI examples', () => {
  it('every parameter, request body and (text or JSON) response has an example', () => {
    const { found, missing } = examples();
    expect(missing).toEqual([]);
    expect(found.filter((f) => f.kind === 'request').length).toBeGreaterThan(20);
    expect(found.filter((f) => f.kind === 'response').length).toBeGreaterThan(150);
  });

  it('every example validates against its own schema', () => {
    const failures = examples().found.flatMap((f) => {
      const errors = check(f.schemaAt, f.value);
      return errors.length ? [`${f.where}: ${JSON.stringify(errors).slice(0, 400)}`] : [];
    });
    expect(failures).toEqual([]);
  });

  it('schema-level examples (if any) validate too', () => {
    const failures: string[] = [];
    const walk = (node: unknown, at: Array<string | number>) => {
      if (node === null || typeof node !== 'object') return;
      const o = node as Record<string, unknown>;
      if (Array.isArray(o.examples) && at.length > 0) {
        for (const v of o.examples) if (check(at, v).length) failures.push(at.join('/'));
      }
      for (const [k, v] of Object.entries(o)) if (k !== 'examples') walk(v, [...at, k]);
    };
    walk(doc.components.schemas, ['components', 'schemas']);
    expect(failures).toEqual([]);
  });

  it('the served document is the one the docs are generated from', async () => {
    expect(await openApiDocument()).toEqual(doc);
  });

  it('request examples pass the services own validation, not only the schema', async () => {
    const specs = new Map((await documentedRoutes()).flatMap((r) => (r.spec ? [[r.spec.operationId, r.spec] as const] : [])));
    const requests = examples().found.filter((f) => f.kind === 'request');
    for (const f of requests) {
      const spec = specs.get(f.operationId) as RouteSpec;
      expect(spec.body!.schema.safeParse(f.value).success, f.where).toBe(true);
    }
    let plaintext = 0;
    for (const f of requests.filter((r) => r.operationId === 'submitTransaction')) {
      const pm = (f.value as { paymentMethod: { type: string } }).paymentMethod;
      if (pm.type === 'encrypted') continue;
      const { body } = takeCardSecurityCode(f.value);
      expect(() => validateTransactionRequest(body), f.where).not.toThrow(); // Luhn, IBAN, routing number, expiry, currency
      plaintext++;
    }
    expect(plaintext).toBe(3); // card, US bank account, IBAN
    for (const f of requests.filter((r) => r.operationId === 'forwardToProcessor')) {
      const fr = parseForwardRequest(f.value);
      expect(() => parseTemplate(fr.template!, fr.kind!), f.where).not.toThrow();
    }
    const key = examples().found.find((f) => f.where.includes('parameter Idempotency-Key'))!;
    expect(idempotencyKeyOf(key.value as string)).toBe(key.value);
  });

  it('response examples parse with the zod schemas real answers are checked against', async () => {
    const specs = new Map((await documentedRoutes()).flatMap((r) => (r.spec ? [[r.spec.operationId, r.spec] as const] : [])));
    for (const f of examples().found.filter((x) => x.kind === 'response' && Number(x.status) < 400)) {
      const res = specs.get(f.operationId)!.responses[Number(f.status)]!;
      const parsed = res.schema!.safeParse(f.value);
      expect(parsed.success, `${f.where}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
    }
  });

  it('card numbers appear in request examples and in the release answer only; every other answer is masked', () => {
    const { found } = examples();
    const withPan = (kind: Found['kind']) => found.filter((f) => f.kind === kind && containsPanLikeNumber(JSON.stringify(f.value)));
    expect(withPan('request').map((f) => f.where)).toContain('POST /v1/transactions request card');
    expect(withPan('response').map((f) => f.operationId).filter((id) => !PLAINTEXT_ANSWERS.has(id))).toEqual([]);
    expect(withPan('parameter')).toEqual([]);
    const forward = found.find((f) => f.where === 'POST /v1/transactions/{transactionId}/forward 200 authorized')!;
    expect((forward.value as { body: string }).body).toContain('************1111');
  });

  it('each error response lists real codes of its own status, each with an example of that code', () => {
    let responses = 0;
    const codesSeen = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, res] of Object.entries(op.responses as Record<string, any>)) {
          if (Number(status) < 400) continue;
          const media = res.content['application/json'];
          const schema = media.schema.oneOf ? media.schema.oneOf[1] : media.schema;
          const codes: string[] = schema.allOf[1].properties.error.properties.code.enum;
          const where = `${method.toUpperCase()} ${path} ${status}`;
          expect(codes.length, where).toBeGreaterThan(0);
          for (const c of codes) {
            expect(ERROR_CODES, where).toContain(c);
            expect(HTTP_STATUS[c as keyof typeof HTTP_STATUS], `${where} ${c}`).toBe(Number(status));
            expect(res.description, where).toContain(`\`${c}\``);
            const ex = media.examples[c];
            expect(ex?.value.error.code, `${where}: example of ${c}`).toBe(c);
            expect(containsPanLikeNumber(JSON.stringify(ex.value)), `${where} ${c}`).toBe(false);
            codesSeen.add(c);
          }
          const errorExamples = Object.values(media.examples as Record<string, any>).filter((e) => e.value.error);
          expect(errorExamples.map((e) => e.value.error.code).sort(), where).toEqual([...codes].sort());
          responses++;
        }
      }
    }
    expect(responses).toBeGreaterThan(100);
    // Not all BAD_REQUEST (the issue): the examples cover most of the table.
    expect(codesSeen.size).toBeGreaterThan(ERROR_CODES.length - 3);
  });

  it('real error answers match the documented error schema of their operation, details included', async () => {
    const tx = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', tx)).status).toBe(201);
    const calls: Array<[Parameters<TestPaylog['call']>, string, string]> = [
      [['admin', 'PUT', '/v1/admin/processors/acme/destinations/payments', { url: 'http://api.acme.example/', paths: ['/v1/payments'] }], '/v1/admin/processors/{name}/destinations/{destination}', 'put'],
      [['checkout', 'POST', `/v1/transactions/${tx.transactionId}/forward`, { destination: 'payments', method: 'POST', path: '/v1/payments', purpose: 'authorize' }], '/v1/transactions/{transactionId}/forward', 'post'],
      [['checkout', 'POST', `/v1/transactions/${tx.transactionId}/forward`, { destination: 'payments', method: 'POST', path: '/v1/../x', purpose: 'authorize' }, { headers: { 'idempotency-key': 'k-1' } }], '/v1/transactions/{transactionId}/forward', 'post'],
      [['processor-acme', 'POST', `/v1/transactions/${tx.transactionId}/release`, { purpose: 'authorize', reference: '4111 1111 1111 1111' }], '/v1/transactions/{transactionId}/release', 'post'],
      [['checkout', 'POST', '/v1/transactions', { ...cardTransaction(), amount: { value: -1, currency: 'USD' } }], '/v1/transactions', 'post'],
      [['checkout', 'POST', '/v1/transactions', { ...cardTransaction(), metadata: { cvv: '123' } }], '/v1/transactions', 'post'],
      [['auditor', 'GET', '/v1/log/entries?start=5&end=1'], '/v1/log/entries', 'get'],
    ];
    for (const [args, path, method] of calls) {
      const r = await t.call(...args);
      expect(r.status, `${method} ${path}: ${r.text}`).toBeGreaterThanOrEqual(400);
      expect(check(['paths', path, method, 'responses', String(r.status), 'content', 'application/json', 'schema'], r.json), `${method} ${path} ${r.text}`).toEqual([]);
    }
  });

  it('the leaves in the examples are real leaf-format-v3 leaves of the transactions they belong to, without card data', () => {
    const entries = doc.paths['/v1/log/entries'].get.responses['200'].content['application/json'].examples.example.value.entries;
    const ids = entries.map((e: { leaf: string }) => {
      const bytes = Buffer.from(e.leaf, 'base64');
      expect(containsPanLikeNumber(bytes.toString('latin1'))).toBe(false);
      const leaf = decodeLeaf(bytes);
      expect(leaf.v).toBe(3);
      return leafTransactionId(leaf);
    });
    expect(ids).toEqual(['ord-2026-004817', 'ord-2026-004818', 'ord-2026-004819']);
    const view = doc.paths['/v1/transactions/{transactionId}'].get.responses['200'].content['application/json'].examples.processor.value;
    expect(leafTransactionId(decodeLeaf(Buffer.from(view.leaf, 'base64')))).toBe(view.transactionId);
  });

  it('tags come in the order a user meets them, each described, and every operation has one of them', () => {
    const names = doc.tags.map((tag: any) => tag.name);
    expect(names).toEqual(TAGS.map((tag) => tag.name));
    expect(names[0]).toBe('transactions');
    expect(names.indexOf('release')).toBeLessThan(names.indexOf('forward'));
    expect(names.indexOf('forward')).toBeLessThan(names.indexOf('log'));
    expect(names.indexOf('log')).toBeLessThan(names.indexOf('admin'));
    expect(names.at(-1)).toBe('operations');
    for (const tag of doc.tags) expect(tag.description, tag.name).toMatch(/\w/);
    for (const ops of Object.values(doc.paths as Record<string, Record<string, any>>)) {
      for (const op of Object.values(ops)) expect(names, op.operationId).toContain(op.tags[0]);
    }
  });

  it('says that "Try it out" needs a client certificate in the browser, and /readyz its real cache time', () => {
    expect(doc.info.description).toMatch(/Try it out/);
    expect(doc.info.description).toMatch(/client certificate/);
    expect(doc.info.description).toMatch(/401 CLIENT_CERTIFICATE_REQUIRED/);
    expect(doc.paths['/readyz'].get.summary).toContain(`cached ${READINESS_CACHE_MS / 1000} s`);
    expect(READINESS_CACHE_MS).toBe(500);
  });
});
