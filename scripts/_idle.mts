import { startService } from './bench/service.js';
const s = await startService({ env: { PAYLOG_WORKERS: process.argv[2] ?? '1' } });
await new Promise(r=>setTimeout(r,2000));
const a = s.cpuSeconds(); await new Promise(r=>setTimeout(r,5000)); const b = s.cpuSeconds();
console.log('idle svc CPU %', ((b.service!-a.service!)/5*100).toFixed(1), 'pg %', ((b.postgres!-a.postgres!)/5*100).toFixed(1));
await s.stop();
