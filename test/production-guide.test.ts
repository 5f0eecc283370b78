/**
 * docs/production-aws.md, rehearsed without AWS: every block marked `<!-- exercised: NAME -->`
 * runs here as written, against stand-ins —
 * - RDS: Debian's PostgreSQL 15 (/usr/lib/postgresql/15, as test/external-postgres15.test.ts),
 *   TLS on with a server certificate from a test CA (the guide's rehearsal block), non-TLS
 *   connections refused in pg_hba.conf (what `rds.force_ssl=1` does), and a NON-superuser
 *   "master" role with CREATEROLE and CREATEDB (what the RDS master user is);
 * - AWS KMS: the dev-only KMS-compatible endpoint, reached by the real AWS CLI and, from the
 *   service, by the real AWS SDK through `AWS_ENDPOINT_URL_KMS` (so the service takes its AWS
 *   path: no local KMS, no dev PKI);
 * - the VPC: loopback (`PAYLOG_HOST=0.0.0.0`, reached on 127.0.0.1 under the server
 *   certificate's DNS name).
 * The only rewrites are the RDS endpoint, the master user's name, the port and the directories
 * `/etc/paylog` and `/var/lib/paylog` (moved into a temporary directory).
 *
 * Then the service is started (`node --import tsx src/main.ts`, a child process) with the
 * guide's settings: it migrates as the owner over verify-full TLS, serves a submission on the
 * runtime login, and every connection it holds is TLS. verify-full is shown to check the host
 * name and the CA, and a connection without TLS is refused. Then the role blocks again on the
 * embedded PostgreSQL 17 (from 16 on, CREATEROLE works differently).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.js';
import { startLocalKms, type LocalKmsEndpoint } from '../src/kms/local/server.js';
import { applyMigrations, ensureAdminLogin, ensureKeysLogin } from '../src/db/connection.js';
import { cardTransaction } from './helpers/paylog.js';
import { query } from './helpers/db.js';

const REPO = resolve(new URL('..', import.meta.url).pathname);
const GUIDE_PATH = join(REPO, 'docs', 'production-aws.md');
const PG15 = process.env.PAYLOG_TEST_PG15_DIR ?? '/usr/lib/postgresql/15';
const INSTALL_HINT =
  `PostgreSQL 15 server binaries not found at ${PG15}/bin/postgres. Install them: ` +
  '`DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15` (.ci/run does this), or set PAYLOG_TEST_PG15_DIR.';
const RDS_ENDPOINT = 'paylog-db.abc123xyz.us-east-1.rds.amazonaws.com:5432';
const SERVER_NAME = 'paylog.internal.example.com';
const READY_TIMEOUT_MS = 120_000;

/** The guide's blocks marked `<!-- exercised: NAME -->` (the next fenced block), by name. */
function exercisedBlocks(markdown: string): Map<string, { lang: string; code: string }> {
  const out = new Map<string, { lang: string; code: string }>();
  const re = /<!-- exercised: ([a-z0-9-]+) -->\s*\n```(\w+)\n([\s\S]*?)\n```/g;
  for (const m of markdown.matchAll(re)) {
    if (out.has(m[1]!)) throw new Error(`two blocks named ${m[1]}`);
    out.set(m[1]!, { lang: m[2]!, code: m[3]! });
  }
  return out;
}

let dir: string;
let server: EmbeddedServer | undefined;
let pg17: EmbeddedServer | undefined;
let kms: LocalKmsEndpoint | undefined;
let service: ChildProcess | undefined;
let serviceExit: Promise<number | null> | undefined;
let serviceStderr = '';
let pgPort: number;
let port: number;
const secrets = { MASTER_PASSWORD: randomBytes(16).toString('hex'), OWNER_PASSWORD: randomBytes(16).toString('hex'), RUNTIME_PASSWORD: randomBytes(16).toString('hex') };
const blocks = exercisedBlocks(readFileSync(GUIDE_PATH, 'utf8'));

const etc = () => join(dir, 'etc', 'paylog');

/** The guide's text with the stand-ins' names, ports and directories. */
function rewrite(code: string): string {
  return code
    .replaceAll(RDS_ENDPOINT, `localhost:${pgPort}`)
    .replaceAll('postgres://postgres@', 'postgres://rds_master@')
    .replaceAll('/etc/paylog', etc())
    .replaceAll('/var/lib/paylog', join(dir, 'var', 'lib', 'paylog'))
    .replaceAll('PAYLOG_PORT=8443', `PAYLOG_PORT=${port}`)
    .replaceAll(`${SERVER_NAME}:8443`, `${SERVER_NAME}:${port}`);
}

function kmsEnv(): NodeJS.ProcessEnv {
  // Stand-in credentials: the local endpoint does not check SigV4 signatures.
  return { AWS_ENDPOINT_URL_KMS: kms!.url, AWS_ACCESS_KEY_ID: 'AKIAEXAMPLE', AWS_SECRET_ACCESS_KEY: 'example', AWS_EC2_METADATA_DISABLED: 'true' };
}

/**
 * Runs a named block with bash (`set -euo pipefail`), from the repository root. Asynchronous: the
 * KMS stand-in answers from this process, so the event loop must keep running meanwhile.
 */
function runBlock(name: string, extraEnv: NodeJS.ProcessEnv = {}, epilogue = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  const b = blocks.get(name);
  if (!b) throw new Error(`docs/production-aws.md has no block marked "exercised: ${name}"`);
  // The service's name resolves to loopback; curl fails on any HTTP error status.
  const curl = `curl() { command curl --resolve ${SERVER_NAME}:${port}:127.0.0.1 --fail-with-body "$@"; }`;
  const script = `set -euo pipefail\n${curl}\n${rewrite(b.code)}\n${epilogue}\n`;
  const env: NodeJS.ProcessEnv = { ...process.env, ...secrets, ...kmsEnv(), npm_config_loglevel: 'error', ...extraEnv };
  for (const k of ['DATABASE_URL', 'PAYLOG_APP_DATABASE_URL', 'PAYLOG_DATA_DIR', 'AWS_REGION', 'AWS_PROFILE']) if (!(k in extraEnv)) delete env[k];
  return new Promise((res) => {
    execFile('bash', ['-c', script], { cwd: REPO, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function mustRun(name: string, extraEnv: NodeJS.ProcessEnv = {}, epilogue = ''): Promise<string> {
  const r = await runBlock(name, extraEnv, epilogue);
  expect(r.code, `block "${name}" of docs/production-aws.md failed:\n${rewrite(blocks.get(name)!.code)}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`).toBe(0);
  return r.stdout;
}

/** The environment the guide's settings block exports (sourced in bash, read back with env -0). */
async function settingsEnv(): Promise<Record<string, string>> {
  const out = await mustRun('settings', {}, 'env -0');
  const env: Record<string, string> = {};
  for (const kv of out.split('\0')) {
    const i = kv.indexOf('=');
    if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** The PostgreSQL OS user's uid/gid when running as root (the server runs as `postgres`). */
function postgresOwner(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return { uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()) };
}

/** RDS stand-in: TLS on with the rehearsal certificate, non-TLS refused, a non-superuser master. */
async function makeRdsLike(s: EmbeddedServer, cluster: string): Promise<void> {
  const rehearsal = join(etc(), 'rehearsal');
  copyFileSync(join(rehearsal, 'server.crt'), join(cluster, 'server.crt'));
  copyFileSync(join(rehearsal, 'server.key'), join(cluster, 'server.key'));
  chmodSync(join(cluster, 'server.key'), 0o600);
  const owner = postgresOwner();
  if (owner) for (const f of ['server.crt', 'server.key']) chownSync(join(cluster, f), owner.uid, owner.gid);
  const hba = join(cluster, 'pg_hba.conf');
  writeFileSync(hba, `hostnossl all all all reject\n${readFileSync(hba, 'utf8')}`);
  for (const sql of [
    "ALTER SYSTEM SET ssl = 'on'",
    "ALTER SYSTEM SET ssl_cert_file = 'server.crt'",
    "ALTER SYSTEM SET ssl_key_file = 'server.key'",
    `CREATE ROLE rds_master LOGIN CREATEROLE CREATEDB NOSUPERUSER PASSWORD '${secrets.MASTER_PASSWORD}'`,
    'SELECT pg_reload_conf()',
  ])
    await query(s.adminUrl, sql);
  const tlsAdmin = `${s.adminUrl}?sslmode=no-verify`;
  for (let i = 0; ; i++) {
    const ok = await query(tlsAdmin, 'SHOW ssl').then((r) => r[0].ssl === 'on', () => false);
    if (ok) break;
    if (i > 100) throw new Error('PostgreSQL did not turn TLS on');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** HTTPS to the service on 127.0.0.1 under its certificate's name, with a client certificate. */
function call(method: string, path: string, body?: unknown, who?: string): Promise<{ status: number; text: string }> {
  const issued = join(etc(), 'issued');
  return new Promise((res, rej) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        servername: SERVER_NAME,
        method,
        path,
        ca: readFileSync(join(etc(), 'ca', 'ca.pem')),
        ...(who ? { cert: readFileSync(join(issued, `${who}.pem`)), key: readFileSync(join(issued, `${who}-key.pem`)) } : {}),
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        timeout: 10_000,
      },
      (r) => {
        let text = '';
        r.on('data', (c) => (text += c));
        r.on('end', () => res({ status: r.statusCode ?? 0, text }));
      },
    );
    req.on('error', rej);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** Starts the service (`node --import tsx src/main.ts`) with `env`; resolves once /readyz is 200. */
async function startService(env: NodeJS.ProcessEnv): Promise<void> {
  serviceStderr = '';
  service = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: REPO, env, stdio: ['ignore', 'ignore', 'pipe'] });
  service.stderr!.on('data', (c: Buffer) => (serviceStderr = (serviceStderr + c.toString('utf8')).slice(-16_000)));
  serviceExit = new Promise((r) => service!.once('exit', (code) => r(code)));
  await waitReady();
}

async function waitReady(): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const exited = await Promise.race([serviceExit!, new Promise((r) => setTimeout(() => r('running'), 250))]);
    if (exited !== 'running') throw new Error(`paylog exited (${String(exited)}) before it was ready:\n${serviceStderr.slice(-4000)}`);
    const r = await call('GET', '/readyz').catch(() => undefined);
    if (r?.status === 200) return;
    if (Date.now() > deadline) throw new Error(`paylog not ready within ${READY_TIMEOUT_MS} ms: ${r?.text}\n${serviceStderr.slice(-4000)}`);
  }
}

describe('docs/production-aws.md, rehearsed: RDS-style PostgreSQL 15 over verify-full TLS, KMS keys from the AWS CLI, the production CA', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'paylog-prod-guide-'));
    mkdirSync(etc(), { recursive: true });
    kms = await startLocalKms({ keyStoreDir: join(dir, 'kms') });
  });
  afterAll(async () => {
    if (service && service.exitCode === null) {
      service.kill('SIGTERM');
      await Promise.race([serviceExit, new Promise((r) => setTimeout(r, 30_000))]);
      if (service.exitCode === null) service.kill('SIGKILL');
    }
    await kms?.close();
    await server?.stop();
    await pg17?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('marks the blocks it runs, and the Terraform block is well-formed', () => {
    expect([...blocks.keys()].sort()).toEqual(['alerts', 'ca', 'check-tls', 'client-certs', 'kms-keys', 'rds-owner', 'rds-runtime', 'rehearsal-db-ca', 'rotate-ca', 'rotate-client', 'server-cert', 'settings', 'terraform']);
    // Every metric the alert rules name is one paylog registers (histogram series: _bucket).
    const source = execFileSync('grep', ['-rhoE', "name: '(paylog_[a-z_]+)'", join(REPO, 'src')], { encoding: 'utf8' });
    const defined = new Set([...source.matchAll(/'(paylog_[a-z_]+)'/g)].map((m) => m[1]!));
    const named = new Set([...blocks.get('alerts')!.code.matchAll(/\b(paylog_[a-z_]+)\b/g)].map((m) => m[1]!.replace(/_bucket$/, '')));
    expect(named.size).toBeGreaterThan(8);
    for (const n of named) expect(defined.has(n), `${n} (alerts block) is not a metric paylog registers`).toBe(true);
    const hcl = blocks.get('terraform')!.code + '\n';
    let terraform = true;
    try {
      execFileSync('terraform', ['version'], { stdio: 'ignore' });
    } catch {
      terraform = false;
    }
    if (!terraform) {
      console.warn('terraform not installed: the Terraform block of docs/production-aws.md was not checked');
      return;
    }
    // `terraform fmt -` parses the HCL and prints it formatted; a syntax error exits non-zero.
    const formatted = execFileSync('terraform', ['fmt', '-'], { input: hcl, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
    expect(formatted, 'the Terraform block is not in `terraform fmt` form').toBe(hcl);
  });

  it('the database, the keys, the certificates and the settings as the guide makes them; the service migrates and serves over them', { timeout: 300_000 }, async () => {
    if (!existsSync(join(PG15, 'bin', 'postgres'))) throw new Error(INSTALL_HINT);
    // The RDS stand-in, with the rehearsal block's test CA in place of the RDS CA bundle.
    await mustRun('rehearsal-db-ca');
    server = await startEmbeddedPostgres({ dataDir: join(dir, 'pg15'), ownedRoot: dir, binaries: PG15 });
    pgPort = Number(new URL(server.adminUrl).port);
    await makeRdsLike(server, join(dir, 'pg15', 'cluster'));

    // Owner and runtime login, created by a master user that is not a superuser.
    await mustRun('rds-owner');
    await mustRun('rds-runtime');
    const [owner] = await query(`${server.adminUrl}?sslmode=no-verify`, "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'paylog_owner'");
    expect(owner).toEqual({ rolsuper: false, rolcreaterole: true, rolcreatedb: false });

    // KMS keys from the AWS CLI; the production CA, the server certificate, client certificates.
    const described = await mustRun('kms-keys');
    expect(described.trim()).toBe('ECC_NIST_EDWARDS25519\tSIGN_VERIFY\tEnabled');
    const createdByCli = kms!.requestCounts.get('CreateKey');
    expect(createdByCli).toBe(2);
    await mustRun('ca');
    await mustRun('server-cert');
    await mustRun('client-certs');

    // The service with the guide's settings (plus the KMS stand-in's endpoint and credentials).
    // Its port is picked here, not before the blocks above (~40 s on a loaded machine): a port
    // found free is only reserved once the service listens, and until then any listen(0) on the
    // machine may be given it (the service would then fail to start with EADDRINUSE).
    port = await freePort();
    const settings = await settingsEnv();
    for (const u of [settings.DATABASE_URL, settings.PAYLOG_APP_DATABASE_URL]) expect(u).toMatch(/\?sslmode=verify-full&sslrootcert=\//);
    const env = { ...process.env, ...settings, ...kmsEnv(), PAYLOG_WORKERS: '1', PAYLOG_LOG_LEVEL: 'warn' };
    expect((await mustRun('check-tls', env)).trim()).toBe('t|TLSv1.3');
    await startService(env);

    // An admin registers the processor; checkout submits; the processor reads it back.
    expect((await call('PUT', '/v1/admin/processors/acme', { status: 'active' }, 'ops-admin')).status).toBe(200);
    const tx = cardTransaction();
    const submitted = await call('POST', '/v1/transactions', tx, 'checkout');
    expect(submitted.status, submitted.text).toBe(201);
    copyFileSync(join(etc(), 'acme-side', 'acme-key.pem'), join(etc(), 'issued', 'acme-key.pem'));
    const read = await call('GET', `/v1/transactions/${tx.transactionId}`, undefined, 'acme');
    expect(read.status, read.text).toBe(200);

    // Client certificate rotation: a new checkout certificate; the old one revoked, then refused.
    await mustRun('rotate-client');
    expect((await call('GET', `/v1/transactions/${tx.transactionId}`, undefined, 'checkout')).text).toMatch(/CERTIFICATE_REVOKED/);
    expect((await call('GET', `/v1/transactions/${tx.transactionId}`, undefined, 'checkout-next')).status).toBe(200);

    // Every connection paylog holds is TLS; service traffic runs as the runtime login, never the owner.
    const conns = await query(
      `${server.adminUrl}?sslmode=no-verify`,
      "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = 'paylog' AND a.pid <> pg_backend_pid()",
    );
    expect(conns.length).toBeGreaterThan(0);
    expect(conns.every((c) => c.ssl === true)).toBe(true);
    const users = new Set(conns.map((c) => c.usename as string));
    expect(users.has('paylog_runtime')).toBe(true);
    expect(users.has('paylog_owner')).toBe(false);
    // paylog made the narrow logins itself, as the owner (CREATEROLE, not a superuser).
    const logins = await query(`${server.adminUrl}?sslmode=no-verify`, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'paylog\\_%' ORDER BY rolname");
    expect(logins.map((r) => r.rolname)).toEqual(['paylog_adm_paylog', 'paylog_admin', 'paylog_app', 'paylog_auditor', 'paylog_keys', 'paylog_keys_paylog', 'paylog_owner', 'paylog_runtime']);

    // The truth about key creation: paylog created no data or signing key, and one period key.
    expect(kms!.requestCounts.get('CreateKey')).toBe(createdByCli! + 1);
    const aliases = await new Promise<string>((res, rej) =>
      execFile('aws', ['kms', 'list-aliases', '--region', 'us-east-1', '--query', 'Aliases[].AliasName', '--output', 'text'], { env: { ...process.env, ...kmsEnv() } }, (e, out) => (e ? rej(e) : res(out))),
    );
    expect(aliases.split(/\s+/).filter((a) => a.startsWith('alias/paylog-')).sort()).toEqual(['alias/paylog-checkpoint', 'alias/paylog-data', expect.stringMatching(/^alias\/paylog-epoch-month-\d{4}-\d{2}$/)]);

    // CA rotation: both CAs in PAYLOG_TLS_CA after a restart; clients of either are accepted.
    await mustRun('rotate-ca');
    service!.kill('SIGTERM');
    expect(await serviceExit).toBe(0);
    await startService(env);
    expect((await call('GET', `/v1/transactions/${tx.transactionId}`, undefined, 'checkout-ca2')).status).toBe(200);
    expect((await call('GET', '/v1/admin/processors', undefined, 'ops-admin')).status).toBe(200);

    // SIGTERM: the service stops cleanly.
    service!.kill('SIGTERM');
    expect(await serviceExit).toBe(0);
  });

  it('verify-full checks the host name and the CA, and a connection without TLS is refused', { timeout: 60_000 }, async () => {
    expect(server, 'runs after the rehearsal above').toBeDefined();
    const bundle = join(etc(), 'rds-global-bundle.pem');
    const url = (host: string, params: string) => `postgres://paylog_runtime:${secrets.RUNTIME_PASSWORD}@${host}:${pgPort}/paylog?${params}`;
    const tryConnect = async (u: string) => {
      const c = new pg.Client({ connectionString: u });
      try {
        await c.connect();
        return 'connected';
      } catch (e) {
        return (e as Error).message;
      } finally {
        await c.end().catch(() => {});
      }
    };
    expect(await tryConnect(url('localhost', `sslmode=verify-full&sslrootcert=${bundle}`))).toBe('connected');
    // The certificate names localhost only: the same server reached as 127.0.0.1 is refused.
    expect(await tryConnect(url('127.0.0.1', `sslmode=verify-full&sslrootcert=${bundle}`))).toMatch(/127\.0\.0\.1.*not in the cert's list|altnames/i);
    // Another CA bundle (the paylog CA) does not vouch for the database.
    expect(await tryConnect(url('localhost', `sslmode=verify-full&sslrootcert=${join(etc(), 'ca', 'ca.pem')}`))).toMatch(/self[- ]signed|unable to (get|verify)/i);
    // Without TLS: refused by the server (rds.force_ssl=1 on RDS; pg_hba.conf here).
    expect(await tryConnect(url('localhost', 'sslmode=disable'))).toMatch(/no encryption|pg_hba\.conf/);
  });

  it('PostgreSQL 17 (the embedded build; from 16 on, CREATEROLE grants only roles held WITH ADMIN OPTION): the same blocks, the migrations and paylog\'s narrow logins', { timeout: 180_000 }, async () => {
    expect(server, 'runs after the rehearsal above (its test CA)').toBeDefined();
    pg17 = await startEmbeddedPostgres({ dataDir: join(dir, 'pg17'), ownedRoot: dir });
    pgPort = Number(new URL(pg17.adminUrl).port);
    await makeRdsLike(pg17, join(dir, 'pg17', 'cluster'));
    const [{ server_version: version }] = await query(`${pg17.adminUrl}?sslmode=no-verify`, 'SHOW server_version');
    expect(version).toMatch(/^1[6-9]\./);
    await mustRun('rds-owner');
    await mustRun('rds-runtime');
    const settings = await settingsEnv();
    expect((await mustRun('check-tls', { ...settings })).trim()).toBe('t|TLSv1.3');
    // What the service does at start as the owner: migrate, then (re)create its narrow logins.
    await applyMigrations(settings.DATABASE_URL!);
    expect(await ensureKeysLogin(settings.DATABASE_URL!, randomBytes(16).toString('hex'))).not.toBeNull();
    expect(await ensureAdminLogin(settings.DATABASE_URL!, randomBytes(16).toString('hex'))).not.toBeNull();
    // The runtime login has paylog_app's rights and no more: it reads the log, cannot rewrite it.
    const runtime = settings.PAYLOG_APP_DATABASE_URL!;
    expect(await query(runtime, 'SELECT count(*)::int AS n FROM log_entries')).toEqual([{ n: 0 }]);
    await expect(query(runtime, 'DELETE FROM log_entries')).rejects.toThrow(/permission denied/);
  });
});
