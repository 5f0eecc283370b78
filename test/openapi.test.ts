/**
 * The OpenAPI document is generated from the registered routes: it is a valid OpenAPI 3.1
 * document, names every route Fastify registered, and every answer a real service gives
 * (status, error code, body) is one the document describes. /docs loads only paylog's assets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Validator } from '@seriousme/openapi-schema-validator';
import { cardTransaction, startTestPaylog, type HttpResult, type PrincipalName, type TestPaylog } from './helpers/paylog.js';
import { openApiPath } from '../src/api/openapi.js';
import type { RouteSpec } from '../src/api/route-spec.js';
import { DOCS_CSP } from '../src/api/docs.js';

let t: TestPaylog;
let doc: any;
beforeAll(async () => {
  t = await startTestPaylog();
  doc = (await t.call(null, 'GET', '/openapi.json')).json;
});
afterAll(async () => {
  await t?.stop();
});

/** Fastify's routes, without the HEAD twins it adds for every GET. */
function registered() {
  return t.paylog.server.paylogRoutes.filter((r) => r.method !== 'HEAD');
}

function specFor(method: string, path: string): RouteSpec {
  const pathOnly = path.split('?')[0]!;
  const r = registered().find((x) => x.method === method && t.paylog.server.hasRoute({ method: x.method as 'GET', url: x.url }) && matches(x.url, pathOnly));
  if (!r?.spec) throw new Error(`no spec for ${method} ${path}`);
  return r.spec;
}
function matches(pattern: string, path: string): boolean {
  const re = new RegExp(`^${pattern.replace(/:[A-Za-z0-9_]+/g, '[^/]+')}$`);
  return re.test(path);
}

/** Checks one real answer against the document and the route's zod schema. */
function expectDocumented(method: string, path: string, r: HttpResult): void {
  const spec = specFor(method, path);
  const op = doc.paths[openApiPath(spec.url)]?.[method.toLowerCase()];
  expect(op, `${method} ${path}`).toBeDefined();
  const documented = op.responses[String(r.status)];
  expect(documented, `${method} ${path} answered ${r.status}, not in the document`).toBeDefined();
  if (r.status >= 400) {
    const codes = documented.content['application/json'].schema.allOf[1].properties.error.properties.code.enum;
    expect(codes, `${method} ${path} ${r.status}`).toContain(r.json.error.code);
    return;
  }
  const res = spec.responses[r.status]!;
  const body = res.contentType && !res.contentType.includes('json') ? r.text : r.json;
  const parsed = res.schema!.safeParse(body);
  expect(parsed.success, `${method} ${path}: ${JSON.stringify(parsed.error?.issues)}`).toBe(true);
}

describe('OpenAPI document', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const v = new Validator();
    const res = await v.validate(structuredClone(doc));
    expect(res.errors ?? []).toEqual([]);
    expect(res.valid).toBe(true);
    expect(v.version).toBe('3.1');
  });

  it('documents every route Fastify registered, and nothing else', () => {
    const routes = registered();
    expect(routes.length).toBeGreaterThan(15);
    for (const r of routes) {
      expect(r.spec, `${r.method} ${r.url} has no route spec (register it with defineRoute)`).toBeDefined();
      expect(doc.paths[openApiPath(r.url)]?.[r.method.toLowerCase()], `${r.method} ${r.url}`).toBeDefined();
    }
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops as object).map((m) => `${m.toUpperCase()} ${p}`));
    expect(documented.sort()).toEqual([...new Set(routes.map((r) => `${r.method} ${openApiPath(r.url)}`))].sort());
  });

  it('has parameters, request and response bodies, and the error responses the issue found missing', () => {
    const entries = doc.paths['/v1/log/entries'].get;
    expect(entries.parameters.map((p: any) => [p.name, p.in, p.required])).toEqual([
      ['start', 'query', true],
      ['end', 'query', true],
    ]);
    const submit = doc.paths['/v1/transactions'].post;
    expect(Object.keys(submit.responses).sort()).toEqual(['200', '201', '400', '401', '403', '409', '413', '415', '422', '429', '500', '503']);
    // Issue 17: the probe limit answers 429 with Retry-After; the served card has no BIN.
    expect(submit.responses['429'].headers['Retry-After']).toBeDefined();
    expect(submit.responses['201'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/TransactionReceipt' });
    expect(submit.requestBody.content['application/json'].schema.oneOf).toEqual([
      { $ref: '#/components/schemas/TransactionRequest' },
      { $ref: '#/components/schemas/EncryptedTransactionRequest' },
    ]);
    const [plain, encrypted] = [doc.components.schemas.TransactionRequest, doc.components.schemas.EncryptedTransactionRequest];
    expect(encrypted.properties.paymentMethod).toBeDefined(); // client-side encrypted variant
    const value = plain.properties.amount.properties.value;
    expect(value.type).toBe('integer');
    expect(value.description).toMatch(/positive integer number of minor units/);
    expect(plain.properties.paymentMethod.oneOf[0].properties.expiryMonth.description).toMatch(/1 to 12/);
    const release = doc.paths['/v1/transactions/{transactionId}/release'].post;
    expect(release.responses['422']).toBeDefined();
    expect(release.responses['429'].headers['Retry-After']).toBeDefined();
    expect(release.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/ReleaseRequest' });
    expect(doc.paths['/v1/transactions/{transactionId}'].get.parameters[0]).toMatchObject({ name: 'transactionId', in: 'path', required: true });
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(doc.components.schemas.Error.properties.error.required).toEqual(['code', 'message']);
  });

  it('describes every answer a real service gives, success bodies checked against their schemas', async () => {
    const calls: Array<[PrincipalName | null, string, string, unknown?, { raw?: string }?]> = [];
    const call = async (who: PrincipalName | null, method: string, path: string, body?: unknown, o?: { raw?: string }) => {
      calls.push([who, method, path, body, o]);
      const r = await t.call(who, method, path, body, o);
      expectDocumented(method, path, r);
      return r;
    };
    const tx = cardTransaction();
    expect((await call('checkout', 'POST', '/v1/transactions', tx)).status).toBe(201);
    expect((await call('checkout', 'POST', '/v1/transactions', tx)).status).toBe(200);
    expect((await call('checkout', 'POST', '/v1/transactions', { ...tx, metadata: { other: 'x' } })).status).toBe(409);
    expect((await call('checkout', 'POST', '/v1/transactions', { ...cardTransaction(), amount: { value: 1.5, currency: 'USD' } })).status).toBe(422);
    expect((await call('checkout', 'POST', '/v1/transactions', undefined, { raw: '{' })).status).toBe(400);
    expect((await call(null, 'POST', '/v1/transactions', tx)).status).toBe(401);
    expect((await call('auditor', 'POST', '/v1/transactions', cardTransaction())).status).toBe(403);
    expect((await call('checkout', 'GET', `/v1/transactions/${tx.transactionId}`)).status).toBe(200);
    expect((await call('processor-globex', 'GET', `/v1/transactions/${tx.transactionId}`)).status).toBe(404);
    const rel = await call('processor-acme', 'POST', `/v1/transactions/${tx.transactionId}/release`, { purpose: 'authorize', reference: 'auth-1' });
    expect(rel.status).toBe(200);
    expect((await call('processor-acme', 'POST', `/v1/transactions/${tx.transactionId}/release`, { purpose: 'steal' })).status).toBe(422);
    expect((await call('auditor', 'GET', `/v1/transactions/${tx.transactionId}/accesses?limit=1`)).status).toBe(200);
    expect((await call('auditor', 'GET', `/v1/transactions/${tx.transactionId}/accesses?limit=x`)).status).toBe(422);
    expect((await call('checkout', 'GET', '/v1/log/key')).status).toBe(200);
    await t.paylog.checkpoints.publish();
    expect((await call('checkout', 'GET', '/v1/log/checkpoint')).status).toBe(200);
    expect((await call('auditor', 'GET', '/v1/log/entries?start=0&end=10')).status).toBe(200);
    expect((await call('checkout', 'GET', '/v1/log/entries?start=0&end=10')).status).toBe(403);
    expect((await call('auditor', 'GET', `/v1/log/proof/inclusion?transactionId=${tx.transactionId}`)).status).toBe(200);
    expect((await call('auditor', 'GET', '/v1/log/proof/consistency?from=1&to=2')).status).toBe(200);
    expect((await call('admin', 'GET', '/v1/admin/processors')).status).toBe(200);
    expect((await call('admin', 'PUT', '/v1/admin/processors/initech', { status: 'active' })).status).toBe(200);
    expect((await call('admin', 'PUT', '/v1/admin/processors/initech', { status: 'gone' })).status).toBe(422);
    expect((await call('admin', 'POST', '/v1/admin/revocations', { fingerprint: `sha256:${'ab'.repeat(32)}` })).status).toBe(201);
    for (const p of ['/healthz', '/readyz', '/metrics', '/openapi.json', '/docs', '/docs/init.js', '/docs/swagger-ui.css']) {
      expect((await call(null, 'GET', p)).status, p).toBe(200);
    }
    expect((await call(null, 'GET', '/docs/nope.js')).status).toBe(404);
    expect(calls.length).toBeGreaterThan(25);
  });
});

describe('/docs', () => {
  it('references only assets paylog serves, and forbids the browser anything else', async () => {
    const page = await t.call(null, 'GET', '/docs');
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toBe(DOCS_CSP);
    expect(DOCS_CSP).toMatch(/default-src 'none'/);
    expect(DOCS_CSP).not.toMatch(/https?:/);
    const refs = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThanOrEqual(4);
    for (const ref of refs) {
      expect(ref, 'a paylog path, not another host').toMatch(/^\/docs\/[A-Za-z0-9._-]+$/);
      const a = await t.call(null, 'GET', ref);
      expect(a.status, ref).toBe(200);
      expect(a.text.length, ref).toBeGreaterThan(10);
    }
    const init = await t.call(null, 'GET', '/docs/init.js');
    expect(init.text).toContain("url: '/openapi.json'");
    expect(init.text).toContain('validatorUrl: null');
    expect(init.text).not.toMatch(/https?:\/\//);
  });
});
