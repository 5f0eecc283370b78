import { startService } from './bench/service.js';
import { loadRun } from './bench/throughput.js';
const s = await startService({ env: { PAYLOG_WORKERS: '1' } });
await loadRun(s, 1, 1, -1);
const r = await loadRun(s, Number(process.argv[2] ?? 1), 6, 0);
console.log(JSON.stringify({ rps: r.rps, svc: r.serviceCpuPct, pg: r.postgresCpuPct, p50: r.p50ms }));
await s.stop();
