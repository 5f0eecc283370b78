/**
 * What start-up must undo: each step registers how to release what it acquired.
 *
 * Contract: `run()` calls every registered cleanup once, newest first, and MUST NOT throw (a
 * failing cleanup is ignored so the older ones still run).
 */
export class Cleanups {
  private readonly steps: Array<() => Promise<void>> = [];

  /** Registers `f`; it runs before every cleanup registered earlier. */
  push(f: () => Promise<void>): void {
    this.steps.push(f);
  }

  /** Runs every cleanup, newest first. */
  async run(): Promise<void> {
    for (const c of this.steps.reverse()) await c().catch(() => {});
  }
}
