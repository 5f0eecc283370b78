/**
 * `npm start`: loads settings, starts paylog (embedded PostgreSQL + local KMS by default) and
 * prints ready-to-run curl commands for the dev principals. SIGINT/SIGTERM shut down gracefully.
 */
import { ConfigError, loadConfig } from './config.js';
import { startPaylog } from './app.js';
import { join } from 'node:path';
import { devWalkthrough, writeExampleTransaction } from './pki/walkthrough.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`paylog: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const paylog = await startPaylog(config);
  paylog.logger.info({ url: paylog.url, kms: config.kms.mode, database: config.databaseUrl ? 'external' : 'embedded' }, 'paylog listening');
  if (paylog.devPki) {
    const example = writeExampleTransaction(join(config.dataDir, 'examples'));
    process.stdout.write(devWalkthrough(paylog.url, paylog.devPki, paylog.logKeys[0]?.vkey, example));
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    paylog.logger.info({ signal }, 'shutting down: finishing in-flight batches');
    paylog.close().then(
      () => {
        process.stderr.write('paylog: stopped\n');
        process.exit(0);
      },
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  const err = e as Error;
  process.stderr.write(`paylog: failed to start: ${err?.name ?? 'Error'}: ${err?.message ?? String(e)}\n`);
  process.exit(1);
});
