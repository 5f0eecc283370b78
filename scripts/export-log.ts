/**
 * Auditor: export the log for offline verification.
 *
 *   npm run export-log -- --url <base URL> --cacert <ca> --cert <cert> --key <client key> --out FILE
 *
 * Writes NDJSON (format in `src/log/export-format.ts`): header, the latest signed checkpoint, the
 * server's verifier keys (informational; never trusted by `verify-log --file` unless asked),
 * then every entry of that checkpoint's tree. Refuses to overwrite FILE. Nothing is verified
 * here: run `npm run verify-log -- --file FILE --log-key <vkey>`.
 *
 * Exit codes: 0 written, 1 export failed midway, 2 usage or connection errors.
 */
import { rmSync } from 'node:fs';
import { Command } from 'commander';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseOptions, withAuditorTls, type TlsClientOpts } from './cli.js';
import cliProgress from 'cli-progress';
import { exportLog, LogClient, LogClientError } from '../src/audit/index.js';

interface Opts extends TlsClientOpts {
  out: string;
  quiet?: boolean;
}

export async function main(argv: string[]): Promise<number> {
  const program = withAuditorTls(new Command('export-log').description('Export a paylog log (checkpoint, keys, entries) as NDJSON for offline verification'))
    .requiredOption('--out <file>', 'output file (must not exist)')
    .option('--quiet', 'no progress bar')
    .exitOverride();
  const parsed = await parseOptions<Opts>(program, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const opts = parsed.opts;
  let client: LogClient;
  try {
    client = LogClient.fromFiles(opts.url, opts.cacert, opts.cert, opts.key);
  } catch (e) {
    process.stderr.write(`export-log: cannot read TLS files: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
  const showBar = !opts.quiet && process.stderr.isTTY === true;
  const bar = new cliProgress.SingleBar({ stream: process.stderr, format: 'entries {bar} {value}/{total}' }, cliProgress.Presets.shades_classic);
  let started = false;
  let created = false;
  try {
    const r = await exportLog(client, opts.out, (n, total) => {
      created = true;
      if (!showBar) return;
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      if (n % 256 === 0 || n === total) bar.update(n);
    });
    if (started) bar.stop();
    process.stdout.write(`exported ${r.size} entries of ${r.origin} to ${opts.out}\n`);
    return EXIT_OK;
  } catch (e) {
    if (started) bar.stop();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      process.stderr.write(`export-log: ${opts.out} already exists\n`);
      return EXIT_USAGE;
    }
    if (created) rmSync(opts.out, { force: true });
    process.stderr.write(`export-log: ${(e as Error).message}\n`);
    return e instanceof LogClientError && !created ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    client.close();
  }
}

process.exitCode = await main(process.argv);
