/**
 * The README's walkthroughs work as pasted: every `sh` block, in order, in one directory,
 * against a dev service this test starts (the way `npm start` runs it). Skipped, as the README
 * says: blocks marked "production" on the line above, and blocks that install, start a
 * long-running process or run the suite / bench. The only rewrite is the service's address
 * (the test's service listens on a free port, not 8443). `curl` fails on any HTTP error status,
 * so a block reaches its promised outcome or the test fails.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestPaylog, type TestPaylog } from './helpers/paylog.js';
import { writeExampleTransaction } from '../src/pki/walkthrough.js';

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
    const marked = above >= 0 && /\bproduction\b/i.test(lines[above]!) && lines[above]!.trim().split(/\s+/).length <= 3;
    const skip = marked ? 'marked production' : SKIP_COMMANDS.test(code) ? 'installs, starts a process or runs the suite' : undefined;
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
  for (const f of ['package.json', 'node_modules', 'scripts', 'src', 'tsconfig.json', 'drizzle']) symlinkSync(join(repo, f), join(work, f));
}, 120_000);
afterAll(async () => {
  await t?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function run(code: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const script = `set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n${code.replaceAll('https://127.0.0.1:8443', t.paylog.url)}\n`;
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_loglevel: 'error' };
  delete env.PAYLOG_DATA_DIR;
  return new Promise((res) => {
    execFile('bash', ['-c', script], { cwd: work, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe('README', () => {
  it('marks which blocks are not run, and the extractor sees the walkthroughs', () => {
    const blocks = shellBlocks(readme);
    expect(blocks.filter((b) => !b.skip).length).toBeGreaterThanOrEqual(6);
    expect(blocks[0]!.skip).toBeDefined(); // npm install && npm start
    expect(readme).toMatch(/marked \*\*production\*\* just above them/);
  });

  it('every shell block works when pasted in order against the dev service', async () => {
    for (const b of shellBlocks(readme)) {
      if (b.skip) continue;
      const r = await run(b.code);
      expect(r.code, `README.md line ${b.line}:\n${b.code}\n--- stdout\n${r.stdout.slice(-2000)}\n--- stderr\n${r.stderr.slice(-2000)}`).toBe(0);
    }
  }, 600_000);
});
