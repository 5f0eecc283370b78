/**
 * What an operator sees: metric names and the new metrics, request log lines (route pattern,
 * status, request id; never the URL), and start-up errors that name setting, key and permission.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cardTransaction, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { startLocalKms, type LocalKmsEndpoint } from '../src/kms/local/server.js';
import { createKmsClient, PaylogKms } from '../src/kms/client.js';
import { describeKmsStartupFailure, KMS_PERMISSIONS } from '../src/kms/startup.js';
import { PaylogError } from '../src/errors.js';

let t: TestPaylog;
beforeAll(async () => {
  t = await startTestPaylog();
});
afterAll(async () => {
  await t?.stop();
});

describe('metrics', () => {
  it('process metrics carry the paylog_ prefix once; KMS latency and checkpoint age are exported', async () => {
    expect((await t.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
    await t.paylog.checkpoints.publish();
    const text = (await t.call(null, 'GET', '/metrics')).text;
    expect(text).not.toMatch(/paylog_process_process_/);
    expect(text).toMatch(/^paylog_process_cpu_seconds_total /m);
    expect(text).toMatch(/^paylog_nodejs_heap_size_used_bytes /m);
    expect(text).toMatch(/^paylog_kms_request_duration_seconds_count\{operation="GenerateDataKey"\} [1-9]/m);
    expect(text).toMatch(/^paylog_kms_request_duration_seconds_bucket\{le="\+Inf",operation="GenerateDataKey"\} [1-9]/m);
    const age = Number(/^paylog_checkpoint_age_seconds (\S+)$/m.exec(text)?.[1]);
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(3600);
    expect(Number(/^paylog_checkpoint_size (\S+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
  });
});

describe('request log lines', () => {
  it('name method, route pattern, status and the request id sent back; never the URL', async () => {
    const marker = 'ord-LOGMARK-5150';
    const before = t.logLines.length;
    const r = await t.call('checkout', 'GET', `/v1/transactions/${marker}?x=${marker}`);
    expect(r.status).toBe(404);
    const id = r.headers['x-request-id'];
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    await new Promise((res) => setTimeout(res, 50));
    const lines = t.logLines.slice(before).map((l) => JSON.parse(l));
    const mine = lines.filter((l) => l.reqId === id);
    expect(mine.length).toBeGreaterThanOrEqual(2);
    const done = mine.find((l) => l.msg === 'request completed');
    expect(done).toMatchObject({ method: 'GET', route: '/v1/transactions/:transactionId', statusCode: 404 });
    expect(mine.find((l) => l.msg === 'incoming request')).toMatchObject({ method: 'GET', route: '/v1/transactions/:transactionId' });
    expect(t.logLines.slice(before).join('\n')).not.toContain(marker);
  });
});

describe('start-up KMS errors', () => {
  let kmsEndpoint: LocalKmsEndpoint;
  let dir: string;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'paylog-kms-startup-'));
    kmsEndpoint = await startLocalKms({ keyStoreDir: dir });
    // The local endpoint does not check SigV4; any static credentials let the SDK sign.
    process.env.AWS_ACCESS_KEY_ID = 'PAYLOGTESTONLY';
    process.env.AWS_SECRET_ACCESS_KEY = 'paylog-test-only';
  });
  afterAll(async () => {
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    else process.env.AWS_ACCESS_KEY_ID = saved.id;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    else process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    await kmsEndpoint?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a missing data key names the setting, the key, DescribeKey and the default region', async () => {
    const start = startTestPaylog({ env: { AWS_ENDPOINT_URL_KMS: kmsEndpoint.url, PAYLOG_KMS_DATA_KEY_ID: 'alias/no-such-key' } });
    await expect(start).rejects.toThrow(
      /^PAYLOG_KMS_DATA_KEY_ID=alias\/no-such-key: KMS DescribeKey failed with NotFoundException \(region us-east-1, endpoint .*\)\. No such key or alias in this region: check PAYLOG_KMS_DATA_KEY_ID and AWS_REGION\.$/,
    );
  });

  it('a key of the wrong kind says what the setting must name', async () => {
    const kms = new PaylogKms(createKmsClient({ endpoint: kmsEndpoint.url, region: 'us-east-1' }));
    const signing = await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
    await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
    await expect(startTestPaylog({ env: { AWS_ENDPOINT_URL_KMS: kmsEndpoint.url, PAYLOG_KMS_DATA_KEY_ID: signing } })).rejects.toThrow(
      `PAYLOG_KMS_DATA_KEY_ID=${signing}: the key is ECC_NIST_EDWARDS25519 / SIGN_VERIFY; a data key must be SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT.`,
    );
    await expect(
      startTestPaylog({ env: { AWS_ENDPOINT_URL_KMS: kmsEndpoint.url, PAYLOG_KMS_SIGNING_KEY_ID: 'alias/paylog-data' } }),
    ).rejects.toThrow(/^PAYLOG_KMS_SIGNING_KEY_ID=alias\/paylog-data: the key is SYMMETRIC_DEFAULT \/ ENCRYPT_DECRYPT; a signing key must be ECC_NIST_EDWARDS25519/);
  });

  it('the IAM policy in docs/operations.md allows exactly the KMS operations the service calls', async () => {
    const kms = new PaylogKms(createKmsClient({ endpoint: kmsEndpoint.url, region: 'us-east-1' }));
    await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
    await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
    const aws = await startTestPaylog({ env: { AWS_ENDPOINT_URL_KMS: kmsEndpoint.url } });
    try {
      const tx = cardTransaction();
      expect((await aws.call('checkout', 'POST', '/v1/transactions', tx)).status).toBe(201);
      expect((await aws.call('processor-acme', 'POST', `/v1/transactions/${tx.transactionId}/release`, { purpose: 'capture' })).status).toBe(200);
      await aws.paylog.checkpoints.publish();
      expect((await aws.call(null, 'GET', '/readyz')).status).toBe(200);
      const text = (await aws.call(null, 'GET', '/metrics')).text;
      const called = new Set([...text.matchAll(/^paylog_kms_request_duration_seconds_count\{operation="(\w+)"\} [1-9]/gm)].map((m) => `kms:${m[1]}`));
      const policy = jsonBlocks()[0] as { Statement: Array<{ Effect: string; Action: string[] }> };
      const allowed = new Set(policy.Statement.filter((st) => st.Effect === 'Allow').flatMap((st) => st.Action));
      expect([...allowed].sort()).toEqual([...called].sort());
      // CreateAlias (the first epoch of a period names its new period key) is metered and in the
      // IAM policy; it is a permission on the alias, not on the data key, so KMS_PERMISSIONS (what
      // start-up quotes for the data and signing keys) does not list it.
      expect(called.has('kms:CreateAlias')).toBe(true);
      expect([...new Set([...KMS_PERMISSIONS.data, ...KMS_PERMISSIONS.signing, 'kms:CreateAlias'])].sort()).toEqual([...called].sort());
    } finally {
      await aws.stop();
    }
  });

  it('the key lifecycle policy in docs/operations.md allows exactly what rotation, rewrap and retention call beyond the first policy', { timeout: 180_000 }, async () => {
    const kms = new PaylogKms(createKmsClient({ endpoint: kmsEndpoint.url, region: 'us-east-1' }));
    await kms.ensureKey('paylog-checkpoint', 'ECC_NIST_EDWARDS25519');
    await kms.ensureKey('paylog-data', 'SYMMETRIC_DEFAULT');
    // Real-KMS mode (AWS_ENDPOINT_URL_KMS), hour epochs, a 2-hour retention; the clock moves.
    let now = new Date(Date.UTC(2026, 0, 1, 10, 30));
    const aws = await startTestPaylog({ env: { AWS_ENDPOINT_URL_KMS: kmsEndpoint.url, PAYLOG_KEY_EPOCH: 'hour', PAYLOG_RETENTION: 'PT2H' }, clock: () => now });
    try {
      const opsCalled = async () => {
        const text = (await aws.call(null, 'GET', '/metrics')).text;
        return new Set([...text.matchAll(/^paylog_kms_request_duration_seconds_count\{operation="(\w+)"\} [1-9]/gm)].map((m) => m[1]!));
      };
      expect((await aws.call('checkout', 'POST', '/v1/transactions', cardTransaction())).status).toBe(201);
      await aws.paylog.checkpoints.publish();
      const hotPath = await opsCalled();
      expect((await aws.call('admin', 'POST', '/v1/admin/keys/rotate', { reason: 'ops test' })).status).toBe(200);
      for (let i = 0; i < 10; i++) {
        const r = await aws.call('admin', 'POST', '/v1/admin/keys/rewrap', { periodKeys: 'new' });
        expect(r.status, r.text).toBe(200);
        if (r.json.done) break;
      }
      now = new Date(Date.UTC(2026, 0, 1, 13, 5)); // the 10:00–11:00 period has expired
      const run = await aws.call('admin', 'POST', '/v1/admin/retention/apply', {});
      expect(run.status, run.text).toBe(200);
      expect(run.json.periods.length).toBeGreaterThan(0);
      const lifecycle = [...(await opsCalled())].filter((op) => !hotPath.has(op)).sort();
      // IAM actions of the lifecycle policy, as operations (kms:ReEncryptFrom/To authorise ReEncrypt).
      const policy = jsonBlocks()[3] as { Statement: Array<{ Effect: string; Action: string[] }> };
      const allowed = new Set(policy.Statement.filter((st) => st.Effect === 'Allow').flatMap((st) => st.Action).map((a) => a.replace(/^kms:/, '').replace(/^ReEncrypt(From|To)$/, 'ReEncrypt')));
      expect(lifecycle).toEqual([...allowed].sort());
    } finally {
      await aws.stop();
    }
  });

  it('access denied names the permissions the key needs', () => {
    const denied = new PaylogError('KMS_UNAVAILABLE', 'KMS DescribeKey failed: AccessDeniedException', {
      kmsOperation: 'DescribeKey',
      kmsError: 'AccessDeniedException',
      httpStatus: 400,
    });
    const m = describeKmsStartupFailure(denied, { setting: 'PAYLOG_KMS_SIGNING_KEY_ID', keyId: 'alias/x', kind: 'signing' }, 'DescribeKey', { region: 'eu-west-1' });
    expect(m).toBe(
      `PAYLOG_KMS_SIGNING_KEY_ID=alias/x: KMS DescribeKey failed with AccessDeniedException (region eu-west-1). The service's IAM principal needs ${KMS_PERMISSIONS.signing.join(', ')} on this key, allowed by both its IAM policy and the key policy (docs/operations.md, "KMS permissions").`,
    );
    const sign = describeKmsStartupFailure(
      new PaylogError('KMS_UNAVAILABLE', 'x', { kmsOperation: 'GenerateDataKey', kmsError: 'AccessDeniedException' }),
      { setting: 'PAYLOG_KMS_DATA_KEY_ID', keyId: 'k', kind: 'data' },
      'GenerateDataKey',
      { region: 'us-east-1' },
    );
    expect(sign).toMatch(/needs kms:GenerateDataKey on this key/);
  });
});

const guide = readFileSync(new URL('../docs/operations.md', import.meta.url), 'utf8');
function jsonBlocks(): unknown[] {
  return [...guide.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]!));
}

describe('operator guide and dashboard', () => {
  it('its JSON blocks parse; the key policies allow the same actions as the IAM policy', () => {
    const [iam, dataKey, signingKey] = jsonBlocks() as Array<{ Statement: Array<{ Action: string[] }> }>;
    const actions = (p: { Statement: Array<{ Action: string[] }> }) => new Set(p.Statement.flatMap((s) => s.Action));
    expect([...actions(dataKey!)].sort()).toEqual([...KMS_PERMISSIONS.data].sort());
    expect([...actions(signingKey!)].sort()).toEqual([...KMS_PERMISSIONS.signing].sort());
    expect(actions(iam!).size).toBe(9);
  });

  it('documents every setting and every paylog metric; the dashboard charts every metric', async () => {
    const config = readFileSync(new URL('../src/config.ts', import.meta.url), 'utf8');
    const settings = [...config.matchAll(/^\s+((?:PAYLOG|AWS)_[A-Z0-9_]+|DATABASE_URL):/gm)].map((m) => m[1]!);
    expect(settings.length).toBeGreaterThan(15);
    const settingsSection = guide.slice(guide.indexOf('## Settings'), guide.indexOf('## Logs'));
    for (const s of settings) expect(settingsSection, s).toContain(`\`${s}\``);
    const dashboard = readFileSync(new URL('../docs/grafana-dashboard.json', import.meta.url), 'utf8');
    const exprs = (JSON.parse(dashboard) as { panels: Array<{ targets: Array<{ expr: string }> }> }).panels.flatMap((p) => p.targets.map((x) => x.expr)).join('\n');
    const own = (await t.paylog.metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => !/^paylog_(process|nodejs)_/.test(n));
    expect(own.length).toBeGreaterThanOrEqual(9);
    const metricsSection = guide.slice(guide.indexOf('## Metrics'), guide.indexOf('## Backup'));
    for (const name of own) {
      expect(metricsSection, name).toContain(`\`${name}\``);
      expect(exprs, name).toContain(name);
    }
  });
});
