/** Runs one of the repository's scripts (`scripts/<name>.ts`) as a child process, as a user would. */
import { spawn } from 'node:child_process';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `opts.script` runs that file instead of `scripts/<name>.ts` (e.g. the bundled verifier: `node <bundle> <name> ...`). */
export function runScript(script: string, args: string[], opts: { cwd?: string; bin?: string; script?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(opts.bin ?? 'node_modules/.bin/tsx', opts.script !== undefined ? [opts.script, script, ...args] : [`scripts/${script}.ts`, ...args], {
      cwd: opts.cwd ?? process.cwd(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.env ? { env: opts.env } : {}),
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
