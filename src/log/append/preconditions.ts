/**
 * Generic append preconditions: checks registered once, at construction, by the layer that knows
 * what they mean; entries name them by id (src/log/append/types.ts `Precondition`).
 *
 * Contract:
 * - The log core MUST NOT know what a check means: it only reads, under the append lock and in
 *   the batch's ONE state read, the keys for which each registered check fails, and refuses (or,
 *   for an access entry, denies) an entry whose precondition is among them.
 * - A check's SQL is code registered by the service layer, never input: `failing` is a SELECT of
 *   one text column, the keys of `{keys}` (bound as a text[] parameter: the distinct keys of the
 *   batch for this check) for which the check FAILS. `held`, when given, is the body of a CTE,
 *   referenced in `failing` as `{held}`, that reads the rows the check holds on and SHOULD lock
 *   them FOR SHARE, so a change to them waits for the batch to commit. A check whose rows cannot
 *   be locked MUST say how its writers serialise with the append (e.g. by taking the append
 *   lock) where it is registered.
 * - `beforeReplay`: decided before idempotency (an identical replay is refused too); otherwise
 *   decided only for entries that would be appended.
 */
export interface PreconditionCheck {
  /** Stable identifier (lower case, digits, underscores). */
  id: string;
  /** The outcome's `reason` when the check fails. */
  reason: string;
  beforeReplay?: boolean;
  held?: string;
  failing: string;
}

const CHECK_ID = /^[a-z][a-z0-9_]*$/;

/** What the plan needs to know of each registered check (id → reason, stage). */
export type CheckTable = ReadonlyMap<string, Pick<PreconditionCheck, 'reason' | 'beforeReplay'>>;

/** Validates a registry and indexes it by id. Throws on a malformed or duplicate check. */
export function checkTable(checks: readonly PreconditionCheck[]): CheckTable {
  const table = new Map<string, Pick<PreconditionCheck, 'reason' | 'beforeReplay'>>();
  for (const c of checks) {
    if (!CHECK_ID.test(c.id)) throw new Error(`precondition check id ${JSON.stringify(c.id)} is not [a-z][a-z0-9_]*`);
    if (table.has(c.id)) throw new Error(`precondition check ${c.id} is registered twice`);
    if (c.held === undefined && c.failing.includes('{held}')) throw new Error(`precondition check ${c.id} references {held} without one`);
    // An unreferenced CTE is never evaluated, and its rows never locked.
    if (c.held !== undefined && !c.failing.includes('{held}')) throw new Error(`precondition check ${c.id} never reads its {held} rows`);
    table.set(c.id, { reason: c.reason, ...(c.beforeReplay ? { beforeReplay: true } : {}) });
  }
  return table;
}

/** The row kind of check `i` in the batch-state read ('h', 'n' and 't' are the log's own). */
export function checkRowKind(i: number): string {
  return `c${i}`;
}

/**
 * The CTEs and UNION ALL arms the batch-state read gains for the registered checks; check `i`
 * binds its keys as parameter `$(firstParam + i)`. Each arm yields rows of the read's shape
 * (kind, id, and NULL for every other column).
 */
export function checkSql(checks: readonly PreconditionCheck[], firstParam: number): { ctes: string[]; arms: string[] } {
  const ctes: string[] = [];
  const arms: string[] = [];
  checks.forEach((c, i) => {
    const keys = `$${firstParam + i}::text[]`;
    const held = `${c.id}_held`;
    const fill = (sql: string) => sql.replaceAll('{keys}', keys).replaceAll('{held}', held);
    if (c.held !== undefined) ctes.push(`${held} AS (\n  ${fill(c.held)}\n)`);
    arms.push(`SELECT '${checkRowKind(i)}', f.id, NULL, NULL, NULL, NULL, NULL FROM (${fill(c.failing)}) AS f(id)`);
  });
  return { ctes, arms };
}
