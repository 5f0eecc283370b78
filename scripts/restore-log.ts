/**
 * Operator: after restoring the database from a backup, re-append the lost tail of the log from
 * an auditor export taken before the loss, so the stored tree is again the signed history and
 * the signer resumes (docs/operations.md "Restoring from a backup"; src/log/restore.ts).
 *
 *   npm run restore-log -- --file <export.ndjson>
 *
 * Runs with the service's own settings (the same environment as `npm start`: PAYLOG_DATA_DIR,
 * DATABASE_URL, KMS, PAYLOG_SIGNER_STATE) while every paylog instance on the database is
 * STOPPED. It starts paylog on a loopback port, re-appends the entries the export proves to be
 * the signed history (nothing else: there is no override), signs the restored tree and stops.
 *
 * Exit codes: 0 restored (or nothing to restore), 1 refused (the export does not prove the
 * signed history, or the database does not hold a prefix of it), 2 usage errors.
 */
import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseOptions } from './cli.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { startPaylog } from '../src/app.js';

interface Opts {
  file: string;
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const program = new Command('restore-log')
    .description('Re-append the lost tail of the log from an auditor export (after a database restore)')
    .requiredOption('--file <export>', 'NDJSON export from `npm run export-log`, taken before the loss')
    .exitOverride();
  const parsed = await parseOptions<Opts>(program, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  if (!existsSync(parsed.opts.file)) {
    process.stderr.write(`restore-log: ${parsed.opts.file} does not exist\n`);
    return EXIT_USAGE;
  }
  let config;
  try {
    // Never on the service's port: nothing but this process may append meanwhile.
    config = loadConfig({ ...env, PAYLOG_HOST: '127.0.0.1', PAYLOG_PORT: '0', PAYLOG_WORKERS: '1' });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`restore-log: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
  let paylog;
  try {
    paylog = await startPaylog(config, { restoreLog: parsed.opts.file, retentionSchedule: false });
  } catch (e) {
    process.stderr.write(`restore-log: refused: ${(e as Error).message}\n`);
    return EXIT_FAILURE;
  }
  const r = paylog.restored!;
  const refusal = paylog.checkpoints.refusal();
  await paylog.close();
  process.stdout.write(`${JSON.stringify({ ...r, signing: refusal ? 'refused' : 'resumed' })}\n`);
  if (refusal) {
    process.stderr.write(`restore-log: the signer still refuses: ${refusal.message}\n`);
    return EXIT_FAILURE;
  }
  return EXIT_OK;
}

process.exit(await main(process.argv));
