/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after vitest's own
 * report, so that tools reading the end of the CI log need not parse coloured output.
 */
import type { Reporter, TestModule } from 'vitest/node';

/** Errors vitest caught outside any test (an uncaught exception in a worker, say). */
type UnhandledErrors = ReadonlyArray<unknown>;

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: UnhandledErrors = []): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const m of testModules) {
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      if (m.state() === 'failed' && [...m.children.allTests()].length === 0) failed++; // a file that failed to load
    }
    // An error outside any test fails the run (vitest exits non-zero): count each as a failure so
    // the closing line never says "0 failed" for a failing run.
    failed += unhandledErrors.length;
    process.stdout.write(`\ntests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  }
}
