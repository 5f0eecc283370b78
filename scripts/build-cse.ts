/**
 * `npm run build:cse` → `dist/paylog-encrypt.js`: the browser module (src/cse/browser/
 * paylog-encrypt.ts with `jose`'s WebCrypto build bundled in), one ES module, no framework.
 * The demo checkout builds the same bundle in memory with `buildPaylogEncrypt()`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const REPO_ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
export const PAYLOG_ENCRYPT_ENTRY = join(REPO_ROOT, 'src/cse/browser/paylog-encrypt.ts');
export const PAYLOG_ENCRYPT_OUT = join(REPO_ROOT, 'dist/paylog-encrypt.js');
/** Browsers with WebCrypto ECDH P-256 + AES-GCM and ES2020 modules. */
export const BROWSER_TARGETS = ['chrome100', 'firefox100', 'safari15', 'edge100'];

/** The bundled module's source text. */
export async function buildPaylogEncrypt(): Promise<string> {
  const out = await build({
    entryPoints: [PAYLOG_ENCRYPT_ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'browser', // selects jose's WebCrypto ("browser") build
    target: BROWSER_TARGETS,
    minify: true,
    legalComments: 'eof', // keeps jose's licence notice
    write: false,
    logLevel: 'silent',
  });
  const file = out.outputFiles[0];
  if (file === undefined) throw new Error('esbuild produced no output');
  return file.text;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const text = await buildPaylogEncrypt();
  mkdirSync(join(REPO_ROOT, 'dist'), { recursive: true });
  writeFileSync(PAYLOG_ENCRYPT_OUT, text);
  console.log(`wrote ${PAYLOG_ENCRYPT_OUT} (${text.length} bytes)`);
}
