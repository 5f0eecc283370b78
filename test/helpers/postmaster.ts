/** Process helpers of the fault drills that kill the embedded PostgreSQL for real. */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The postmaster's pid, from postmaster.pid wherever the cluster keeps it under `pgDir`. */
export function postmasterPid(pgDir: string): number {
  for (const f of [join(pgDir, 'cluster', 'postmaster.pid'), join(pgDir, 'postmaster.pid')]) {
    if (existsSync(f)) return Number(readFileSync(f, 'utf8').split('\n')[0]);
  }
  throw new Error('postmaster.pid not found');
}

/** True while a process with this pid exists (signal 0). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
