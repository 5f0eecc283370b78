import pg from 'pg';
import { startService } from './bench/service.js';
import { loadRun } from './bench/throughput.js';
const s = await startService({ env: { PAYLOG_WORKERS: process.argv[2] ?? '1' } });
await loadRun(s, 8, 2, -1);
const c = new pg.Client({ connectionString: s.pgAdminUrl() });
await c.connect();
const counts = new Map<string, number>();
let stop = false;
const sampler = (async () => {
  while (!stop) {
    const r = await c.query(`SELECT state, coalesce(wait_event_type,'-') AS t, coalesce(wait_event,'-') AS e, left(query, 30) AS q FROM pg_stat_activity WHERE datname = 'paylog' AND pid <> pg_backend_pid() AND state <> 'idle'`);
    for (const row of r.rows) { const k = `${row.state} | ${row.t}:${row.e} | ${row.q.replace(/\s+/g, ' ')}`; counts.set(k, (counts.get(k) ?? 0) + 1); }
    await new Promise((res) => setTimeout(res, 3));
  }
})();
const r = await loadRun(s, 32, 8, 0);
stop = true; await sampler;
console.log(JSON.stringify({ rps: r.rps, svc: r.serviceCpuPct, pg: r.postgresCpuPct }));
for (const [k, v] of [...counts].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(String(v).padStart(6), k);
await c.end(); await s.stop();
