/**
 * A submission's certificate revocation is decided where its entry commits (the batch reads
 * `revoked_certificates` under the append lock), not by a query per request — and every other
 * answer a revoked certificate could get from POST /v1/transactions (a replay found before the
 * append, a validation error, a body that does not parse, a wrong role) is still
 * 401 CERTIFICATE_REVOKED. Both key modes: hierarchical decides most replays in the batch;
 * per-transaction mode checks by a query before sealing (sealing costs a KMS call there). Real HTTPS with client certificates, real PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { issuePrincipalCertificate } from '../src/pki/ca.js';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';

describe.each(['hierarchical', 'per-transaction'] as const)('revoked checkout certificate, %s key mode', (mode) => {
  let t: TestPaylog;
  let second: { agent: Agent; serialHex: string; fingerprint: string };
  const post = async (agent: Agent, body: string) => {
    const r = await request(`${t.paylog.url}/v1/transactions`, { method: 'POST', dispatcher: agent, headers: { 'content-type': 'application/json' }, body });
    const text = await r.body.text();
    return { status: r.statusCode, text, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code };
  };
  const treeSize = async () => Number((await t.paylog.database.pool.query('SELECT coalesce(max(size), 0) AS n FROM tree_heads')).rows[0].n);

  beforeAll(async () => {
    t = await startTestPaylog({ env: { PAYLOG_KEY_MODE: mode } });
    const pki = t.paylog.devPki!;
    // A second checkout certificate from the dev CA: revoked by serial below, while the dev
    // `checkout` certificate is revoked by fingerprint.
    const issued = issuePrincipalCertificate({ certPem: pki.caCertPem, keyPem: readFileSync(pki.caKeyPath, 'utf8') }, { role: 'checkout', name: 'checkout-two' });
    second = {
      agent: new Agent({ connect: { ca: pki.caCertPem, cert: issued.certPem, key: issued.keyPem, timeout: 120_000 } }),
      serialHex: issued.serialHex,
      fingerprint: issued.fingerprint,
    };
  }, 120_000);
  afterAll(async () => {
    await second?.agent.destroy();
    await t?.stop();
  });

  it('before: both certificates submit; after revocation every answer to them is 401 CERTIFICATE_REVOKED and nothing is appended', async () => {
    const accepted = cardTransaction();
    expect((await t.call('checkout', 'POST', '/v1/transactions', accepted)).status).toBe(201);
    const acceptedTwo = cardTransaction();
    expect((await post(second.agent, JSON.stringify(acceptedTwo))).status).toBe(201);
    // A warm epoch hint (hierarchical): the next submissions go straight to the append.
    expect((await t.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);

    const fp = t.paylog.devPki!.principals.checkout!.fingerprint;
    expect((await t.call('admin', 'POST', '/v1/admin/revocations', { fingerprint: fp, reason: 'key compromise' })).status).toBe(201);
    expect((await t.call('admin', 'POST', '/v1/admin/revocations', { serial: second.serialHex, reason: 'retired shop' })).status).toBe(201);
    const size0 = await treeSize();
    const dataKeyCalls = async () => {
      const text = (await t.call(null, 'GET', '/metrics')).text;
      return [...text.matchAll(/^paylog_kms_requests_total\{[^}]*operation="GenerateDataKey"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    };
    const kms0 = await dataKeyCalls();

    const answers = {
      fresh: await t.call('checkout', 'POST', '/v1/transactions', cardTransaction()),
      replay: await t.call('checkout', 'POST', '/v1/transactions', accepted),
      invalid: await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ paymentMethod: { type: 'card', pan: '4111111111111112', expiryMonth: 12, expiryYear: 2099 } })),
      sad: await t.call('checkout', 'POST', '/v1/transactions', cardTransaction({ cvv: '123' })),
      unparsable: await t.call('checkout', 'POST', '/v1/transactions', undefined, { raw: '{"transactionId": ', headers: { 'content-type': 'application/json' } }),
    };
    for (const [what, r] of Object.entries(answers)) {
      expect([what, r.status, r.json?.error?.code]).toEqual([what, 401, 'CERTIFICATE_REVOKED']);
      expect(r.text).not.toContain('4111111111111');
    }
    const bySerial = {
      fresh: await post(second.agent, JSON.stringify(cardTransaction())),
      replay: await post(second.agent, JSON.stringify(acceptedTwo)),
    };
    for (const [what, r] of Object.entries(bySerial)) expect([what, r.status, r.code]).toEqual([what, 401, 'CERTIFICATE_REVOKED']);
    expect(await treeSize()).toBe(size0);
    // Per-transaction mode checks before sealing: a revoked certificate spends no KMS call.
    expect(await dataKeyCalls()).toBe(kms0);
    // The refusals (including those decided in the error handler) log codes, never card data.
    const logs = t.logLines.join('\n');
    expect(logs).toContain('CERTIFICATE_REVOKED');
    expect(logs).not.toContain('4111111111111');
    expect(logs).not.toContain('Jane Q Customer');
  });

  it('a certificate that is not revoked keeps its own answers (wrong role 403, bad body 400)', async () => {
    const wrongRole = await t.call('processor-acme', 'POST', '/v1/transactions', cardTransaction());
    expect([wrongRole.status, wrongRole.json.error.code]).toEqual([403, 'FORBIDDEN']);
    const bad = await t.call('processor-acme', 'POST', '/v1/transactions', undefined, { raw: '{', headers: { 'content-type': 'application/json' } });
    expect(bad.status).toBe(400);
    // Other routes still check at authentication.
    const read = await t.call('checkout', 'GET', '/v1/transactions/ord-anything');
    expect([read.status, read.json.error.code]).toEqual([401, 'CERTIFICATE_REVOKED']);
  });
});
