/**
 * `npm run build:verifier`: bundles the auditor CLIs (scripts/verify-log.ts, verify-proof.ts and
 * the auditor side, src/audit/, with the shared log format code) into one dependency-free ES module,
 * dist/paylog-verify.mjs, for Node 20 or newer. An auditor needs only that file, the CA
 * certificate, an auditor certificate and key, and the log's verifier key.
 * `--outfile <path>` writes the bundle elsewhere (tests build their own copy side by side);
 * `--metafile <path>` also writes esbuild's metafile (the bundle's inputs), which
 * test/standalone-verifier.test.ts checks: the auditor folder (src/audit/), the shared log format
 * code and the outbound HTTP module (src/net/), never a service module.
 */
import { build } from 'esbuild';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
export const VERIFIER_OUTFILE = 'dist/paylog-verify.mjs';
const at = process.argv.indexOf('--outfile');
const outfile = at >= 0 && process.argv[at + 1] ? process.argv[at + 1]! : VERIFIER_OUTFILE;
const metaAt = process.argv.indexOf('--metafile');
const metafile = metaAt >= 0 ? process.argv[metaAt + 1] : undefined;

const result = await build({
  absWorkingDir: root,
  entryPoints: ['scripts/paylog-verify.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  legalComments: 'eof',
  // CommonJS dependencies call require() for Node built-ins; give the ES module one.
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __paylogCreateRequire } from 'node:module';\nconst require = __paylogCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: metafile !== undefined,
});
if (metafile !== undefined && result.metafile !== undefined) writeFileSync(metafile, JSON.stringify(result.metafile));
process.stdout.write(`wrote ${outfile}\n`);
