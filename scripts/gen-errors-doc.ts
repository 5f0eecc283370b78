/**
 * `npm run docs:errors`: writes docs/errors.md, the error-code reference, from the one code
 * table and the route specs (src/api/errors-doc.ts). `--check` writes nothing and exits 1 when
 * the committed file is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { documentedRoutes } from '../src/api/openapi-document.js';
import { renderErrorsDoc } from '../src/api/errors-doc.js';

const target = fileURLToPath(new URL('../docs/errors.md', import.meta.url));
const text = renderErrorsDoc(await documentedRoutes());
if (process.argv.includes('--check')) {
  let committed = '';
  try {
    committed = readFileSync(target, 'utf8');
  } catch {
    // missing: out of date
  }
  if (committed !== text) {
    console.error('docs/errors.md is out of date: run npm run docs:errors');
    process.exit(1);
  }
  console.log('docs/errors.md is up to date');
} else {
  writeFileSync(target, text);
  console.log(`wrote docs/errors.md (${text.length} characters)`);
}
