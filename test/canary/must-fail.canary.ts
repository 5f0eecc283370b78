/**
 * The must-fail canary: `.ci/run` runs this file (with the suite's own global setup, see
 * `vitest.canary.config.ts`) before `npm test` and fails CI unless vitest exits non-zero.
 * A runner that exits 0 here would exit 0 for every real failure too.
 */
import { expect, inject, test } from 'vitest';

test('the canary fails on purpose', () => {
  expect(inject('adminDatabaseUrl')).toMatch(/^postgres/); // the global setup really ran
  expect(1).toBe(2);
});
