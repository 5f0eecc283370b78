/**
 * Entry point of the standalone auditor verifier (`npm run build:verifier` →
 * dist/paylog-verify.mjs): `node paylog-verify.mjs verify-log …` or `… verify-proof …` runs the
 * same CLI as `npm run verify-log` / `npm run verify-proof`, bundled with everything it needs.
 */
const COMMANDS = ['verify-log', 'verify-proof'] as const;

const [node = 'node', , command, ...rest] = process.argv;
if (command === undefined || !(COMMANDS as readonly string[]).includes(command)) {
  process.stderr.write(`usage: node paylog-verify.mjs <${COMMANDS.join('|')}> [options]   (--help for each command's options)\n`);
  process.exitCode = 2;
} else {
  // Each CLI parses process.argv as `node <script> ...options`.
  process.argv = [node, command, ...rest];
  if (command === 'verify-log') await import('./verify-log.js');
  else await import('./verify-proof.js');
}
