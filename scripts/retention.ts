/**
 * `npm run retention -- apply [--dry-run] [--as-of ISO]` [--url --cacert --cert --key]: applies
 * PAYLOG_RETENTION by crypto-shredding through the admin route; prints the run's JSON report
 * (PCI DSS 3.2.1 evidence). `--as-of` moves the clock for tests and demos and is refused unless
 * paylog runs on the dev-only local KMS. Exit 0 done, 1 refused, 2 usage or connection error.
 */
import { parseArgs } from 'node:util';
import { ADMIN_OPTIONS, adminCall, adminConnection, report } from './admin-client.js';

const USAGE = 'usage: npm run retention -- apply [--dry-run] [--as-of ISO]  [--url --cacert --cert --key]';

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    options: { ...ADMIN_OPTIONS, 'dry-run': { type: 'boolean', default: false }, 'as-of': { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1 || positionals[0] !== 'apply') {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const body = { ...(values['dry-run'] ? { dryRun: true } : {}), ...(values['as-of'] ? { asOf: values['as-of'] } : {}) };
  return report(await adminCall(adminConnection(values), 'POST', '/v1/admin/retention/apply', body));
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`retention: ${(e as Error)?.message ?? String(e)}\n${USAGE}\n`);
    process.exit(2);
  },
);
