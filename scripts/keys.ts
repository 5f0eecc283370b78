/**
 * `npm run keys -- status | rotate [--processor P] [--reason R] | rewrap --to <KMS key id> [--batch N]`
 * [--url URL --cacert CA --cert CERT --key KEY]. Calls the admin routes with an admin certificate.
 * `rewrap` runs batch after batch until done; killed and rerun, it continues where it stopped.
 * Exit 0 done, 1 refused by paylog, 2 usage or connection error.
 */
import { parseArgs } from 'node:util';
import { ADMIN_OPTIONS, adminCall, adminConnection, report } from './admin-client.js';

const USAGE = 'usage: npm run keys -- status | rotate [--processor P] [--reason R] | rewrap --to <KMS key id> [--batch N]  [--url --cacert --cert --key]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { ...ADMIN_OPTIONS, to: { type: 'string' }, batch: { type: 'string' }, processor: { type: 'string' }, reason: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  const cmd = positionals[0];
  const c = adminConnection(values);
  if (cmd === 'status' && positionals.length === 1) return report(await adminCall(c, 'GET', '/v1/admin/keys'));
  if (cmd === 'rotate' && positionals.length === 1) {
    return report(await adminCall(c, 'POST', '/v1/admin/keys/rotate', { ...(values.processor ? { processor: values.processor } : {}), ...(values.reason ? { reason: values.reason } : {}) }));
  }
  if (cmd === 'rewrap' && positionals.length === 1 && values.to) {
    const batchSize = values.batch ? Number(values.batch) : undefined;
    if (batchSize !== undefined && !Number.isInteger(batchSize)) throw new Error('--batch must be an integer');
    let total = 0;
    for (;;) {
      const r = await adminCall(c, 'POST', '/v1/admin/keys/rewrap', { to: values.to, ...(batchSize ? { batchSize } : {}) });
      if (r.status !== 200) return report(r);
      total += r.json.rewrapped as number;
      process.stderr.write(`rewrap: ${r.json.rewrapped} ${r.json.kind ?? ''} key(s) rewrapped, ${r.json.remaining} remaining\n`);
      if (r.json.done) return report({ status: 200, json: { rewrapped: total, to: r.json.to, done: true } });
    }
  }
  process.stderr.write(USAGE + '\n');
  return 2;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`keys: ${(e as Error)?.message ?? String(e)}\n${USAGE}\n`);
    process.exit(2);
  },
);
