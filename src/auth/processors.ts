/**
 * Registered payment processors (PCI DSS 7.2: only registered, active processors receive data).
 * An unknown or disabled processor has no access and cannot be named by checkout.
 */
import type { AppDatabase } from '../db/connection.js';
import { processors } from '../db/schema.js';
import { principalUri } from '../pki/identity.js';


export const PROCESSOR_STATUSES = ['active', 'disabled'] as const;
type ProcessorStatus = (typeof PROCESSOR_STATUSES)[number];

export class ProcessorRegistry {
  /**
   * `database`: the runtime pool (reads only: `paylog_app` may not write processors). `admin`:
   * the pool that runs as a member of `paylog_admin`, the only role that may INSERT or UPDATE
   * processors (issue 17); defaults to `database` for tests that build a registry alone.
   */
  constructor(
    private readonly database: AppDatabase,
    private readonly admin: AppDatabase = database,
  ) {}

  /** True when `name` is registered with status `active`. Read through on every call. */
  async isActive(name: string): Promise<boolean> {
    const r = await this.database.pool.query({
      name: 'paylog_processor_status',
      text: 'SELECT status FROM processors WHERE name = $1',
      values: [name],
    });
    return (r.rows[0] as { status?: string } | undefined)?.status === 'active';
  }

  /** The registered status of `name`, or null when not registered. */
  async status(name: string): Promise<string | null> {
    const r = await this.database.pool.query({
      name: 'paylog_processor_status',
      text: 'SELECT status FROM processors WHERE name = $1',
      values: [name],
    });
    return (r.rows[0] as { status?: string } | undefined)?.status ?? null;
  }

  /** A processor principal is in good standing only while its processor is active; other roles always. */
  async inGoodStanding(p: { role: string; name: string }): Promise<boolean> {
    return p.role !== 'processor' || (await this.isActive(p.name));
  }

  /** Registers (or re-activates / disables) a processor. */
  async upsert(name: string, status: ProcessorStatus = 'active'): Promise<void> {
    await this.admin.db
      .insert(processors)
      .values({ name, principalUri: principalUri({ role: 'processor', name }), status })
      .onConflictDoUpdate({ target: processors.name, set: { status } });
  }

  async list(): Promise<{ name: string; status: string; principalUri: string }[]> {
    return await this.database.db
      .select({ name: processors.name, status: processors.status, principalUri: processors.principalUri })
      .from(processors)
      .orderBy(processors.name);
  }
}
