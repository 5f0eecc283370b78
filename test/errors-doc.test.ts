/**
 * Issue 21: docs/errors.md is generated from the one error-code table (src/errors.ts, its HTTP
 * mapping in src/api/errors.ts, the words of src/api/error-catalog.ts) and the route specs; the
 * committed file is exactly what `npm run docs:errors` writes now.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../src/errors.js';
import { HTTP_STATUS } from '../src/api/errors.js';
import { ERROR_CATALOG } from '../src/api/error-catalog.js';
import { renderErrorsDoc } from '../src/api/errors-doc.js';
import { documentedRoutes } from '../src/api/openapi-document.js';
import { containsPanLikeNumber } from '../src/validation/identifiers.js';

const committed = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8');

describe('docs/errors.md', () => {
  it('equals the generated output (run `npm run docs:errors` after changing a code, its status or its words)', async () => {
    expect(committed).toBe(renderErrorsDoc(await documentedRoutes()));
  });

  it('has every code once, with its HTTP status, meaning and an example of that code', () => {
    for (const code of ERROR_CODES) {
      expect(committed.match(new RegExp(`^## ${code}$`, 'gm')), code).toHaveLength(1);
      expect(committed, code).toContain(`| [\`${code}\`](#${code.toLowerCase()}) | ${HTTP_STATUS[code]} |`);
      expect(committed, code).toContain(`"code": "${code}"`);
    }
    expect(Object.keys(ERROR_CATALOG).sort()).toEqual([...ERROR_CODES].sort());
    expect(containsPanLikeNumber(committed)).toBe(false);
  });
});
