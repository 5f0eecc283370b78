/**
 * Operator / auditor: write a paylog's C2SP tlog-tiles as static files.
 *
 *   npm run export-tiles -- --url <base URL> --cacert <ca> --cert <cert> --key <client key> --out DIR
 *
 * DIR gets `checkpoint`, `tile/<L>/<N>[.p/<W>]` and `tile/entries/<N>[.p/<W>]` exactly as served
 * under `/v1/log/tiles/`, ready for any static web server or object store. Incremental: a rerun
 * fetches only tiles not yet in DIR; `checkpoint` is replaced last. Nothing is verified here:
 * run `npm run verify-log -- --tiles-dir DIR --log-key <vkey>`.
 *
 * Exit codes: 0 written, 1 the server refused or answered badly, 2 usage or connection errors.
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parseOptions, withAuditorTls, type TlsClientOpts } from './cli.js';
import { isAnsweredFailure, LogClientError } from '../src/audit/index.js';
import { exportTiles } from '../src/audit/index.js';
import { httpsTileSource } from '../src/audit/index.js';

interface Opts extends TlsClientOpts {
  out: string;
  quiet?: boolean;
}

export async function main(argv: string[]): Promise<number> {
  const program = withAuditorTls(new Command('export-tiles').description('Write a paylog log as C2SP tlog-tiles static files (incremental)'))
    .requiredOption('--out <dir>', 'output directory (created if absent; existing tiles are kept)')
    .option('--quiet', 'print only the summary')
    .exitOverride();
  const parsed = await parseOptions<Opts>(program, argv);
  if ('exitCode' in parsed) return parsed.exitCode;
  const opts = parsed.opts;
  let source;
  try {
    source = httpsTileSource({ url: opts.url, ca: readFileSync(opts.cacert), cert: readFileSync(opts.cert), key: readFileSync(opts.key) });
  } catch (e) {
    process.stderr.write(`export-tiles: cannot read TLS files: ${(e as Error).message}\n`);
    return EXIT_USAGE;
  }
  try {
    const r = await exportTiles(source, opts.out);
    process.stdout.write(`tree size ${r.size}: wrote ${r.written} tiles, kept ${r.skipped} already in ${opts.out}\n`);
    return EXIT_OK;
  } catch (e) {
    process.stderr.write(`export-tiles: ${(e as Error).message}\n`);
    return isAnsweredFailure(e) ? EXIT_FAILURE : e instanceof LogClientError ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    source.close();
  }
}

process.exitCode = await main(process.argv);
