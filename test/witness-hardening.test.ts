/**
 * Witness hardening: one witness process per data directory (`DIR/witness.lock`, a stale lock
 * from a dead process taken over), and TLS — the witness listener with --tls-cert/--tls-key, and
 * the service posting to https witness URLs trusted through PAYLOG_WITNESS_CA. Loopback only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newTestDatabase, startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { encodeLeaf } from '../src/log/leaf.js';
import { checkpointSize } from '../src/audit/index.js';
import { readCheckpoint } from '../src/log/checkpoint-publisher.js';
import { formatVerifierKey } from '../src/log/note.js';
import { toNoteVerifiers } from '../src/audit/index.js';
import { createCa, issueServerCertificate } from '../src/pki/ca.js';
import { parseCosignerVkey, verifyCosignatures } from '../src/log/witness/cosignature.js';
import { DataDirLockedError, lockDataDir, WITNESS_LOCK_FILE, WITNESS_TAKEOVER_FILE } from '../src/log/witness/data-lock.js';
import { registerWitnessMetrics } from '../src/log/witness/metrics.js';
import { WitnessCosigning } from '../src/log/witness/submitter.js';
import { startWitness, type RunningWitness } from '../src/log/witness/witness.js';

const dirs: string[] = [];
const tmp = (prefix = 'paylog-witness-h-') => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  return r.pid!;
}

const LOG_VKEY_ORIGIN = 'witness-hardening.test/log';
/** Any type-0x01 vkey: the lock tests never post checkpoints. */
const someLogVkey = formatVerifierKey(LOG_VKEY_ORIGIN, randomBytes(32));

describe('one witness per data directory (DIR/witness.lock)', () => {
  it('a second witness on the same directory refuses, naming the directory and the holder pid; after close it starts', async () => {
    const dir = tmp();
    const w = await startWitness({ host: '127.0.0.1', port: 0, dataDir: dir, name: 'lock.test/w', logVkeys: [someLogVkey] });
    const lock = JSON.parse(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8'));
    expect(lock).toMatchObject({ pid: process.pid, host: hostname() });
    const second = startWitness({ host: '127.0.0.1', port: 0, dataDir: dir, name: 'lock.test/w', logVkeys: [someLogVkey] });
    await expect(second).rejects.toBeInstanceOf(DataDirLockedError);
    await expect(second).rejects.toThrow(`witness data directory ${dir} is in use by process ${process.pid}`);
    await w.close();
    expect(existsSync(join(dir, WITNESS_LOCK_FILE))).toBe(false);
    const again = await startWitness({ host: '127.0.0.1', port: 0, dataDir: dir, name: 'lock.test/w', logVkeys: [someLogVkey] });
    expect(again.witness.vkey).toBe(w.witness.vkey);
    await again.close();
  });

  it('a stale lock from a dead process is taken over; foreign, unreadable and half-done takeovers are refused', async () => {
    const dir = tmp();
    const pid = deadPid();
    writeFileSync(join(dir, WITNESS_LOCK_FILE), `${JSON.stringify({ pid, host: hostname(), startedAt: '2026-01-01T00:00:00.000Z' })}\n`);
    const lock = await lockDataDir(dir);
    expect(JSON.parse(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8')).pid).toBe(process.pid);
    expect(existsSync(join(dir, WITNESS_TAKEOVER_FILE))).toBe(false);
    // The lock is ours now: a second taker in this (live) process is refused.
    await expect(lockDataDir(dir)).rejects.toThrow(`is in use by process ${process.pid}`);
    lock.release();
    expect(existsSync(join(dir, WITNESS_LOCK_FILE))).toBe(false);

    writeFileSync(join(dir, WITNESS_LOCK_FILE), `${JSON.stringify({ pid, host: 'elsewhere.invalid', startedAt: 'x' })}\n`);
    await expect(lockDataDir(dir)).rejects.toThrow(`locked by process ${pid} on host elsewhere.invalid`);
    writeFileSync(join(dir, WITNESS_LOCK_FILE), 'not a lock\n');
    await expect(lockDataDir(dir)).rejects.toThrow('not a witness lock');
    // A takeover that died half-way (its own process is gone) is never guessed away.
    writeFileSync(join(dir, WITNESS_LOCK_FILE), `${JSON.stringify({ pid, host: hostname(), startedAt: 'x' })}\n`);
    writeFileSync(join(dir, WITNESS_TAKEOVER_FILE), `${JSON.stringify({ pid, host: hostname(), startedAt: 'x' })}\n`);
    await expect(lockDataDir(dir)).rejects.toThrow(`delete ${join(dir, WITNESS_TAKEOVER_FILE)}`);
    // Release never removes a lock that is not ours.
    rmSync(join(dir, WITNESS_TAKEOVER_FILE));
    const mine = await lockDataDir(dir);
    const other = `${JSON.stringify({ pid: 1, host: hostname(), startedAt: 'y' })}\n`;
    writeFileSync(join(dir, WITNESS_LOCK_FILE), other);
    mine.release();
    expect(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8')).toBe(other);
  });

  describe('two `npm run witness` processes', () => {
    const children: ChildProcess[] = [];
    afterAll(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });

    const witnessArgs = (dir: string) => ['--import', 'tsx', 'scripts/witness.ts', '--listen', '127.0.0.1:0', '--data', dir, '--name', 'cli.test/w', '--log-vkey', someLogVkey];

    /** Starts `scripts/witness.ts` and resolves once it prints its URL (or exits). */
    function run(dir: string): Promise<{ child: ChildProcess; stdout: string; stderr: string; code: number | null }> {
      return new Promise((resolve, reject) => {
        const child = spawn(process.execPath, witnessArgs(dir), { stdio: ['ignore', 'pipe', 'pipe'] });
        children.push(child);
        let stdout = '';
        let stderr = '';
        child.stdout!.on('data', (d) => {
          stdout += d;
          if (/^vkey /m.test(stdout)) resolve({ child, stdout, stderr, code: null });
        });
        child.stderr!.on('data', (d) => (stderr += d));
        child.on('error', reject);
        child.on('exit', (code) => resolve({ child, stdout, stderr, code }));
      });
    }
    const exited = (c: ChildProcess) => new Promise<number | null>((r) => (c.exitCode !== null || c.signalCode !== null ? r(c.exitCode) : c.on('exit', (code) => r(code))));

    it('the second refuses with exit 2 naming DIR and the holder pid; after a SIGKILL the next one takes the stale lock over', async () => {
      const dir = tmp();
      const first = await run(dir);
      expect(first.code, first.stderr).toBeNull();
      expect(first.stdout).toMatch(/listening on http:\/\/127\.0\.0\.1:\d+/);
      const holder = JSON.parse(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8')).pid as number;
      expect(holder).toBe(first.child.pid);

      const second = await run(dir);
      expect(second.code).toBe(2);
      expect(second.stderr).toContain(`witness data directory ${dir} is in use by process ${holder}`);
      expect(second.stdout).toBe('');

      first.child.kill('SIGKILL'); // dies without releasing: a stale lock
      await exited(first.child);
      expect(existsSync(join(dir, WITNESS_LOCK_FILE))).toBe(true);
      const third = await run(dir);
      expect(third.code, third.stderr).toBeNull();
      expect(JSON.parse(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8')).pid).toBe(third.child.pid);
      expect(/^vkey (.*)$/m.exec(third.stdout)?.[1]).toBe(/^vkey (.*)$/m.exec(first.stdout)?.[1]); // same key, same directory

      third.child.kill('SIGTERM'); // clean stop releases the lock
      const code = await exited(third.child);
      expect({ code, signal: third.child.signalCode, stderr: third.stderr }).toEqual({ code: 0, signal: null, stderr: '' });
      expect(existsSync(join(dir, WITNESS_LOCK_FILE))).toBe(false);
    }, 120_000);

    it('three processes started at once on a stale lock: exactly one takes it over, the others name it', async () => {
      const dir = tmp();
      writeFileSync(join(dir, WITNESS_LOCK_FILE), `${JSON.stringify({ pid: deadPid(), host: hostname(), startedAt: '2026-01-01T00:00:00.000Z' })}\n`);
      const runs = await Promise.all([run(dir), run(dir), run(dir)]);
      const winners = runs.filter((r) => r.code === null);
      expect(winners).toHaveLength(1);
      const winner = winners[0]!.child.pid!;
      expect(JSON.parse(readFileSync(join(dir, WITNESS_LOCK_FILE), 'utf8')).pid).toBe(winner);
      for (const r of runs.filter((x) => x.code !== null)) {
        expect(r.code).toBe(2);
        expect(r.stderr).toContain(`is in use by process ${winner}`);
      }
      winners[0]!.child.kill('SIGTERM');
      expect(await exited(winners[0]!.child)).toBe(0);
      expect(existsSync(join(dir, WITNESS_TAKEOVER_FILE))).toBe(false);
    }, 120_000);
  });
});

describe('TLS: witness listener and https witnesses in PAYLOG_WITNESSES', () => {
  const ca = createCa({ commonName: 'paylog witness test CA' });
  const server = issueServerCertificate(ca, ['127.0.0.1', 'localhost']);
  let caPath: string;
  let w: RunningWitness;
  let t: TestPaylog;

  beforeAll(async () => {
    const dataDir = tmp('paylog-witness-tls-svc-');
    caPath = join(tmp(), 'witness-ca.pem');
    writeFileSync(caPath, ca.certPem);
    const databaseUrl = await newTestDatabase();
    const first = await startTestPaylog({ dataDir, databaseUrl });
    const logVkey = first.paylog.logKeys[0]!.vkey;
    await first.stop();
    w = await startWitness({ host: '127.0.0.1', port: 0, dataDir: tmp(), name: 'witness.tls/w1', logVkeys: [logVkey], tls: { cert: server.certPem, key: server.keyPem } });
    t = await startTestPaylog({ dataDir, databaseUrl, env: { PAYLOG_WITNESSES: `${w.url} ${w.witness.vkey}`, PAYLOG_WITNESS_CA: caPath } });
  });
  afterAll(async () => {
    await t?.stop();
    await w?.close();
  });

  it('the witness serves HTTPS with its certificate, and plain HTTP is not answered', async () => {
    expect(w.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const agent = new Agent({ connect: { ca: ca.certPem } });
    try {
      const r = await request(`${w.url}/add-checkpoint`, { method: 'POST', body: 'garbage', dispatcher: agent });
      expect(r.statusCode).toBe(400);
      await r.body.text();
    } finally {
      await agent.close();
    }
    // A client that does not trust the witness's CA cannot talk to it.
    await expect(fetch(`${w.url}/add-checkpoint`, { method: 'POST', body: 'x' })).rejects.toThrow();
  });

  it('the service submits to the https witness (trusted through PAYLOG_WITNESS_CA) and serves its cosignature', async () => {
    await Promise.all(
      Array.from({ length: 5 }, (_, i) =>
        t.paylog.appender.append({ kind: 'key_event', leaf: encodeLeaf({ v: 1, type: 'key_event', time: new Date().toISOString(), event: 'shred', keyName: `tls${i}-${randomBytes(4).toString('hex')}` }), createdAt: new Date() }),
      ),
    );
    const size = (await t.paylog.checkpoints.publish())!.size;
    let note = '';
    // Cosigned in the background after the publication: polled until a deadline (not a count of polls).
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; ) {
      const r = await t.call('auditor', 'GET', '/v1/log/checkpoint');
      if (r.status === 200 && checkpointSize(r.text) === size) {
        note = r.text;
        break;
      }
      await new Promise((res) => setTimeout(res, 25));
    }
    expect(note).not.toBe('');
    expect(verifyCosignatures(note, [parseCosignerVkey(w.witness.vkey)]).valid.map((v) => v.name)).toEqual(['witness.tls/w1']);
  });

  it('without the CA the same https witness is not trusted: the submission fails, nothing is stored', async () => {
    const registry = new Registry();
    const metrics = registerWitnessMetrics(registry);
    const endpoints = loadConfig({ PAYLOG_WITNESSES: `${w.url} ${w.witness.vkey}` }).witnesses!.endpoints;
    const logVerifiers = toNoteVerifiers(t.paylog.logKeys.map((k) => k.vkey));
    const untrusting = new WitnessCosigning(t.paylog.database.db, { witnesses: endpoints, quorum: 1, logVerifiers, metrics });
    const before = w.witness.state(t.paylog.config.logOrigin)?.size;
    const c = (await readCheckpoint(t.paylog.database.db, logVerifiers))!;
    untrusting.submit(c);
    await untrusting.close();
    const json = await metrics.submissions.get();
    expect(json.values.find((v) => v.labels.outcome === 'error')?.value).toBe(1);
    expect(json.values.find((v) => v.labels.outcome === 'cosigned')).toBeUndefined();
    expect(w.witness.state(t.paylog.config.logOrigin)?.size).toBe(before);
  });

  it('PAYLOG_WITNESS_CA is checked at start', () => {
    const vkey = w.witness.vkey;
    expect(() => loadConfig({ PAYLOG_WITNESS_CA: caPath })).toThrow(ConfigError);
    expect(() => loadConfig({ PAYLOG_WITNESS_CA: caPath })).toThrow('PAYLOG_WITNESS_CA: only used with PAYLOG_WITNESSES');
    expect(() => loadConfig({ PAYLOG_WITNESSES: `http://127.0.0.1:7380 ${vkey}`, PAYLOG_WITNESS_CA: caPath })).toThrow('PAYLOG_WITNESS_CA: only used with https witness URLs');
    expect(loadConfig({ PAYLOG_WITNESSES: `${w.url} ${vkey}`, PAYLOG_WITNESS_CA: caPath }).witnesses).toMatchObject({ caPath, quorum: 1 });
  });
});
