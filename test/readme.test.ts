/**
 * The README's walkthroughs work as pasted: every `sh` block, in order, in ONE shell (as pasted
 * into one terminal: a walkthrough's variables carry from block to block), in one directory,
 * against a dev service this test starts (the way `npm start` runs it). Skipped, as the README
 * says: blocks marked "production" or "by hand" on the line above, and blocks that install,
 * start a long-running process or run the suite / bench. The only rewrite is the service's
 * address (the test's service listens on a free port, not 8443). The shell runs with
 * `set -euo pipefail` and `curl` fails on any HTTP error status, so a block reaches its promised
 * outcome or the test fails, naming the block. Then nothing the blocks made may be left: no new
 * file in the directory they ran in, no temporary directory (`mktemp`) left behind.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { writeExampleTransaction } from '../src/pki/walkthrough.js';
import { READINESS_CACHE_MS } from '../src/readiness.js';

export interface ShellBlock {
  line: number;
  code: string;
  skip?: string;
}

/** Commands a pasted walkthrough must not run here (installs, servers, the suite, the bench). */
const SKIP_COMMANDS = /\bnpm (?:install|i|ci|start|test)\b|\bnpm run (?:bench|db:generate|start|witness|demo)\b|\bnpx vitest\b|&\s*$/m;

/** Every ```sh / ```bash block with the reason it is skipped, if it is. */
export function shellBlocks(markdown: string): ShellBlock[] {
  const lines = markdown.split('\n');
  const out: ShellBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(?:sh|bash|shell)\s*$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(Math.min(indent, lines[j]!.search(/\S|$/))));
    let above = i - 1;
    while (above >= 0 && lines[above]!.trim() === '') above--;
    const code = body.join('\n');
    const marker = above >= 0 && lines[above]!.trim().split(/\s+/).length <= 3 ? /\b(production|by hand)\b/i.exec(lines[above]!) : null;
    const skip = marker ? `marked ${marker[1]!.toLowerCase()}` : SKIP_COMMANDS.test(code) ? 'installs, starts a process or runs the suite' : undefined;
    out.push({ line: i + 1, code, ...(skip ? { skip } : {}) });
    i = j;
  }
  return out;
}

const repo = resolve(new URL('..', import.meta.url).pathname);
const readme = readFileSync(join(repo, 'README.md'), 'utf8');
let t: TestPaylog;
let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'paylog-readme-'));
  t = await startTestPaylog({ dataDir: join(work, 'data') });
  writeExampleTransaction(join(work, 'data', 'examples')); // what `npm start` writes
  mkdirSync(join(repo, 'dist'), { recursive: true }); // build outputs (git-ignored) land in the repo's dist/
  for (const f of ['package.json', 'node_modules', 'scripts', 'src', 'tsconfig.json', 'drizzle', 'dist']) symlinkSync(join(repo, f), join(work, f));
}, 120_000);
afterAll(async () => {
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Marks the start of a block on stderr, so a failure names its block. */
const BLOCK_MARK = '::readme-block ';

/** Runs `blocks` in order in one bash (its own process group, ended afterwards), from `work`. */
function runSession(blocks: ShellBlock[], tmp: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const body = blocks.map((b) => `echo '${BLOCK_MARK}${b.line}' >&2\n${b.code.replaceAll('https://127.0.0.1:8443', t.paylog.url)}`).join('\n');
  const script = `set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n${body}\n`;
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_loglevel: 'error', TMPDIR: tmp };
  delete env.PAYLOG_DATA_DIR;
  return new Promise((res) => {
    const p = spawn('bash', ['-c', script], { cwd: work, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => (stdout += c));
    p.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => p.kill('SIGKILL'), 540_000);
    p.on('close', (code) => {
      clearTimeout(timer);
      try {
        process.kill(-p.pid!, 'SIGKILL'); // anything a failed block left running (e.g. the demo processor)
      } catch {
        // the group is gone already
      }
      res({ code: code ?? 1, stdout, stderr });
    });
  });
}

describe('README', () => {
  it('marks which blocks are not run, and the extractor sees every walkthrough', () => {
    const blocks = shellBlocks(readme);
    const run = blocks.filter((b) => !b.skip).map((b) => b.code);
    expect(run.length).toBeGreaterThanOrEqual(12);
    expect(blocks[0]!.skip).toBeDefined(); // npm install && npm start
    expect(readme).toMatch(/marked \*\*production\*\* or \*\*by hand\*\* just above them/);
    // The walkthroughs this test has always run: submission, processor, auditor, verifier, operator, forwarding.
    for (const step of ['-d @data/examples/transaction.json', 'issue-cert -- csr', 'issue-cert -- sign', '/release', 'verify-proof -- --bundle', 'verify-log --', 'build:verifier', 'keys -- status', 'retention -- apply --dry-run', 'scripts/demo-processor.ts', '"type":"iban"', '"type":"us_bank_account"']) {
      expect(run.some((c) => c.includes(step)), `no block that is run contains ${step}`).toBe(true);
    }
    expect(blocks.find((b) => b.code.includes('demo-checkout-bodies.log'))?.skip).toBe('marked by hand');
  });

  it('the README and docs/operations.md state the /readyz cache the code has', () => {
    const stated = `cached for ${READINESS_CACHE_MS / 1000} s`;
    expect(readme).toContain(stated);
    expect(readFileSync(join(repo, 'docs', 'operations.md'), 'utf8')).toContain(stated);
    // and no other figure anywhere (operations.md once said 2 s)
    const all = [...(readme + readFileSync(join(repo, 'docs', 'operations.md'), 'utf8')).matchAll(/cached for [\d.]+ s/g)].map((m) => m[0]);
    expect(new Set(all)).toEqual(new Set([stated]));
  });

  it('every shell block works when pasted in order into one shell against the dev service, and leaves nothing behind', async () => {
    const tmp = join(work, 'tmp');
    mkdirSync(tmp);
    const before = readdirSync(work).sort();
    const blocks = shellBlocks(readme).filter((b) => !b.skip);
    const r = await runSession(blocks, tmp);
    const marks = [...r.stderr.matchAll(new RegExp(`^${BLOCK_MARK}(\\d+)$`, 'gm'))];
    const failed = blocks.find((b) => b.line === Number(marks.at(-1)?.[1]));
    expect(r.code, `README.md line ${failed?.line}:\n${failed?.code}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`).toBe(0);
    expect(marks).toHaveLength(blocks.length);
    // Nothing left in the directory the walkthroughs ran in, and every temporary directory removed.
    expect(readdirSync(work).sort()).toEqual(before);
    expect(readdirSync(tmp).filter((f) => f.startsWith('tmp.'))).toEqual([]);
  }, 600_000);
});
