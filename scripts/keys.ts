/**
 * `npm run keys -- status | rotate [--processor P] [--reason R]
 *                | rewrap --new-period-keys [--to <KMS key id>] [--run ID] [--batch N]
 *                | rewrap --to <KMS key id> [--batch N]`
 * [--url URL --cacert CA --cert CERT --key KEY]. Calls the admin routes with an admin certificate.
 *
 * `rewrap --new-period-keys` moves every live epoch private key under a NEW KMS key of its own
 * key period (`alias/paylog-epoch-<granularity>-<label>-r<n>`); `--to` names the target of the
 * envelope-v1 per-record data keys only (epoch keys never move to it). Runs batch after batch
 * until done; rows that cannot be rewrapped are skipped and listed (`skipped`). Killed, rerun
 * it with `--run <id>` (printed on stderr) to continue that run; without `--run` a rerun starts
 * a new run (every live epoch moves again, under yet another key of its period).
 * Exit 0 done, 1 refused by paylog, 2 usage or connection error.
 */
import { parseArgs } from 'node:util';
import { ADMIN_OPTIONS, adminCall, adminConnection, report } from './admin-client.js';

const USAGE =
  'usage: npm run keys -- status | rotate [--processor P] [--reason R] | rewrap --new-period-keys [--to <KMS key id>] [--run ID] [--batch N] | rewrap --to <KMS key id> [--batch N]  [--url --cacert --cert --key]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: {
      ...ADMIN_OPTIONS,
      to: { type: 'string' },
      'new-period-keys': { type: 'boolean', default: false },
      run: { type: 'string' },
      batch: { type: 'string' },
      processor: { type: 'string' },
      reason: { type: 'string' },
    },
    allowPositionals: true,
    strict: true,
  });
  const cmd = positionals[0];
  const c = adminConnection(values);
  if (cmd === 'status' && positionals.length === 1) return report(await adminCall(c, 'GET', '/v1/admin/keys'));
  if (cmd === 'rotate' && positionals.length === 1) {
    return report(await adminCall(c, 'POST', '/v1/admin/keys/rotate', { ...(values.processor ? { processor: values.processor } : {}), ...(values.reason ? { reason: values.reason } : {}) }));
  }
  const periodKeys = values['new-period-keys'] === true;
  if (cmd === 'rewrap' && positionals.length === 1 && (periodKeys || values.to)) {
    const batchSize = values.batch ? Number(values.batch) : undefined;
    if (batchSize !== undefined && !Number.isInteger(batchSize)) throw new Error('--batch must be an integer');
    const fixed = { ...(periodKeys ? { periodKeys: 'new' } : {}), ...(values.to ? { to: values.to } : {}), ...(batchSize ? { batchSize } : {}) };
    let run = values.run;
    let after: string | null = null;
    let total = 0;
    const skipped = { count: 0, epochIds: [] as string[], transactionIds: [] as string[] };
    for (;;) {
      const r = await adminCall(c, 'POST', '/v1/admin/keys/rewrap', { ...fixed, ...(run ? { run } : {}), ...(after ? { after } : {}) });
      if (r.status !== 200) return report(r);
      run = r.json.run as string;
      after = r.json.after as string | null;
      total += r.json.rewrapped as number;
      const s = r.json.skipped as typeof skipped;
      skipped.count += s.count;
      skipped.epochIds.push(...s.epochIds);
      skipped.transactionIds.push(...s.transactionIds);
      process.stderr.write(
        `rewrap (run ${run}): ${r.json.rewrapped} ${r.json.kind ?? ''} key(s) rewrapped${s.count > 0 ? `, ${s.count} skipped` : ''}, ${r.json.remaining} remaining; killed, rerun with --run ${run}\n`,
      );
      if (r.json.done) {
        if (skipped.count > 0) process.stderr.write(`rewrap: ${skipped.count} row(s) could not be rewrapped and were left as they were (see "skipped" and the service's error log)\n`);
        return report({
          status: 200,
          json: { rewrapped: total, run, ...(periodKeys ? { periodKeys: 'new' } : {}), to: r.json.to ?? null, done: true, skipped },
        });
      }
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
